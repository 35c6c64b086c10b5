"""Reading cookies aiohttp-session's ``EncryptedCookieStorage`` wrote, to migrate them.

That storage keeps ``{"created": <unix time>, "session": {...}}`` as JSON in
a Fernet token (AES-128-CBC with HMAC-SHA256, ``cryptography.fernet``) under
a 32-byte key. Fernet authenticates the whole token, so a forged or altered
cookie is refused before any JSON is parsed; that is what makes reading it
safe. The reader returns the data so the adapter re-issues it once in asess's
format; nothing here writes Fernet tokens.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from .._exceptions import ConfigurationError

logger = logging.getLogger("asess")


class FernetCookieReader:
    """Decrypts an ``EncryptedCookieStorage`` cookie made with ``secret_key``."""

    def __init__(self, secret_key: str | bytes | Fernet, max_age: int | None = None) -> None:
        # As EncryptedCookieStorage takes it: a Fernet, the key's text, or its raw bytes.
        try:
            if isinstance(secret_key, Fernet):
                self._fernet = secret_key
            elif isinstance(secret_key, (bytes, bytearray)):
                self._fernet = Fernet(base64.urlsafe_b64encode(secret_key))
            else:
                self._fernet = Fernet(secret_key)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "fernet_key must be what EncryptedCookieStorage was given: the 32 raw "
                "bytes, their urlsafe base64 text, or a cryptography Fernet"
            ) from None
        self._max_age = max_age

    def read(self, value: str, now: float) -> dict[str, Any] | None:
        """The session data in a valid cookie; None otherwise (logged)."""
        try:
            token = value.encode("ascii")
            if self._max_age is None:
                plain = self._fernet.decrypt(token)
            else:
                plain = self._fernet.decrypt_at_time(token, self._max_age, int(now))
            stored = json.loads(plain)
        except (InvalidToken, UnicodeError, ValueError):
            logger.debug("aiohttp-session cookie refused: not a Fernet token under fernet_key")
            return None
        if not isinstance(stored, dict) or not isinstance(stored.get("session"), dict):
            return None
        created = stored.get("created")
        if (
            self._max_age is not None
            and isinstance(created, (int, float))
            and now - created > self._max_age
        ):
            logger.debug("aiohttp-session cookie refused: older than max_age")
            return None
        data: dict[str, Any] = stored["session"]
        return data
