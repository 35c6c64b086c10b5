"""The cookie store: the session travels in the cookie, encrypted by a codec.

There is nothing to persist server-side: ``save`` encodes, ``load`` decodes.
Calls that would run a key derivation go to a worker thread so the event loop
never waits on PBKDF2; cheap ones (cached keys, AEAD on small tokens) run
inline, because a thread hop costs more than the work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._codecs.base import TokenCodec
from .._exceptions import ConfigurationError, InvalidToken
from .._keys import KeyRing
from .._record import Record
from .base import Store

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


class CookieStore(Store):
    """Encodes records into the cookie itself; cannot revoke issued cookies."""

    data_in_cookie = True

    def __init__(self, codec: TokenCodec) -> None:
        self.codec = codec

    async def load(self, ref: str, ttl: int) -> Record | None:
        codec, now = self.codec, time.time()
        try:
            if codec.is_expensive(ref):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, codec.decode, ref, now)
            return codec.decode(ref, now)
        except InvalidToken as exc:
            logger.debug("session cookie refused: %s", exc)
            return None

    async def save(self, ref: str, record: Record, ttl: int) -> str:
        if self.codec.is_expensive(None):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self.codec.encode, record)
        return self.codec.encode(record)

    async def touch(self, ref: str, ttl: int) -> None:
        """Nothing to do: the lifecycle re-issues the token when a refresh is due."""

    async def delete(self, ref: str) -> None:
        """Nothing to do: the lifecycle expires the cookie."""

    async def clear(self) -> int:
        """Issued cookies cannot be revoked server-side: rotate the key to do that."""
        return 0
