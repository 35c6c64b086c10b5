"""Hostile input at the app level: what a forged cookie can make the server do (nothing).

The demo app is driven with raw ASGI requests, so a cookie may carry any
byte (NUL, newlines, non-ASCII) that an HTTP client would refuse to send.
What reaches the disk is watched with a Python audit hook (every ``open``,
``utime``, rename and removal in the process, executor threads included);
what reaches Redis with ``INFO commandstats`` and a key listing. The same hook
proves that a validly sealed pickle asking for ``os.system`` runs nothing.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from emmett_core.cryptography import symmetric as emmett_crypto

from asess import KeyRing, Record, SessionManager, SessionMiddleware
from asess._backends.files_format import Layout
from asess._codecs import legacy
from asess._codecs.legacy import LegacyCodec
from asess._ids import is_session_id
from asess.demo import build_app, counter_app

from .helpers import plain_app
from .redis_servers import RedisServer, command_counts, delta, need_redis_server
from .servers import backend_missing

pytestmark = pytest.mark.timeout(60)

COOKIE = "asess_session"
LAYOUT = Layout("emt_%s.sess")

# Cookie values no store may ever see. The last one is well formed but unknown:
# it may be looked up, and must never be adopted.
MALFORMED = {
    "traversal": b"../../etc/passwd",
    "traversal-43": b"../../../../../../../../../../etc/passwd/..",
    "absolute": b"/etc/passwd",
    "encoded": b"..%2F..%2F..%2Fetc%2Fpasswd",
    "nul": b"A" * 20 + b"\x00" + b"A" * 22,
    "newline": b"A" * 42 + b"\n",
    "dots-43": b"." * 43,
    "slash-43": b"A" * 42 + b"/",
    "10kB": b"A" * 10_240,
    "44": b"A" * 44,
    "utf8": "\u00e9t\u00e9-\u2603-\U0001f600".encode(),
    "latin1-43": "\u00e9".encode("latin-1") * 43,
    "kelvin": b"A" * 42 + "\u212a".encode(),
    "quoted": b'"../../etc/passwd"',  # (a quoted well-formed id is that id: RFC 6265)
    "glob": b"*" * 43,
    "redis-glob": b"A" * 21 + b"?[*]" + b"A" * 18,
    "empty": b"",
}
UNKNOWN = b"Q" * 43
FRAGMENTS = ("passwd", "..", "\x00", "A" * 20, "Q" * 43, "\u00e9", "*")

# -- an audit hook that records file-system and process events while asked ----

_WATCHED = {
    "open",
    "os.utime",
    "os.rename",
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "subprocess.Popen",
}
_events: list[tuple[str, tuple[Any, ...]]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _events is not None and event in _WATCHED:
        _events.append((event, args))


sys.addaudithook(_audit)  # process-wide and permanent: it only records inside watching()


@contextmanager
def watching() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    global _events
    _events = seen = []
    try:
        yield seen
    finally:
        _events = None


def touched_paths(events: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    paths = []
    for _, args in events:
        for arg in args:
            if isinstance(arg, (str, bytes)):
                paths.append(os.fsdecode(arg))
    return paths


# -- raw ASGI -----------------------------------------------------------------


async def get(app: Any, path: str, cookie: bytes | None = None) -> tuple[int, bytes, bytes | None]:
    """GET ``path`` with a raw Cookie header; returns (status, body, new cookie value)."""
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", COOKIE.encode() + b"=" + cookie))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    new = None
    for key, value in start["headers"]:
        if key == b"set-cookie" and value.startswith(COOKIE.encode() + b"="):
            new = value.split(b";")[0].partition(b"=")[2]
    return start["status"], body, new


# -- forged ids never reach the file system -------------------------------------


@pytest.mark.parametrize("locking", [False, True], ids=["plain", "locking"])
async def test_forged_ids_never_reach_the_file_system(tmp_path: Path, locking: bool) -> None:
    sessions = tmp_path / "sessions"
    app = build_app("files", path=str(sessions), locking=locking)
    status, _, good = await get(app, "/counter")  # warm up: imports, the directory
    assert status == 200 and good is not None

    with watching() as events:
        for forged in MALFORMED.values():
            status, body, new = await get(app, "/whoami", forged)
            assert (status, body, new) == (200, b"{}", b"")  # the unusable cookie is cleared
    assert events == []

    with watching() as events:
        issued = []
        for forged in MALFORMED.values():
            status, body, new = await get(app, "/counter", forged)
            assert (status, body) == (200, b"This is your 1 visit")
            assert new is not None and is_session_id(new.decode()) and new != forged
            issued.append(new.decode())
    paths = touched_paths(events)
    assert paths, "the fresh sessions were written somewhere"
    for path in paths:
        assert not any(f in path for f in FRAGMENTS), path
        # The directory itself (fsync after a rename), or a file named after an issued id.
        if path != str(sessions):
            assert os.path.dirname(path) == str(sessions), path
            assert os.path.basename(path)[4:47] in issued, f"{path} is not an issued id's"

    # A well-formed unknown id is looked up, then never adopted.
    status, body, new = await get(app, "/counter", UNKNOWN)
    assert (status, body) == (200, b"This is your 1 visit")
    assert new is not None and new != UNKNOWN and is_session_id(new.decode())
    issued.append(new.decode())
    assert sorted(_session_files(sessions)) == sorted([good.decode(), *issued])
    # Besides sessions, only lock sidecars (locking=True) of looked-up ids may exist.
    others = set(os.listdir(sessions)) - {f"emt_{sid}.sess" for sid in [good.decode(), *issued]}
    assert others <= {f"emt_{UNKNOWN.decode()}.sess.lock"}, others


def _session_files(directory: Path) -> list[str]:
    return [n[4:47] for n in os.listdir(directory) if LAYOUT.is_session(n)]


# -- forged ids never reach Redis ----------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A server of our own, so INFO commandstats counts only what these tests send."""
    if reason := backend_missing("redis"):
        pytest.skip(reason)
    need_redis_server()
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("locking", [False, True], ids=["plain", "locking"])
async def test_forged_ids_never_reach_redis(redis_server: RedisServer, locking: bool) -> None:
    app = build_app("redis", redis_url=redis_server.url, locking=locking)
    client = aioredis.from_url(redis_server.url)
    try:
        await client.flushdb()
        status, _, good = await get(app, "/counter")
        assert status == 200 and good is not None

        before = await command_counts(client)
        for forged in MALFORMED.values():
            status, body, new = await get(app, "/whoami", forged)
            assert (status, body, new) == (200, b"{}", b"")  # the unusable cookie is cleared
        assert delta(before, await command_counts(client)) == {}

        issued = []
        for forged in [*MALFORMED.values(), UNKNOWN]:
            status, body, new = await get(app, "/counter", forged)
            assert (status, body) == (200, b"This is your 1 visit")
            assert new is not None and is_session_id(new.decode()) and new != forged
            issued.append(new.decode())
        keys = sorted(k.decode() for k in await client.keys("*"))
        assert keys == sorted(f"emtsess:{sid}" for sid in [good.decode(), *issued])
    finally:
        await client.aclose()
        await app.manager.aclose()


# -- regenerate and invalidate leave nothing to replay ----------------------------


async def _rotate(s: Any, scope: dict[str, Any]) -> str:
    if scope["path"] == "/login":
        s.regenerate()
        s["user"] = "alice"
    elif scope["path"] == "/logout":
        s.invalidate()
    else:
        s["counter"] = (s.get("counter") or 0) + 1
    return repr(sorted(s.items()))


@pytest.fixture(params=["files", "redis"])
async def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "files":
        built = SessionManager.files(path=tmp_path / "sessions")
    else:
        built = SessionManager.redis(request.getfixturevalue("redis_server").url)
    yield built
    await built.aclose()


async def _stored(manager: SessionManager, sid: str) -> bool:
    return await manager.store.read(sid, 60, time.time()) is not None


async def test_old_id_is_dead_after_regenerate(manager: SessionManager) -> None:
    app = SessionMiddleware(plain_app(_rotate), manager)
    _, _, old = await get(app, "/")
    assert old is not None and await _stored(manager, old.decode())
    _, body, new = await get(app, "/login", old)
    assert new is not None and new != old and b"alice" in body
    assert not await _stored(manager, old.decode())
    # Replaying the old id gets a fresh session under a new id, never the old one back.
    _, body, replayed = await get(app, "/", old)
    assert body == b"[('counter', 1)]"
    assert replayed not in (None, old, new)
    assert not await _stored(manager, old.decode())
    _, body, _ = await get(app, "/", new)
    assert body == b"[('counter', 2), ('user', 'alice')]"


async def test_token_and_id_are_dead_after_invalidate(manager: SessionManager) -> None:
    app = SessionMiddleware(plain_app(_rotate), manager)
    _, _, old = await get(app, "/")
    await get(app, "/", old)
    _, _, cleared = await get(app, "/logout", old)
    assert cleared == b""  # the cookie is expired on the client
    assert not await _stored(manager, old.decode())
    _, body, replayed = await get(app, "/", old)
    assert body == b"[('counter', 1)]"
    assert replayed not in (None, old)
    assert not await _stored(manager, old.decode())


# -- a sealed pickle that asks for code execution ------------------------------------

KEY = "hostile-input-tests-key"
EXEC_EVENTS = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "subprocess.Popen"}


def _reducing(func: Any, *args: Any) -> bytes:
    class Hostile:
        def __reduce__(self) -> tuple[Any, ...]:
            return func, args

    return pickle.dumps({"counter": 41, "x": Hostile()}, protocol=2)


def _payloads(marker: Path) -> dict[str, bytes]:
    command = f"touch {marker}"
    return {
        "os.system": _reducing(os.system, command),
        "subprocess.Popen": _reducing(subprocess.Popen, ["touch", str(marker)]),
        "eval": _reducing(eval, f"__import__('os').system({command!r})"),
        "exec": _reducing(exec, f"import os; os.system({command!r})"),
        # Hand-written protocol 0: GLOBAL opcodes naming the callables directly.
        "posix.system": b"(dp0\nS'x'\ncposix\nsystem\n(S'" + command.encode() + b"'\ntRs.",
        "builtins.getattr": (
            b"(dp0\nS'x'\nc__builtin__\ngetattr\n(c__builtin__\n__import__\n(S'os'\ntR"
            b"S'system'\ntR(S'" + command.encode() + b"'\ntRs."
        ),
    }


def _asess_token(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> str:
    """A token exactly as asess seals one (timestamps in the salt), around ``payload``."""
    with monkeypatch.context() as patch:
        patch.setattr(legacy, "dumps_plain", lambda data, **options: payload)
        now = time.time()
        record = Record({}, created_at=now, issued_at=now, expires_at=now + 3600)
        return LegacyCodec(KeyRing(KEY)).encode(record)


def test_the_payloads_do_run_under_plain_pickle(tmp_path: Path, monkeypatch) -> None:
    """Guard for the test below: each payload really executes when unpickled naively."""
    marker = tmp_path / "pwned"
    payloads = _payloads(marker)
    calls: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    for name, payload in payloads.items():
        calls.clear()
        marker.unlink(missing_ok=True)
        loaded = pickle.loads(payload)  # the unsafe call asess never makes
        if isinstance(loaded["x"], subprocess.Popen):
            loaded["x"].wait()
        assert calls or marker.exists(), name


@pytest.mark.parametrize("sealer", ["asess", "emmett"])
async def test_sealed_pickle_asking_for_code_runs_nothing(
    sealer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    payloads = _payloads(marker)
    calls: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    manager = SessionManager.cookies(KEY, encryption_mode="legacy")
    app = SessionMiddleware(counter_app, manager)
    for name, payload in payloads.items():
        if sealer == "asess":
            token = _asess_token(payload, monkeypatch)
        else:
            token = emmett_crypto.encrypt_b64(payload, KEY)
        with watching() as events:
            status, body, new = await get(app, "/counter", token.encode())
        assert (status, body) == (200, b"This is your 1 visit"), name  # a fresh session
        assert new is not None and new != token.encode(), name
        assert not [e for e in events if e[0] in EXEC_EVENTS], (name, events)
        assert calls == [] and not marker.exists(), name
    # The sealing is genuine: the same token around plain data is accepted.
    plain = pickle.dumps({"counter": 41})
    token = _asess_token(plain, monkeypatch) if sealer == "asess" else None
    token = token or emmett_crypto.encrypt_b64(plain, KEY)
    status, body, _ = await get(app, "/counter", token.encode())
    assert (status, body) == (200, b"This is your 42 visit")
