"""Adapters for the peers, each calling the peer's own code the way its framework does.

Codecs: Emmett's cookie pipe (emmett-core ``encrypt_b64`` over pickle, called
through ``CookieSessionPipe`` itself), Starlette's ``SessionMiddleware``
(itsdangerous ``TimestampSigner`` over base64 JSON), aiohttp-session's
``EncryptedCookieStorage`` (Fernet over JSON, through its own load/save),
starsessions' ``CookieStore`` with its JSON serializer and session handler, and
Litestar's client-side backend (AES-GCM). What each does on a request that only
reads mirrors its middleware: Emmett and starsessions re-encode every response,
Starlette, aiohttp-session and asess skip it.

Services: the counter app with Starlette's middleware, with starsessions (cookie
and Redis stores), and Emmett's own cookie, file and Redis pipes on an Emmett
app. Stores: Emmett's file and Redis pipes doing their blocking load/save from
an async handler (as an Emmett app does), and a plain ``redis.asyncio``
GETEX + SET loop as the floor any async Redis session can be held to.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import shutil
import tempfile
import time
from types import SimpleNamespace
from typing import Any

import orjson

from .apps import CounterSubject, emmett_counter, starlette_counter
from .asgi import ASGIApp
from .payload import change, session_data
from .redis_server import KEY_PREFIX
from .runner import Step, Unavailable
from .subjects import BenchError, CodecSubject, ServiceSubject

SECRET = "bench-secret-key-0123456789abcdef0123456789abcdef"
EXPIRE = 3600


def _emmett_sessions() -> Any:
    """``emmett_core.sessions``, untyped, so imported as a plain module object."""
    return importlib.import_module("emmett_core.sessions")


def _run_sync(coro: Any) -> Any:
    """Drive a coroutine that never really suspends (the peers' cookie stores) without a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("coroutine suspended; it cannot be driven synchronously")


def _check(name: str, before: int, after: Any) -> None:
    if after != before + 1:
        raise BenchError(f"{name}: counter went from {before} to {after!r}")


# --- codecs -----------------------------------------------------------------------------------


class EmmettCodec(CodecSubject):
    """Emmett's ``CookieSessionPipe._encrypt_data/_decrypt_data``, run as its pipe runs them."""

    name = "emmett cookies"
    family = "emmett"
    note = "pipe re-encrypts on every response"

    def __init__(self, compression_level: int = 0) -> None:
        sessions = _emmett_sessions()
        self._session_data = sessions.SessionData
        self._current = SimpleNamespace(app=SimpleNamespace(name="bench"), session=None)
        self._pipe = sessions.CookieSessionPipe(
            self._current, SECRET, compression_level=compression_level
        )

    def issue(self, data: dict[str, Any]) -> str:
        self._current.session = self._session_data(data, expires=EXPIRE)
        token: str = self._pipe._encrypt_data()
        return token

    def write(self, token: str) -> str:
        session: Any = self._pipe._decrypt_data(token)
        before = session.counter
        session.counter = (session.counter or 0) + 1
        _check(self.name, before, session.counter)
        self._current.session = session
        new: str = self._pipe._encrypt_data()
        return new

    def read(self, token: str) -> str:
        session = self._pipe._decrypt_data(token)
        if session.csrf_token is None:
            raise BenchError(f"{self.name}: token did not decode")
        self._current.session = session
        # Emmett's close_request packs the cookie whether or not anything changed.
        new: str = self._pipe._encrypt_data()
        return new


class StarletteCodec(CodecSubject):
    """Starlette ``SessionMiddleware``: itsdangerous ``TimestampSigner`` over base64 JSON."""

    name = "starlette SessionMiddleware"
    family = "starlette"
    note = "signed, not encrypted"

    def __init__(self) -> None:
        import itsdangerous
        from starlette.middleware.sessions import Session

        self._signer = itsdangerous.TimestampSigner(SECRET)
        self._session_cls = Session

    def _load(self, token: str) -> Any:
        raw = self._signer.unsign(token.encode("utf-8"), max_age=EXPIRE)
        return self._session_cls(json.loads(base64.b64decode(raw)))

    def _dump(self, session: Any) -> str:
        data = base64.b64encode(json.dumps(session).encode("utf-8"))
        return self._signer.sign(data).decode("utf-8")

    def issue(self, data: dict[str, Any]) -> str:
        return self._dump(data)

    def write(self, token: str) -> str:
        session = self._load(token)
        before = session["counter"]
        change(session)
        _check(self.name, before, session["counter"])
        return self._dump(session)

    def read(self, token: str) -> str:
        session = self._load(token)
        if "csrf_token" not in session:
            raise BenchError(f"{self.name}: token did not decode")
        return token  # unmodified: the middleware sends no Set-Cookie


class _CookieRequest(dict[str, Any]):
    """The part of ``aiohttp.web.Request`` that aiohttp-session's cookie storage touches."""

    def __init__(self, cookies: dict[str, str]) -> None:
        super().__init__()
        self.cookies = cookies


class _CookieResponse:
    """The part of ``aiohttp.web.Response`` that ``save_cookie`` touches."""

    def __init__(self) -> None:
        self.value = ""

    def set_cookie(self, name: str, value: str, **params: Any) -> None:
        self.value = value

    def del_cookie(self, name: str, **params: Any) -> None:
        self.value = ""


class AiohttpCodec(CodecSubject):
    """aiohttp-session ``EncryptedCookieStorage`` (Fernet over JSON), its own load/save code."""

    name = "aiohttp-session Fernet"
    family = "aiohttp-session"

    def __init__(self) -> None:
        from aiohttp_session.cookie_storage import EncryptedCookieStorage

        self._storage = EncryptedCookieStorage(os.urandom(32), max_age=EXPIRE)
        self._cookie = self._storage.cookie_name

    def _save(self, session: Any) -> str:
        response = _CookieResponse()
        storage: Any = self._storage
        _run_sync(storage.save_session(_CookieRequest({}), response, session))
        return response.value

    def _load(self, token: str) -> Any:
        storage: Any = self._storage
        return _run_sync(storage.load_session(_CookieRequest({self._cookie: token})))

    def issue(self, data: dict[str, Any]) -> str:
        from aiohttp_session import Session

        session = Session(None, data=None, new=True, max_age=EXPIRE)
        session.update(data)
        return self._save(session)

    def write(self, token: str) -> str:
        session = self._load(token)
        before = session["counter"]
        session["counter"] = before + 1
        _check(self.name, before, session["counter"])
        return self._save(session)

    def read(self, token: str) -> str:
        session = self._load(token)
        if "csrf_token" not in session:
            raise BenchError(f"{self.name}: token did not decode")
        return token  # unchanged: the middleware skips save_session


class StarsessionsCodec(CodecSubject):
    """starsessions ``CookieStore`` + ``JsonSerializer`` through its ``SessionHandler``."""

    name = "starsessions cookie"
    family = "starsessions"
    note = "handler re-saves every loaded session"

    def __init__(self) -> None:
        from starsessions.serializers import JsonSerializer
        from starsessions.stores.cookie import CookieStore

        self._store = CookieStore(SECRET)
        self._serializer = JsonSerializer()

    def _handler(self, token: str | None) -> Any:
        from starlette.requests import HTTPConnection
        from starsessions.session import SessionHandler

        connection = HTTPConnection({"type": "http", "headers": [], "session": {}})
        return SessionHandler(connection, token, self._store, self._serializer, EXPIRE)

    def issue(self, data: dict[str, Any]) -> str:
        handler = self._handler(None)
        _run_sync(handler.load())
        handler.connection.session.update(data)
        token: str = _run_sync(handler.save(EXPIRE))
        return token

    def write(self, token: str) -> str:
        handler = self._handler(token)
        _run_sync(handler.load())
        session = handler.connection.session
        before = session["counter"]
        change(session)
        _check(self.name, before, session["counter"])
        new: str = _run_sync(handler.save(EXPIRE))
        return new

    def read(self, token: str) -> str:
        handler = self._handler(token)
        _run_sync(handler.load())
        if "csrf_token" not in handler.connection.session:
            raise BenchError(f"{self.name}: token did not decode")
        # The middleware saves every loaded, non-empty session (rolling lifetime).
        new: str = _run_sync(handler.save(EXPIRE))
        return new


class LitestarCodec(CodecSubject):
    """Litestar's client-side session backend: AES-GCM over JSON, random nonce per token."""

    name = "litestar cookie AES-GCM"
    family = "litestar"
    note = "re-encrypts every response"

    def __init__(self) -> None:
        from litestar.middleware.session.client_side import CookieBackendConfig

        config = CookieBackendConfig(secret=os.urandom(32), max_age=EXPIRE)
        self._backend = config._backend_class(config)

    def issue(self, data: dict[str, Any]) -> str:
        return b"".join(self._backend.dump_data(data)).decode("ascii")

    def write(self, token: str) -> str:
        session = self._backend.load_data([token.encode("ascii")])
        before = session["counter"]
        change(session)
        _check(self.name, before, session["counter"])
        return b"".join(self._backend.dump_data(session)).decode("ascii")

    def read(self, token: str) -> str:
        session = self._backend.load_data([token.encode("ascii")])
        if "csrf_token" not in session:
            raise BenchError(f"{self.name}: token did not decode")
        # store_in_message dumps any non-empty session on every response.
        return b"".join(self._backend.dump_data(session)).decode("ascii")


def codec_peers() -> list[CodecSubject]:
    return [EmmettCodec(), StarletteCodec(), AiohttpCodec(), StarsessionsCodec(), LitestarCodec()]


# --- full request cycle -----------------------------------------------------------------------


def starlette_cookie_app() -> CounterSubject:
    async def build() -> ASGIApp:
        from starlette.middleware import Middleware
        from starlette.middleware.sessions import SessionMiddleware

        return starlette_counter([Middleware(SessionMiddleware, secret_key=SECRET, max_age=EXPIRE)])

    return CounterSubject("starlette SessionMiddleware", "starlette", build)


def starsessions_app(redis_url: str | None) -> CounterSubject:
    holder: dict[str, Any] = {}

    async def build() -> ASGIApp:
        from starlette.middleware import Middleware
        from starsessions import SessionAutoloadMiddleware, SessionMiddleware
        from starsessions.stores.base import SessionStore
        from starsessions.stores.cookie import CookieStore

        store: SessionStore
        if redis_url is None:
            store = CookieStore(SECRET)
        else:
            from redis.asyncio import Redis
            from starsessions.stores.redis import RedisStore

            holder["redis"] = client = Redis.from_url(redis_url)
            store = RedisStore(connection=client, prefix=KEY_PREFIX + "starsessions:")
        return starlette_counter(
            [
                Middleware(
                    SessionMiddleware,
                    store=store,
                    lifetime=EXPIRE,
                    rolling=True,
                    cookie_https_only=False,
                ),
                Middleware(SessionAutoloadMiddleware),
            ]
        )

    async def cleanup() -> None:
        if "redis" in holder:
            await holder.pop("redis").aclose()

    name = "starsessions cookie" if redis_url is None else "starsessions redis"
    return CounterSubject(name, "starsessions", build, cleanup)


def emmett_app(kind: str, redis_url: str | None = None) -> CounterSubject:
    """Emmett's own ``SessionManager.<kind>`` pipe on an Emmett app (its blocking I/O included)."""
    state: dict[str, Any] = {}

    async def build() -> ASGIApp:
        SessionManager: Any = importlib.import_module("emmett.sessions").SessionManager

        def pipe() -> Any:
            if kind == "cookies":
                return SessionManager.cookies(SECRET, expire=EXPIRE)
            if kind == "files":
                return SessionManager.files(expire=EXPIRE)
            if redis_url is None:
                raise Unavailable("no Redis")
            import redis

            state["redis"] = redis.Redis.from_url(redis_url)
            return SessionManager.redis(
                state["redis"], prefix=KEY_PREFIX + "emmett-app:", expire=EXPIRE
            )

        app, state["root"] = emmett_counter(pipe, f"bench_{kind}")
        return app

    async def cleanup() -> None:
        if "redis" in state:
            state.pop("redis").close()
        if "root" in state:
            shutil.rmtree(state.pop("root"), ignore_errors=True)

    return CounterSubject(
        f"emmett {kind} (Emmett app)",
        "emmett",
        build,
        cleanup,
        note="Emmett framework, not Starlette: compare with care",
    )


# --- store cycles ------------------------------------------------------------------------------


class _EmmettStore(ServiceSubject):
    """Emmett's backend pipe, its synchronous load and save called from an async step."""

    family = "emmett"

    def __init__(self) -> None:
        self._current = SimpleNamespace(
            app=SimpleNamespace(name="bench", root_path=""), session=None
        )
        self._pipe: Any = None

    async def client(self, index: int) -> Step:
        SessionData = _emmett_sessions().SessionData
        pipe = self._pipe
        current = self._current
        sid = f"{os.urandom(16).hex()}-{index}"
        # Seed the record as a first request would: an empty session, then the data.
        current.session = SessionData(sid=sid)
        current.session.update(session_data())
        pipe._save_session(EXPIRE)
        name = self.name

        async def step() -> None:
            data = pipe._load(sid)
            if data is None:
                raise BenchError(f"{name}: session {sid} vanished")
            session: Any = SessionData(data, sid=sid)
            before = session.counter
            session.counter = before + 1
            # The pipe saves current.session; nothing awaits between these lines.
            current.session = session
            pipe._save_session(EXPIRE)
            _check(name, before, session.counter)

        return step


class EmmettFileStore(_EmmettStore):
    name = "emmett files pipe"
    note = "blocking open/pickle/rename on the loop"

    async def open(self) -> None:
        root = tempfile.mkdtemp(prefix="asess-bench-emmett-files-")
        self._current.app.root_path = root
        self._pipe = _emmett_sessions().FileSessionPipe(
            self._current, expire=EXPIRE, cookie_name="s"
        )

    async def close(self) -> None:
        if self._current.app.root_path:
            shutil.rmtree(self._current.app.root_path, ignore_errors=True)


class EmmettRedisStore(_EmmettStore):
    name = "emmett redis pipe"
    note = "blocking redis-py client on the loop"

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    async def open(self) -> None:
        import redis

        client = redis.Redis.from_url(self._url)
        self._pipe = _emmett_sessions().RedisSessionPipe(
            self._current, client, prefix=KEY_PREFIX + "emmett:", expire=EXPIRE, cookie_name="s"
        )

    async def close(self) -> None:
        if self._pipe is not None:
            self._pipe.redis.close()


class PlainRedisLoop(ServiceSubject):
    """The floor: ``GETEX key EX ttl``, orjson, change, ``SET key EX ttl`` on ``redis.asyncio``."""

    name = "redis.asyncio GETEX+SET"
    family = "plain"
    note = "no session layer; queueing pool of 100"

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: Any = None

    async def open(self) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis

        # redis-py's default pool refuses more than 100 connections; a pool that
        # queues instead is what an application with 1000 clients would use.
        pool = BlockingConnectionPool.from_url(self._url, max_connections=100, timeout=None)
        self._client = Redis(connection_pool=pool)

    async def client(self, index: int) -> Step:
        client = self._client
        key = f"{KEY_PREFIX}plain:{os.urandom(16).hex()}"
        await client.set(key, orjson.dumps(session_data()), ex=EXPIRE)
        name = self.name

        async def step() -> None:
            raw = await client.getex(key, ex=EXPIRE)
            if raw is None:
                raise BenchError(f"{name}: {key} vanished")
            data = orjson.loads(raw)
            before = data["counter"]
            change(data)
            await client.set(key, orjson.dumps(data), ex=EXPIRE)
            _check(name, before, data["counter"])

        return step

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            await self._client.connection_pool.disconnect()


class PlainAsyncpgLoop(ServiceSubject):
    """The floor: the PostgreSQL store's two statements, orjson and a change, on asyncpg.

    The same sliding read (``UPDATE ... RETURNING data``) and conditional write
    (``UPDATE ... WHERE id AND expires_at > now``) as the store, through a pool
    built exactly like the store's own (10 connections, no reset statement
    between calls), on a table made by the store's DDL, so the difference is
    what asess adds.
    """

    name = "asyncpg UPDATE+UPDATE"
    family = "plain"
    note = "no session layer; the store's statements, schema and pool settings"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None
        self._table = ""

    async def open(self) -> None:
        import secrets

        import asyncpg

        from .postgres_server import TABLE_PREFIX

        async def no_reset(conn: Any) -> None:
            pass

        self._table = TABLE_PREFIX + secrets.token_hex(4)
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=1, max_size=10, command_timeout=10.0, reset=no_reset
        )
        # The store's own DDL: the expires_at index makes every sliding read a
        # non-HOT update, a cost of the schema that both sides pay.
        sql = importlib.import_module("asess._backends.postgres_sql")
        for statement in sql.statements(self._table).ddl:
            await self._pool.execute(statement)

    async def client(self, index: int) -> Step:
        pool, table, name = self._pool, self._table, self.name
        sid = os.urandom(16).hex()
        now = time.time()
        await pool.execute(
            f"INSERT INTO {table} (id, data, ttl, created_at, expires_at) VALUES "
            "($1, $2, $3::integer, $4::float8, $4::float8 + $3::integer)",
            sid,
            orjson.dumps(session_data()),
            EXPIRE,
            now,
        )
        read = (
            f"UPDATE {table} SET expires_at = $2::float8 + ttl "
            "WHERE id = $1 AND expires_at > $2::float8 RETURNING data"
        )
        write = (
            f"UPDATE {table} SET data = $2, ttl = $3::integer, "
            "expires_at = $4::float8 + $3::integer "
            "WHERE id = $1 AND expires_at > $4::float8 RETURNING true"
        )

        async def step() -> None:
            raw = await pool.fetchval(read, sid, time.time())
            if raw is None:
                raise BenchError(f"{name}: {sid} vanished")
            data = orjson.loads(raw)
            before = data["counter"]
            change(data)
            if not await pool.fetchval(write, sid, orjson.dumps(data), EXPIRE, time.time()):
                raise BenchError(f"{name}: {sid} was not written")
            _check(name, before, data["counter"])

        return step

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
