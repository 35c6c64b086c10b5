"""A small ASGI app for logout races: login, a slow request, a stream, logout, whoami, count.

In-process tests drive it with events (``Gates``) so two requests of one session
overlap exactly where the test wants; the multi-worker tests run it under
uvicorn (``app_from_env``) and overlap requests with gate files or a server-side delay.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from asess import Session, SessionInterrupted, SessionManager, SessionMiddleware


class Gates:
    """Events a test sets to let a held request go on; absent in servers (they sleep)."""

    def __init__(self) -> None:
        self.loaded = asyncio.Event()  # the slow request has its session
        self.go = asyncio.Event()  # let it change and save


async def _hold(gates: Gates | None, query: dict[str, list[str]]) -> None:
    if gates is not None:
        gates.loaded.set()
        await gates.go.wait()
    elif "gate" in query:
        await _hold_on_files(query["gate"][0], int(query.get("ms", ["0"])[0]))
    else:
        await asyncio.sleep(int(query.get("ms", ["300"])[0]) / 1000)


async def _hold_on_files(token: str, ms: int) -> None:
    """Gates across processes: ``<token>.loaded`` tells the test, ``<token>.go`` answers.

    A request served by either uvicorn worker waits exactly until the test has
    run its logout, however slowly a loaded machine schedules the two. With
    ``ms`` it sleeps that long instead of waiting (a logout that waits for its
    lease cannot answer first), but still tells the test it has loaded.
    """
    gates = Path(os.environ["RACE_GATES"])
    (gates / f"{token}.loaded").touch()
    if ms:
        await asyncio.sleep(ms / 1000)
        return
    go = gates / f"{token}.go"
    for _ in range(6000):  # 30 s: the test's own timeout ends it sooner
        if go.exists():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError(f"no {go} within 30 s")


def race_app(manager: SessionManager, gates: Gates | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan([manager], receive, send)
            return
        session: Session = scope["session"]
        query = parse_qs(scope.get("query_string", b"").decode())
        path = scope["path"]
        if scope["type"] == "websocket":
            await _websocket(session, receive, send, gates)
            return
        if path == "/stream":
            await _stream(session, send, gates, query)
            return
        body = await _http(session, path, gates, query)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    return SessionMiddleware(app, manager)


async def _http(
    session: Session, path: str, gates: Gates | None, query: dict[str, list[str]]
) -> str:
    if path == "/login":
        session.regenerate()
        session["user"] = query.get("user", ["alice"])[0]
    elif path == "/logout":
        session.invalidate()
    elif path == "/slow":
        session.get("user")
        await _hold(gates, query)
        session["cart"] = ["bought after the logout"]
    elif path == "/count":
        count = session.get("count", 0)
        await asyncio.sleep(0.002)  # a read-modify-write that other requests can overlap
        session["count"] = count + 1
        return f"count={session['count']}"
    return f"user={session.get('user')} cart={session.get('cart')}"


async def _stream(session: Session, send: Any, gates: Gates | None, query: Any) -> None:
    session.get("user")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first ", "more_body": True})
    await _hold(gates, query)
    session["cart"] = ["changed while streaming"]  # saved at the end, after the response started
    await send({"type": "http.response.body", "body": b"last"})


async def _websocket(session: Session, receive: Any, send: Any, gates: Gates | None) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    session.get("user")
    await _hold(gates, {})
    session["cart"] = ["changed in a websocket"]
    try:
        await session.save()
        outcome = "saved"
    except SessionInterrupted:
        outcome = "interrupted"
    await send({"type": "websocket.send", "text": outcome})
    await send({"type": "websocket.close", "code": 1000})


def _manager_from_env(name: str, locking: bool, timeout: float) -> SessionManager:
    """A manager of its own for mount ``name``: its own directory, key prefix or table."""
    if os.environ["RACE_BACKEND"] == "files":
        path = os.path.join(os.environ["RACE_PATH"], name)
        return SessionManager.files(path=path, locking=locking, lock_timeout=timeout)
    if os.environ["RACE_BACKEND"] == "postgres":
        return SessionManager.postgres(
            os.environ["RACE_DSN"],
            table=f"{os.environ['RACE_TABLE']}_{name}",
            locking=locking,
            lock_timeout=timeout,
        )
    return SessionManager.redis(
        os.environ["RACE_REDIS"],
        prefix=f"{os.environ['RACE_PREFIX']}{name}:",
        locking=locking,
        lock_timeout=timeout,
    )


def app_from_env() -> Any:
    """For ``uvicorn --factory tests.race_app:app_from_env`` (multi-worker races).

    ``RACE_MOUNTS`` lists ``name=locking:lock_timeout`` entries, comma separated;
    each name is served under ``/name/`` by a race app with a manager of its
    own, so one server (and one worker start-up) serves several configurations.
    """
    managers: dict[str, SessionManager] = {}
    apps: dict[str, Any] = {}
    for entry in os.environ["RACE_MOUNTS"].split(","):
        name, _, config = entry.partition("=")
        locking, _, timeout = config.partition(":")
        managers[name] = _manager_from_env(name, locking == "1", float(timeout))
        apps[name] = race_app(managers[name])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(list(managers.values()), receive, send)
            return
        name, _, rest = scope["path"][1:].partition("/")
        await apps[name]({**scope, "path": "/" + rest}, receive, send)

    return app


async def _lifespan(managers: list[SessionManager], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for manager in managers:
                await manager.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
