"""Adapters for asess itself, used exactly as an application would use it.

Every factory raises :class:`~bench.runner.Unavailable` when the part of asess
it needs is not importable, so the harness runs (and reports the gap) on any
checkout. Codecs are timed through the ``TokenCodec`` contract for their CPU
cost, and through the cookie store (which sends key derivations to a thread)
for their loop lag. Apps use ``asess.SessionMiddleware`` on the shared
Starlette counter app; store cycles go through ``manager.lifecycle``, the one
coroutine every adapter drives, so they include what an application pays.
"""

from __future__ import annotations

import time
from typing import Any

from .payload import change, session_data
from .peers import EXPIRE, SECRET, _check
from .runner import Step, Unavailable
from .subjects import BenchError, CodecSubject, ServiceSubject

COOKIE_NAME = "asess_bench"


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{module} is not importable on this checkout ({exc})") from None


class AsessCodec(CodecSubject):
    """An asess ``TokenCodec`` (legacy or modern) carrying a Record."""

    family = "asess"

    def __init__(self, name: str, codec: Any, note: str = "") -> None:
        self.name = name
        self.note = note
        self._codec = codec
        self._record_cls = _need("asess._record").Record
        # The async path goes through the cookie store, which decides thread or inline.
        self._store = _need("asess._backends.cookie").CookieStore(codec)

    def _record(self, data: dict[str, Any], created_at: float | None = None) -> Any:
        now = time.time()
        return self._record_cls(
            data=data, created_at=created_at or now, issued_at=now, expires_at=now + EXPIRE
        )

    def issue(self, data: dict[str, Any]) -> str:
        token: str = self._codec.encode(self._record(data))
        return token

    def _changed(self, record: Any) -> Any:
        before = record.data["counter"]
        change(record.data)
        _check(self.name, before, record.data["counter"])
        return self._record(record.data, record.created_at)

    def write(self, token: str) -> str:
        record = self._codec.decode(token, time.time())
        new: str = self._codec.encode(self._changed(record))
        return new

    def read(self, token: str) -> str:
        record = self._codec.decode(token, time.time())
        if "csrf_token" not in record.data:
            raise BenchError(f"{self.name}: token did not decode")
        return token  # unchanged: asess re-sends nothing

    async def write_async(self, token: str) -> str:
        record = await self._store.decode(token, time.time())
        new: str = await self._store.encode(self._changed(record))
        return new

    async def read_async(self, token: str) -> str:
        record = await self._store.decode(token, time.time())
        if record is None or "csrf_token" not in record.data:
            raise BenchError(f"{self.name}: token did not decode")
        return token


def legacy_codec() -> CodecSubject:
    legacy = _need("asess._codecs.legacy")
    keys = _need("asess._keys")
    codec = legacy.LegacyCodec(keys.KeyRing(SECRET), 0)
    return AsessCodec("asess legacy", codec, note="Emmett's wire format")


def modern_codec() -> CodecSubject:
    modern = _need("asess._codecs.modern")
    keys = _need("asess._keys")
    codec = modern.ModernCodec(keys.KeyRing(SECRET), COOKIE_NAME, 0)
    return AsessCodec("asess modern", codec, note="AEAD, keys derived once")


# --- full request cycle -----------------------------------------------------------------------


def _middleware_app(
    name: str, build_manager: Any, cleanup_dir: bool = False, note: str = ""
) -> Any:
    """The shared counter app behind ``asess.SessionMiddleware`` with ``build_manager(asess)``."""
    import shutil
    import tempfile

    from .apps import CounterSubject, starlette_counter

    asess = _need("asess")
    if not hasattr(asess, "SessionMiddleware"):
        raise Unavailable("asess.SessionMiddleware is not on this checkout yet")
    state: dict[str, Any] = {}

    async def build() -> Any:
        from starlette.middleware import Middleware

        state["dir"] = tempfile.mkdtemp(prefix="asess-bench-files-") if cleanup_dir else None
        state["manager"] = manager = build_manager(asess, state["dir"])
        return starlette_counter([Middleware(asess.SessionMiddleware, manager=manager)])

    async def cleanup() -> None:
        manager = state.pop("manager", None)
        closer = getattr(manager, "aclose", None)
        if closer is not None:
            await closer()
        if state.get("dir"):
            shutil.rmtree(state.pop("dir"), ignore_errors=True)

    return CounterSubject(name, "asess", build, cleanup, note=note)


def cookie_app(mode: str) -> Any:
    return _middleware_app(
        f"asess cookies {mode}",
        lambda asess, _: asess.SessionManager.cookies(SECRET, expire=EXPIRE, encryption_mode=mode),
        note="PBKDF2 per new token, in a thread" if mode == "legacy" else "AEAD",
    )


def memory_app() -> Any:
    return _middleware_app("asess memory", lambda asess, _: asess.SessionManager.memory())


def _files_name(fsync: bool, inline_io: bool) -> str:
    return (
        "asess files" + (" fsync=True" if fsync else "") + (" inline_io=True" if inline_io else "")
    )


def _files_note(fsync: bool, inline_io: bool) -> str:
    if fsync:
        return "fsync every save, one executor hop per call"
    if inline_io:
        return "no fsync, reads and saves on the loop while they stay fast (opt-in)"
    return "default: no fsync (as Emmett), one executor hop per call"


def files_app(fsync: bool = False, inline_io: bool = False) -> Any:
    return _middleware_app(
        _files_name(fsync, inline_io),
        lambda asess, path: asess.SessionManager.files(
            path=path, expire=EXPIRE, fsync=fsync, inline_io=inline_io
        ),
        cleanup_dir=True,
        note=_files_note(fsync, inline_io),
    )


def redis_app(url: str) -> Any:
    from .redis_server import KEY_PREFIX

    return _middleware_app(
        "asess redis",
        lambda asess, _: asess.SessionManager.redis(
            url, prefix=KEY_PREFIX + "asess-app:", expire=EXPIRE
        ),
    )


# --- store cycles ------------------------------------------------------------------------------


class AsessStore(ServiceSubject):
    """One request's worth of session work per step: ``async with manager.lifecycle(cookie)``."""

    family = "asess"

    def __init__(self, name: str, build: Any, note: str = "") -> None:
        self.name = name
        self.note = note
        self._build = build
        self._manager: Any = None
        self._dir: str | None = None

    async def open(self) -> None:
        import tempfile

        self._dir = tempfile.mkdtemp(prefix="asess-bench-store-")
        self._manager = self._build(_need("asess"), self._dir)

    async def client(self, index: int) -> Step:
        manager = self._manager
        ids = _need("asess._ids")
        record_cls = _need("asess._record").Record
        dump_record = _need("asess._serialize").dump_record
        sid = ids.new_session_id()
        now = time.time()
        # Seed the session untimed, straight into the store.
        record = record_cls(
            data=session_data(), created_at=now, issued_at=now, expires_at=now + EXPIRE
        )
        await manager.store.create(sid, dump_record(record), EXPIRE, now)
        header = f"{manager.cookie_name}={sid}"
        name = self.name

        async def step() -> None:
            async with manager.lifecycle(header) as session:
                if session.id != sid:
                    raise BenchError(f"{name}: session {sid} was not found")
                before = session["counter"]
                session["counter"] = before + 1
            _check(name, before, session["counter"])

        return step

    async def close(self) -> None:
        import shutil

        if self._manager is not None:
            await self._manager.aclose()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def files_store(fsync: bool = False, inline_io: bool = False) -> ServiceSubject:
    _need("asess._backends.files")
    return AsessStore(
        _files_name(fsync, inline_io),
        lambda asess, path: asess.SessionManager.files(
            path=path, expire=EXPIRE, fsync=fsync, inline_io=inline_io
        ),
        note=_files_note(fsync, inline_io),
    )


def redis_store(url: str) -> ServiceSubject:
    from .redis_server import KEY_PREFIX

    _need("asess._backends.redis")
    return AsessStore(
        "asess redis",
        lambda asess, _: asess.SessionManager.redis(
            url, prefix=KEY_PREFIX + "asess:", expire=EXPIRE
        ),
        note="autopipeline on",
    )


def postgres_store(dsn: str) -> ServiceSubject:
    import secrets

    from .postgres_server import TABLE_PREFIX

    _need("asess._backends.postgres")
    table = TABLE_PREFIX + secrets.token_hex(4)
    return AsessStore(
        "asess postgres",
        lambda asess, _: asess.SessionManager.postgres(dsn, table=table, expire=EXPIRE),
        note="pool of 10 built from the DSN",
    )
