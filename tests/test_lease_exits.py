"""Every way a request can end gives its session's lease back at once.

Success, a handler exception, a store error after the lease was taken, an
unexpected exception inside load, a cancelled request (during load and
during the handler) and a client that disconnects: after each, a second
request takes the lease without waiting, and no lease state or file
descriptor is left behind.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from asess import SessionBackendError, SessionManager, SessionMiddleware
from asess._backends.memory import MemoryStore
from asess.testing import ManualClock

pytestmark = pytest.mark.timeout(60)


class FlakyMemory(MemoryStore):
    """Fails the read that follows taking the lease, the way a dropped connection would."""

    def __init__(self, error: type[BaseException]) -> None:
        super().__init__()
        self.error = error
        self.fail_next_read = False

    async def acquire(self, sid: str, seconds: float, now: float) -> Any:
        lease = await super().acquire(sid, seconds, now)
        if lease is not None and self.fail_armed:
            self.fail_next_read = True
        return lease

    fail_armed = False

    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        if self.fail_next_read:
            self.fail_next_read = False
            raise self.error("the store went away mid-load")
        return await super().read(sid, ttl, now)


def _app(manager: SessionManager) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        s = scope["session"]
        if scope["path"] == "/boom":
            raise RuntimeError("handler failed")
        if scope["path"] == "/disconnect":
            message = await receive()
            while message["type"] != "http.disconnect":
                message = await receive()
            return  # the client left: no response is sent
        if scope["path"] == "/hang":
            await asyncio.Event().wait()
        s["n"] = (s.get("n") or 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(s["n"]).encode()})

    return SessionMiddleware(app, manager)


async def _call(app: Any, path: str, cookie: str | None, receive: Any = None) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def default_receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    headers = [(b"cookie", cookie.encode())] if cookie else []
    scope = {"type": "http", "path": path, "headers": headers, "query_string": b""}
    await app(scope, receive or default_receive, send)
    return sent


async def _login(app: Any) -> str:
    sent = await _call(app, "/", None)
    cookie = dict(sent[0]["headers"])[b"set-cookie"].decode().partition(";")[0]
    return cookie


def _manager(store: MemoryStore) -> SessionManager:
    return SessionManager(store, locking=True, lock_timeout=30.0, clock=ManualClock())


async def _assert_free(app: Any, store: MemoryStore, cookie: str, clock: ManualClock) -> None:
    before = clock.now()
    sent = await _call(app, "/", cookie)
    assert sent[0]["status"] == 200
    assert clock.now() == before, "the next request had to wait for a lease"
    assert store.lease_count == 0


@pytest.mark.parametrize("path", ["/", "/boom", "/disconnect"])
async def test_success_errors_and_disconnects_release_the_lease(path: str) -> None:
    store = MemoryStore()
    manager = _manager(store)
    app = _app(manager)
    cookie = await _login(app)
    if path == "/boom":
        with pytest.raises(RuntimeError, match="handler failed"):
            await _call(app, path, cookie)
    elif path == "/disconnect":

        async def gone() -> Any:
            return {"type": "http.disconnect"}

        assert await _call(app, path, cookie, gone) == []
    else:
        await _call(app, path, cookie)
    await _assert_free(app, store, cookie, manager.policy.clock)  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [SessionBackendError, RuntimeError])
async def test_a_failure_inside_load_after_the_lease_releases_it(error: type[Exception]) -> None:
    store = FlakyMemory(error)
    manager = _manager(store)
    app = _app(manager)
    cookie = await _login(app)
    store.fail_armed = True
    if error is SessionBackendError:
        sent = await _call(app, "/", cookie)
        assert sent[0]["status"] == 503
    else:
        with pytest.raises(RuntimeError, match="went away"):
            await _call(app, "/", cookie)
    store.fail_armed = False
    await _assert_free(app, store, cookie, manager.policy.clock)  # type: ignore[arg-type]


async def test_a_cancelled_request_releases_the_lease() -> None:
    store = MemoryStore()
    manager = _manager(store)
    app = _app(manager)
    cookie = await _login(app)
    task = asyncio.create_task(_call(app, "/hang", cookie))
    for _ in range(20):
        await asyncio.sleep(0)
    assert store.lease_count == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await _assert_free(app, store, cookie, manager.policy.clock)  # type: ignore[arg-type]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
async def test_requests_cancelled_during_load_leak_no_descriptor_or_lease(tmp_path: Path) -> None:
    manager = SessionManager.files(path=tmp_path, locking=True, lock_timeout=30.0)
    app = _app(manager)
    cookie = await _login(app)
    await _call(app, "/", cookie)  # warm the executor's threads
    before = _open_fds()
    for i in range(300):
        task = asyncio.create_task(_call(app, "/hang", cookie))
        for _ in range(i % 7):  # cancel at different points of the load
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.05)  # shielded releases finish in their threads
    locks = [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]
    assert locks == []
    assert _open_fds() <= before + 2
    sent = await _call(app, "/", cookie)
    assert sent[0]["status"] == 200
    await manager.aclose()


async def test_an_http_client_that_disconnects_mid_response_releases_the_lease(
    tmp_path: Path,
) -> None:
    manager = SessionManager.files(path=tmp_path, locking=True, lock_timeout=30.0)
    transport = httpx.ASGITransport(app=_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/")).text == "1"
        hung = asyncio.create_task(c.get("/hang"))
        await asyncio.sleep(0.05)
        hung.cancel()
        await asyncio.gather(hung, return_exceptions=True)
        r = await asyncio.wait_for(c.get("/"), 5)  # no 30 s wait for a leaked lease
        assert r.text == "2"
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".lock")] == []
    await manager.aclose()


async def test_a_failed_handler_saves_nothing_it_changed() -> None:
    store = MemoryStore()
    manager = _manager(store)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        s = scope["session"]
        s["n"] = -1 if scope["path"] == "/boom" else 1
        if scope["path"] == "/boom":
            raise RuntimeError("handler failed after changing the session")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(s["n"]).encode()})

    wrapped = SessionMiddleware(app, manager)
    cookie = await _login(wrapped)
    with pytest.raises(RuntimeError):
        await _call(wrapped, "/boom", cookie)
    sid = cookie.partition("=")[2]
    from asess._serialize import load_record

    raw = await store.read(sid, 60, manager.policy.clock.now())
    assert raw is not None and load_record(raw).data == {"n": 1}
