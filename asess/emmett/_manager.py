"""``SessionManager`` for Emmett apps: Emmett's factories, returning asess-powered pipes.

The signatures and defaults are Emmett's (``emmett.sessions.SessionManager``),
plus asess's own options after them, so switching is one import line. As in
Emmett, the default cookie name ``emt_session_data_<app name>`` and the files
directory ``<app root>/sessions`` come from the Emmett ``App`` that exists
when the pipe is built, and ``SessionManager.clear()`` clears the sessions of
the pipe built last.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from emmett.ctx import current  # type: ignore[import-untyped]
from emmett_core.datastructures import sdict

from .._backends.cookie import CookieStore, build_codec
from .._backends.files_format import TEMP_SUFFIX
from .._exceptions import ConfigurationError
from .._keys import KeyInput, KeyRing
from .._manager import DEFAULT_MAX_CHUNKS
from .._manager import SessionManager as CoreManager
from .._types import EncryptionMode, SameSite
from .._user_index import UserKey
from .._validate import check_arguments
from ._auth_user import emmett_auth_user
from ._clear import Clearing
from ._data import EmmettClasses
from ._pipe import SessionPipe

# The mode the files store creates session files with, as Emmett's (0o600).
_FS_MODE = 0o600


def _app() -> Any:
    app = getattr(current.ctx, "app", None)
    if app is None:
        raise ConfigurationError(
            "no Emmett App exists yet: create the App before its session pipe (the default "
            "cookie name and files path come from it), or pass cookie_name= and path="
        )
    return app


def _cookie_name(cookie_name: str | None) -> str:
    return cookie_name or f"emt_session_data_{_app().name}"


def _cookie_args(
    secure: bool, samesite: str | None, domain: str | None, cookie_data: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The arguments every Emmett session pipe keeps as attributes, as given."""
    return {"secure": secure, "samesite": samesite, "domain": domain, "cookie_data": cookie_data}


class SessionManager:
    """Drop-in for ``emmett.sessions.SessionManager``: each factory returns a pipe.

    ``app.pipeline = [SessionManager.cookies("secret")]`` and the handlers'
    ``from emmett import session`` work as with Emmett's own managers.
    """

    _pipe: ClassVar[SessionPipe | None] = None

    @classmethod
    def _built(cls, manager: CoreManager, **kw: Any) -> SessionPipe:
        pipe = SessionPipe(manager, **kw)
        SessionManager._pipe = pipe
        return pipe

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
        always_send_cookie: bool = False,
        accept_emmett_tokens: bool = True,
    ) -> SessionPipe:
        """Sessions in the client's cookie; ``legacy`` tokens are Emmett's own format.

        ``always_send_cookie=True`` sends a new token with every response, for
        new and empty sessions too, as Emmett's cookie pipe does (asess sends one
        only when the session changed or its cookie is due for renewal).
        ``accept_emmett_tokens=False`` refuses the tokens Emmett itself wrote
        (random salts: no expiry, a PBKDF2 each); see README, "Legacy tokens".
        """
        check_arguments(locals())
        name = _cookie_name(cookie_name)
        # Legacy tokens read nested sdicts back as sdicts, and admit forms' CSRF
        # storage and rows pickled by Emmett's Auth (rows are then flattened by
        # the session), so logins and open forms survive the switch both ways.
        codec = build_codec(
            encryption_mode,
            KeyRing(key),
            name,
            compression_level,
            mapping_factory=sdict,
            extra_classes=EmmettClasses(),
            accept_emmett_tokens=accept_emmett_tokens,
        )
        manager = CoreManager(
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
        args = _cookie_args(secure, samesite, domain, cookie_data)
        args.update(
            key=key,
            encryption_mode=encryption_mode,
            compression_level=compression_level,
            always_send_cookie=always_send_cookie,
        )
        return cls._built(manager, emmett_args=args)

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
        path: str | os.PathLike[str] | None = None,
        locking: bool = False,
        lock_timeout: float = 10.0,
        *,
        fsync: bool = False,
        gc_probability: float = 0.0,
        inline_io: bool = False,
        max_age: int | None = None,
        user_key: UserKey | None = emmett_auth_user,
        record_devices: bool = False,
    ) -> SessionPipe:
        """Sessions in files under ``path`` (default: ``<app root>/sessions``)."""
        check_arguments(locals())
        if path is None:
            path = os.path.join(_app().root_path, "sessions")
        args = _cookie_args(secure, samesite, domain, cookie_data)
        args.update(
            _filename_template=filename_template,
            _path=os.fspath(path),
            _fs_transaction_suffix=TEMP_SUFFIX,
            _fs_mode=_FS_MODE,
        )
        manager = CoreManager.files(
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=_cookie_name(cookie_name),
            cookie_data=cookie_data,
            filename_template=filename_template,
            path=path,
            locking=locking,
            lock_timeout=lock_timeout,
            fsync=fsync,
            gc_probability=gc_probability,
            inline_io=inline_io,
            max_age=max_age,
            user_key=user_key,
            record_devices=record_devices,
        )
        return cls._built(manager, emmett_args=args)

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
        user_key: UserKey | None = emmett_auth_user,
        record_devices: bool = False,
    ) -> SessionPipe:
        """Sessions in Redis.

        ``redis`` is a ``redis.asyncio`` client (or cluster client, or a URL);
        a synchronous ``redis.Redis``, as Emmett takes, is accepted too: asess
        then opens a ``redis.asyncio`` client with the same connection
        settings, closed by ``await pipe.aclose()``.
        """
        check_arguments(locals())
        client, owned = _async_redis(redis)
        manager = CoreManager.redis(
            client,
            prefix=prefix,
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=_cookie_name(cookie_name),
            cookie_data=cookie_data,
            locking=locking,
            lock_timeout=lock_timeout,
            autopipeline=autopipeline,
            max_age=max_age,
            user_key=user_key,
            record_devices=record_devices,
        )
        args = _cookie_args(secure, samesite, domain, cookie_data)
        args.update(redis=redis, prefix=prefix)
        return cls._built(manager, owned=owned, emmett_args=args)

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
        max_age: int | None = None,
        user_key: UserKey | None = emmett_auth_user,
        record_devices: bool = False,
    ) -> SessionPipe:
        """Sessions in this process's memory: for tests, not for production."""
        check_arguments(locals())
        manager = CoreManager.memory(
            expire=expire,
            secure=secure,
            samesite=samesite,
            domain=domain,
            cookie_name=_cookie_name(cookie_name),
            cookie_data=cookie_data,
            locking=locking,
            max_age=max_age,
            user_key=user_key,
            record_devices=record_devices,
        )
        return cls._built(manager, emmett_args=_cookie_args(secure, samesite, domain, cookie_data))

    @classmethod
    def clear(cls) -> Clearing:
        """Clear the sessions of the pipe built last, as Emmett does.

        Call it as Emmett code does (``SessionManager.clear()``) or await it for
        the number removed; see :class:`~asess.emmett.Clearing`.
        """
        pipe = SessionManager._pipe
        if pipe is None:
            raise ConfigurationError("no session pipe has been built yet: nothing to clear")
        return pipe.clear()


# Connection settings that mean the same to redis and redis.asyncio clients.
_PORTABLE_REDIS_OPTIONS = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "credential_provider",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "health_check_interval",
    "client_name",
    "encoding",
    "encoding_errors",
)


def _async_redis(client: Any) -> tuple[Any, Callable[[], Awaitable[None]] | None]:
    """``client`` as a ``redis.asyncio`` client, and how to close it if asess made it."""
    try:
        import redis
        import redis.asyncio as aioredis
    except ImportError:
        return client, None  # the store says what to install
    if isinstance(client, redis.RedisCluster):
        raise ConfigurationError(
            "got a synchronous RedisCluster: pass redis.asyncio.RedisCluster (same arguments)"
        )
    if not isinstance(client, redis.Redis):
        return client, None
    pool = client.connection_pool
    options = pool.connection_kwargs
    kwargs = {k: options[k] for k in _PORTABLE_REDIS_OPTIONS if options.get(k) is not None}
    kind = pool.connection_class.__name__
    if kind == "UnixDomainSocketConnection":
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        kwargs["unix_socket_path"] = options["path"]
    elif kind == "SSLConnection":
        kwargs["ssl"] = True
        accepted = inspect.signature(aioredis.Redis).parameters
        kwargs.update({k: v for k, v in options.items() if k.startswith("ssl_") and k in accepted})
    elif kind != "Connection":
        raise ConfigurationError(
            f"cannot derive a redis.asyncio client from a {kind} connection: "
            "pass a redis.asyncio.Redis instead"
        )
    async_client = aioredis.Redis(**kwargs)
    return async_client, async_client.aclose
