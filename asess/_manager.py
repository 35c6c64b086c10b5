"""``SessionManager``: a store plus the cookie and expiry policy, built by factories.

The factories carry Emmett's parameters and defaults (``cookies``, ``files``,
``redis``) plus asess's own (``postgres``, ``memory``); each returns a fresh
manager instance. A manager is framework-neutral: the ASGI middleware and
the Emmett adapter both drive requests through :meth:`SessionManager.lifecycle`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._backends.base import ServerStore
from ._backends.cookie import CookieStore
from ._backends.store_v1 import Store, V1StoreAdapter
from ._clock import SYSTEM_CLOCK, Clock
from ._cookies import CookieSettings
from ._exceptions import ConfigurationError, SessionBackendError
from ._ids import new_session_id
from ._keys import KeyInput, KeyRing
from ._lifecycle import Backend, Lifecycle
from ._outage_log import OutageLog
from ._policy import Policy
from ._record import Record
from ._session import Session
from ._types import EncryptionMode, SameSite
from ._user_index import Device, SessionInfo, UserIndex, UserKey
from ._validate import check_arguments

if TYPE_CHECKING:
    from ._backends.base import GcResult

DEFAULT_COOKIE_NAME = "asess_session"
DEFAULT_MAX_CHUNKS = 3


class SessionManager:
    """Binds a backend to the cookie, expiry and locking rules of a :class:`Policy`.

    Build one with a factory (:meth:`cookies`, :meth:`files`, :meth:`redis`,
    :meth:`postgres`, :meth:`memory`); the constructor is for custom :class:`~asess.ServerStore`
    subclasses.
    """

    def __init__(
        self,
        store: ServerStore | CookieStore | Store,
        *,
        expire: int = 3600,
        secure: bool = False,
        samesite: SameSite | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        max_age: int | None = None,
        max_cookie_chunks: int = DEFAULT_MAX_CHUNKS,
        locking: bool = False,
        lock_timeout: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
        user_key: UserKey | None = None,
        record_devices: bool = False,
    ) -> None:
        backend: Backend
        if isinstance(store, Store):
            backend = V1StoreAdapter(store)
        elif isinstance(store, (ServerStore, CookieStore)):
            backend = store
        else:
            raise ConfigurationError(
                f"got {type(store).__name__}; pass an asess.ServerStore subclass instance "
                "(or use a factory: SessionManager.cookies/files/redis/memory)"
            )
        if locking and isinstance(backend, CookieStore):
            raise ConfigurationError(
                "locking=True needs a server-side store: cookie sessions have nothing to lock"
            )
        if user_key is not None and isinstance(backend, CookieStore):
            raise ConfigurationError(
                "user_key= needs a server-side store: cookie sessions live in the browsers "
                "and cannot be listed or revoked server-side. Use SessionManager.files(), "
                ".redis() or .memory(), or end every cookie session by rotating the key"
            )
        self._backend = backend
        self.policy = Policy(
            cookies=CookieSettings.build(
                name=cookie_name or DEFAULT_COOKIE_NAME,
                secure=secure,
                samesite=samesite,
                domain=domain,
                cookie_data=cookie_data,
                max_chunks=max_cookie_chunks,
            ),
            expire=expire,
            max_age=max_age,
            locking=locking,
            lock_timeout=lock_timeout,
            clock=clock,
            user_key=user_key,
            record_devices=record_devices,
        )
        #: Rate-limited logging of store failures answered with 503.
        self.outages = OutageLog()
        self._index = (
            UserIndex(backend, self.policy)
            if user_key is not None and isinstance(backend, ServerStore)
            else None
        )

    def __repr__(self) -> str:
        return f"<SessionManager {type(self._backend).__name__} cookie={self.cookie_name!r}>"

    @property
    def store(self) -> Backend:
        """The backend: a :class:`~asess.ServerStore`, or the cookie backend."""
        return self._backend

    @property
    def server_side(self) -> bool:
        """True when sessions live in a server-side store (not in the cookie)."""
        return isinstance(self._backend, ServerStore)

    @property
    def expire(self) -> int:
        return self.policy.expire

    @property
    def max_age(self) -> int | None:
        return self.policy.max_age

    @property
    def locking(self) -> bool:
        """Whether requests of one session run one after another (leases)."""
        return self.policy.locking

    @property
    def cookie_settings(self) -> CookieSettings:
        return self.policy.cookies

    @property
    def cookie_name(self) -> str:
        return self.policy.cookies.name

    def lifecycle(
        self,
        cookie_header: str | None,
        *,
        autoload: bool = True,
        session_factory: type[Session] = Session,
        device: Device | None = None,
    ) -> Lifecycle:
        """One request's session: ``async with manager.lifecycle(header) as session``.

        ``device`` (the client's User-Agent and address) is kept in the
        per-user index at login when the manager records devices.
        """
        return Lifecycle(
            self.policy,
            self._backend,
            cookie_header,
            autoload=autoload,
            session_factory=session_factory,
            index=self._index,
            device=device if self.policy.record_devices else None,
        )

    # -- the per-user index ("your devices") --------------------------------

    def _user_index(self) -> UserIndex:
        if self._index is None:
            raise ConfigurationError(
                "this manager keeps no per-user index: build it with user_key= (the session "
                "key holding the user id, or a function of the session data)"
            )
        return self._index

    async def sessions_of(self, user_id: object) -> list[SessionInfo]:
        """The user's live sessions, most recently seen first.

        Raises:
            ConfigurationError: the manager was built without ``user_key``.
        """
        return await self._user_index().sessions_of(str(user_id))

    async def revoke(self, user_id: object, handle: object) -> bool:
        """End the user's session ``handle`` now; False if it is not theirs or not live."""
        index = self._user_index()
        if not isinstance(handle, str) or not handle:
            return False
        return await index.revoke(str(user_id), handle)

    async def revoke_user(self, user_id: object, keep: str | None = None) -> int:
        """End every session of the user but ``keep`` (a handle); return how many ended."""
        return await self._user_index().revoke_user(str(user_id), keep)

    async def clear(self) -> int:
        """Remove every stored session of this manager; return how many.

        Cookie sessions cannot be revoked server-side (returns 0): rotate the key instead.
        """
        if isinstance(self._backend, ServerStore):
            return await self._backend.clear()
        return 0

    async def gc(self) -> GcResult:
        """Remove expired sessions and leftovers; a no-op where the store expires them itself.

        Raises:
            ConfigurationError: cookie sessions have nothing server-side to collect.
        """
        if not isinstance(self._backend, ServerStore):
            raise ConfigurationError("cookie sessions need no garbage collection")
        return await self._backend.gc(self.policy.clock.now())

    async def check(self) -> None:
        """Make sure sessions can be stored: at startup, not at the first request.

        Server-side stores write, read back and delete a probe record (so a
        down Redis, a read-only replica or an unwritable directory shows now);
        cookie sessions seal and open a token with the key.

        Raises:
            SessionBackendError: the store cannot be reached or written; the
                message names the store and what to change.
        """
        now = self.policy.clock.now()
        if isinstance(self._backend, CookieStore):
            record = Record(
                data={"check": True},
                created_at=now,
                issued_at=now,
                expires_at=now + self.policy.expire,
            )
            token = await self._backend.encode(record)
            if await self._backend.decode(token, now) is None:
                raise SessionBackendError(
                    "a cookie sealed with this manager's key did not open again: check "
                    "the key and the codec options"
                )
            return
        probe, payload = new_session_id(), b"asess check " + new_session_id().encode()
        store = self._backend
        await store.create(probe, payload, 60, now)
        try:
            found = await store.read(probe, 60, now)
        finally:
            await store.delete(probe)
        if found != payload:
            raise SessionBackendError(
                f"{type(store).__name__} did not return the record just written to it: "
                "check that the store is not a read-only replica and keeps what it is given"
            )

    async def aclose(self) -> None:
        if isinstance(self._backend, ServerStore):
            await self._backend.aclose()

    # -- factories ---------------------------------------------------------------

    @classmethod
    def cookies(
        cls,
        key: KeyInput,
        expire: int = 3600,
        secure: bool = False,
        samesite: SameSite | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        encryption_mode: EncryptionMode = "legacy",
        compression_level: int = 0,
        *,
        max_age: int | None = None,
        max_cookie_chunks: int = DEFAULT_MAX_CHUNKS,
        clock: Clock = SYSTEM_CLOCK,
        user_key: UserKey | None = None,
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
            clock=clock,
            user_key=user_key,  # refused with the reason: cookies cannot be listed
        )

    @classmethod
    def files(
        cls,
        expire: int = 3600,
        secure: bool = False,
        samesite: SameSite | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        filename_template: str = "emt_%s.sess",
        path: str | os.PathLike[str] = "sessions",
        locking: bool = False,
        lock_timeout: float = 10.0,
        *,
        fsync: bool = False,
        gc_probability: float = 0.0,
        inline_io: bool = False,
        max_age: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
        user_key: UserKey | None = None,
        record_devices: bool = False,
    ) -> SessionManager:
        """Sessions stored as files under ``path``, one per session id."""
        check_arguments(locals())
        from ._backends.files import FileStore

        store = FileStore(
            path,
            filename_template=filename_template,
            fsync=fsync,
            gc_probability=gc_probability,
            inline_io=inline_io,
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
            locking=locking,
            lock_timeout=lock_timeout,
            clock=clock,
            user_key=user_key,
            record_devices=record_devices,
        )

    @classmethod
    def redis(
        cls,
        redis: Any,
        prefix: str = "emtsess:",
        expire: int = 3600,
        secure: bool = False,
        samesite: SameSite | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        locking: bool = False,
        lock_timeout: float = 10.0,
        *,
        autopipeline: bool = True,
        max_age: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
        user_key: UserKey | None = None,
        record_devices: bool = False,
    ) -> SessionManager:
        """Sessions stored in Redis (``redis.asyncio`` client, cluster client, or URL)."""
        check_arguments(locals())
        from ._backends.redis import RedisStore

        store = RedisStore(redis, prefix=prefix, autopipeline=autopipeline)
        return cls(
            store,
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=cookie_name,
            cookie_data=cookie_data,
            max_age=max_age,
            locking=locking,
            lock_timeout=lock_timeout,
            clock=clock,
            user_key=user_key,
            record_devices=record_devices,
        )

    @classmethod
    def postgres(
        cls,
        pool_or_dsn: Any,
        table: str = "asess_sessions",
        expire: int = 3600,
        secure: bool = False,
        samesite: SameSite | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        locking: bool = False,
        lock_timeout: float = 10.0,
        *,
        user_key: UserKey | None = None,
        max_age: int | None = None,
        create_table: bool = True,
        batching: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        record_devices: bool = False,
    ) -> SessionManager:
        """Sessions stored in a PostgreSQL table (an ``asyncpg.Pool`` or a DSN)."""
        check_arguments(locals())
        from ._backends.postgres import PostgresStore

        store = PostgresStore(
            pool_or_dsn, table=table, create_table=create_table, batching=batching
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
            locking=locking,
            lock_timeout=lock_timeout,
            clock=clock,
            user_key=user_key,
            record_devices=record_devices,
        )

    @classmethod
    def memory(
        cls,
        expire: int = 3600,
        secure: bool = False,
        samesite: SameSite | None = "Lax",
        domain: str | None = None,
        cookie_name: str | None = None,
        cookie_data: Mapping[str, Any] | None = None,
        locking: bool = False,
        *,
        lock_timeout: float = 10.0,
        max_age: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
        user_key: UserKey | None = None,
        record_devices: bool = False,
    ) -> SessionManager:
        """Sessions kept in this process's memory: for tests, not for production."""
        check_arguments(locals())
        from ._backends.memory import MemoryStore

        return cls(
            MemoryStore(),
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=cookie_name,
            cookie_data=cookie_data,
            max_age=max_age,
            locking=locking,
            lock_timeout=lock_timeout,
            clock=clock,
            user_key=user_key,
            record_devices=record_devices,
        )
