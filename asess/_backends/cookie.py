"""The cookie store: the session travels in the cookie, encrypted by a codec.

There is nothing to persist server-side: ``save`` encodes, ``load`` decodes.
Calls that would run a key derivation go to a worker thread so the event loop
never waits on PBKDF2; cheap ones (cached keys, AEAD on small tokens) run
inline, because a thread hop costs more than the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .._codecs.base import TokenCodec
from .._exceptions import ConfigurationError, InvalidToken
from .._keys import KeyRing
from .._record import Record

logger = logging.getLogger("asess")

ENCRYPTION_MODES = ("legacy", "modern")


def build_codec(
    mode: str,
    keys: KeyRing,
    cookie_name: str,
    compression_level: int,
    *,
    mapping_factory: Callable[[dict[Any, Any]], Any] | None = None,
    extra_classes: Mapping[tuple[str, str], Any] | None = None,
    accept_emmett_tokens: bool = True,
) -> TokenCodec:
    """The codec for ``encryption_mode``; bad modes or levels are configuration errors.

    ``mapping_factory`` and ``extra_classes`` tune the legacy format's restricted
    unpickler (the Emmett adapter reads nested dicts back as ``sdict``);
    ``accept_emmett_tokens=False`` makes it refuse tokens asess did not write
    (modern tokens are asess's only, so it changes nothing there).
    """
    if isinstance(compression_level, bool) or compression_level not in range(10):
        raise ConfigurationError(
            f"compression_level={compression_level!r}: use 0 (off) to 9 (smallest)"
        )
    if mode == "legacy":
        from .._codecs.legacy import LegacyCodec

        return LegacyCodec(
            keys,
            compression_level,
            mapping_factory=mapping_factory,
            extra_classes=extra_classes,
            cookie_name=cookie_name,
            accept_emmett_tokens=accept_emmett_tokens,
        )
    if mode == "modern":
        from .._codecs.modern import ModernCodec

        return ModernCodec(keys, cookie_name, compression_level)
    raise ConfigurationError(
        f"encryption_mode={mode!r} is unknown: use 'legacy' (Emmett-compatible) or 'modern'"
    )


class CookieStore:
    """The client-side backend: records travel in the cookie, sealed by a codec.

    Not a :class:`~asess.ServerStore`: there is nothing to look up, lock or
    revoke server-side. Issued cookies stay valid until they expire or the
    key rotates out.
    """

    def __init__(self, codec: TokenCodec) -> None:
        self.codec = codec

    async def decode(self, token: str, now: float) -> Record | None:
        """The record sealed in ``token``, or None when it does not decode (logged)."""
        codec = self.codec
        try:
            if codec.is_expensive(token):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, codec.decode, token, now)
            return codec.decode(token, now)
        except InvalidToken as exc:
            logger.debug("session cookie refused: %s", exc)
            return None

    async def encode(self, record: Record) -> str:
        """A new token sealing ``record``."""
        if self.codec.is_expensive(None):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self.codec.encode, record)
        return self.codec.encode(record)
