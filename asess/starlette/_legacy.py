"""Reading the cookies Starlette's own ``SessionMiddleware`` wrote, to migrate them.

Starlette stores the session in the cookie as base64 JSON signed with
itsdangerous' ``TimestampSigner`` (HMAC-SHA1 keyed from ``secret_key``) and
refuses a cookie older than ``max_age`` seconds. This reader applies the same
checks and returns the data, so :mod:`asess.starlette` can re-issue it once in
asess's format; nothing here writes that format. itsdangerous is what
Starlette's middleware itself needs: without it no such cookie can exist, so
the reader is simply absent.
"""

from __future__ import annotations

import binascii
import json
import logging
from base64 import b64decode
from typing import Any

logger = logging.getLogger("asess")


class StarletteCookieReader:
    """Verifies and decodes a cookie written by ``starlette.middleware.sessions``."""

    def __init__(self, secret_key: str, max_age: int | None) -> None:
        import itsdangerous

        self._signer = itsdangerous.TimestampSigner(secret_key)
        self._bad = itsdangerous.BadSignature
        self._max_age = max_age

    @classmethod
    def build(cls, secret_key: str, max_age: int | None) -> StarletteCookieReader | None:
        """A reader, or None when itsdangerous (so any Starlette cookie) is absent."""
        try:
            return cls(secret_key, max_age)
        except ModuleNotFoundError:
            return None

    def read(self, value: str) -> dict[str, Any] | None:
        """The session data of a valid, unexpired Starlette cookie; None otherwise (logged)."""
        try:
            signed = self._signer.unsign(value.encode("utf-8"), max_age=self._max_age)
            data = json.loads(b64decode(signed, validate=True))
        except self._bad as exc:  # SignatureExpired is a BadSignature too
            logger.debug("Starlette session cookie refused: %s", exc)
            return None
        except (ValueError, binascii.Error, UnicodeError):
            logger.debug("Starlette session cookie refused: its payload is not base64 JSON")
            return None
        if not isinstance(data, dict):
            logger.debug("Starlette session cookie refused: its payload is not an object")
            return None
        return data
