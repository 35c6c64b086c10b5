"""``SessionManager``: a store plus the cookie and expiry policy, built by factories.

The factories carry the spec's parameters and defaults (``cookies``, ``files``,
``redis``) plus asess's own; each returns a fresh manager instance. A manager
is framework-neutral: the ASGI middleware and the Emmett adapter both drive
requests through :meth:`SessionManager.lifecycle`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._backends.base import Store
from ._cookies import CookieSettings
from ._exceptions import ConfigurationError
from ._keys import KeyInput, KeyRing
from ._lifecycle import Lifecycle
from ._session import Session
from ._validate import check_arguments

if TYPE_CHECKING:
    from ._gc import GcResult

DEFAULT_COOKIE_NAME = "asess_session"
DEFAULT_MAX_CHUNKS = 3


class SessionManager:
    """Binds a :class:`Store` to cookie attributes and expiry rules.

    Build one with a factory (:meth:`cookies`, :meth:`files`, :meth:`redis`,
    :meth:`memory`); the constructor is for custom stores.
    """

    def __init__(
        self,
        store: Store,
        *,
        expire: int = 3600,
        secure: bool = False,
        samesite: str | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        max_age: int | None = None,
        max_cookie_chunks: int = DEFAULT_MAX_CHUNKS,
    ) -> None:
        if not isinstance(expire, int) or isinstance(expire, bool) or expire <= 0:
            raise ConfigurationError(f"expire={expire!r}: give a lifetime in seconds, > 0")
        if max_age is not None and (not isinstance(max_age, int) or max_age <= 0):
            raise ConfigurationError(f"max_age={max_age!r}: give seconds > 0, or None for no cap")
        self.store = store
        self.expire = expire
        self.max_age = max_age
        self.cookie_settings = CookieSettings.build(
            name=cookie_name or DEFAULT_COOKIE_NAME,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_data=cookie_data,
            max_chunks=max_cookie_chunks,
        )

    def __repr__(self) -> str:
        return f"<SessionManager {type(self.store).__name__} cookie={self.cookie_name!r}>"

    @property
    def locking(self) -> bool:
        """Whether requests of one session run one after another (the store's setting)."""
        return self.store.locking

    @property
    def cookie_name(self) -> str:
        return self.cookie_settings.name

    def lifecycle(
        self,
        cookie_header: str | None,
        *,
        autoload: bool = True,
        session_factory: type[Session] = Session,
    ) -> Lifecycle:
        """One request's session: ``async with manager.lifecycle(header) as session``."""
        return Lifecycle(self, cookie_header, autoload=autoload, session_factory=session_factory)

    async def clear(self) -> int:
        """Remove every stored session of this manager; return how many.

        Cookie sessions cannot be revoked server-side: rotate the key instead.
        """
        return await self.store.clear()

    async def gc(self) -> GcResult:
        """Remove expired sessions and leftovers (files backend only)."""
        gc = getattr(self.store, "gc", None)
        if gc is None:
            raise ConfigurationError(f"{type(self.store).__name__} needs no garbage collection")
        result: GcResult = await gc()
        return result

    async def aclose(self) -> None:
        await self.store.aclose()

    # -- factories ---------------------------------------------------------------

    @classmethod
    def cookies(
        cls,
        key: KeyInput,
        expire: int = 3600,
        secure: bool = False,
        samesite: str | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        encryption_mode: str = "legacy",
        compression_level: int = 0,
        *,
        max_age: int | None = None,
        max_cookie_chunks: int = DEFAULT_MAX_CHUNKS,
        accept_emmett_tokens: bool = True,
    ) -> SessionManager:
        """Sessions stored in the client's cookie, encrypted and signed with ``key``.

        ``key`` may be a list for rotation: the first encrypts, all decrypt.
        ``accept_emmett_tokens=False`` (legacy mode) refuses, before any key
        derivation, tokens asess did not write: see README, "Legacy tokens".
        """
        check_arguments(locals())
        from ._backends.cookie import CookieStore, build_codec

        name = cookie_name or DEFAULT_COOKIE_NAME
        codec = build_codec(
            encryption_mode,
            KeyRing(key),
            name,
            compression_level,
            accept_emmett_tokens=accept_emmett_tokens,
        )
        return cls(
            CookieStore(codec),
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=name,
            cookie_data=cookie_data,
            max_age=max_age,
            max_cookie_chunks=max_cookie_chunks,
        )

    @classmethod
    def files(
        cls,
        expire: int = 3600,
        secure: bool = False,
        samesite: str | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        filename_template: str = "emt_%s.sess",
        path: str | os.PathLike[str] = "sessions",
        locking: bool = False,
        lock_timeout: float = 10.0,
        *,
        fsync: bool = True,
        gc_probability: float = 0.0,
        max_age: int | None = None,
    ) -> SessionManager:
        """Sessions stored as files under ``path``, one per session id."""
        check_arguments(locals())
        from ._backends.files import FileStore

        store = FileStore(
            path,
            filename_template=filename_template,
            locking=locking,
            lock_timeout=lock_timeout,
            fsync=fsync,
            gc_probability=gc_probability,
            default_ttl=expire,
        )
        return cls(
            store,
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=cookie_name,
            cookie_data=cookie_data,
            max_age=max_age,
        )

    @classmethod
    def redis(
        cls,
        redis: Any,
        prefix: str = "emtsess:",
        expire: int = 3600,
        secure: bool = False,
        samesite: str | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        locking: bool = False,
        lock_timeout: float = 10.0,
        *,
        autopipeline: bool = True,
        max_age: int | None = None,
    ) -> SessionManager:
        """Sessions stored in Redis (``redis.asyncio`` client, cluster client, or URL)."""
        check_arguments(locals())
        from ._backends.redis import RedisStore

        store = RedisStore(
            redis,
            prefix=prefix,
            locking=locking,
            lock_timeout=lock_timeout,
            autopipeline=autopipeline,
            default_ttl=expire,
        )
        return cls(
            store,
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=cookie_name,
            cookie_data=cookie_data,
            max_age=max_age,
        )

    @classmethod
    def memory(
        cls,
        expire: int = 3600,
        secure: bool = False,
        samesite: str | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        locking: bool = False,
        *,
        max_age: int | None = None,
    ) -> SessionManager:
        """Sessions kept in this process's memory: for tests, not for production."""
        check_arguments(locals())
        from ._backends.memory import MemoryStore

        return cls(
            MemoryStore(locking=locking),
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=cookie_name,
            cookie_data=cookie_data,
            max_age=max_age,
        )
