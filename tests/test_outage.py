"""A Redis outage under load, at the app level: fail clearly, recover alone, lose nothing.

The demo (Redis backend) runs under uvicorn with two workers while visitors
keep counting. The redis-server is killed, then started again on the same
port with its append-only file. While it is down every request must get the
middleware's 503 (and the server log must say why, naming Redis); once it is
back the same app, not restarted, must serve again; and no visitor's session
may have been swapped for a fresh one: every counter continues from where it
was.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from .load import Clients, Figures, Visitor, stored_counter, uvicorn_demo, visit
from .redis_servers import RedisServer, need_redis_server
from .servers import backend_missing

pytestmark = pytest.mark.timeout(180)

VISITORS = 16
PAUSE = 0.02  # between one visitor's requests: a steady load, not a busy loop
DEADLINE = 60.0  # for the load to show each phase; only ever reached when broken


async def _until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"never saw {what} within {DEADLINE}s")
        await asyncio.sleep(0.05)


async def test_redis_outage_fails_clearly_and_loses_nothing(tmp_path: Path) -> None:
    if reason := backend_missing("redis"):
        pytest.skip(reason)
    need_redis_server()
    redis = RedisServer(persist=True).start()
    try:
        env = {"ASESS_DEMO_BACKEND": "redis", "REDIS_URL": redis.url}
        with uvicorn_demo(tmp_path, workers=2, **env) as server:
            await _outage_under_load(server.url, redis)
            assert server.proc.poll() is None, "the app died; it must ride out the outage"
            log = server.output()
    finally:
        redis.stop()
    # Each failed request left a line naming the store and the cause.
    assert "session store unavailable, answering 503" in log, log
    assert "Redis failed while reading a session (ConnectionError" in log, log


async def _outage_under_load(url: str, redis: RedisServer) -> None:
    figures = Figures("redis outage")
    phase = "before"
    samples: list[tuple[int, str, int | None]] = []  # (visitor, phase, status)
    stop = asyncio.Event()

    async with Clients(url, VISITORS) as client:
        visitors = [Visitor() for _ in range(VISITORS)]
        for visitor in visitors:
            for _ in range(3):
                await visit(client, visitor, figures)
        assert [v.last for v in visitors] == [3] * VISITORS and figures.errors == 0
        cookies = [v.cookie for v in visitors]

        async def browse(i: int, visitor: Visitor) -> None:
            while not stop.is_set():
                sent = phase
                response = await visit(client, visitor, figures)
                # A request that straddled a change of phase proves nothing either way.
                seen = sent if phase == sent else "straddled"
                samples.append((i, seen, None if response is None else response.status_code))
                await asyncio.sleep(PAUSE)

        def count(which: str, ok: Callable[[int | None], bool], each: int) -> bool:
            per = Counter(i for i, p, status in samples if p == which and ok(status))
            return all(per[i] >= each for i in range(VISITORS))

        started = time.perf_counter()
        tasks = [asyncio.create_task(browse(i, v)) for i, v in enumerate(visitors)]
        try:
            await _until(lambda: count("before", lambda s: s == 200, 2), "load before the outage")
            phase = "stopping"
            await asyncio.to_thread(redis.kill)
            phase = "outage"
            await _until(lambda: count("outage", lambda s: True, 3), "requests during the outage")
            newcomer = Visitor()
            answer = await visit(client, newcomer, figures)
            assert answer is not None and answer.status_code >= 500
            assert newcomer.cookie is None, "a session was handed out that could not be stored"
            phase = "restarting"
            await asyncio.to_thread(redis.start)  # same port, same append-only file
            phase = "after"
            await _until(lambda: count("after", lambda s: s == 200, 3), "recovery after restart")
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            figures.seconds = time.perf_counter() - started

        by_phase = Counter((p, status) for _, p, status in samples)
        print(f"\n{figures.line()}\n  answers by phase: {dict(sorted(by_phase.items(), key=str))}")
        assert not [s for _, _, s in samples if s is None], "transport errors: the app went away"
        assert {s for _, p, s in samples if p in ("before", "after")} == {200}
        assert {s for _, p, s in samples if p == "outage"} == {503}

        # Nobody's session was replaced: same cookie, and the counter each
        # visitor was told never went back (a fresh session starts at 1).
        assert [v.cookie for v in visitors] == cookies
        for visitor in visitors:
            assert visitor.history[:3] == [1, 2, 3]
            assert all(a < b for a, b in zip(visitor.history, visitor.history[1:]))
            assert await stored_counter(client, visitor, figures) == visitor.last
        assert figures.corrupt == 0

    with redis.client() as conn:
        keys = [k for k in conn.scan_iter(match="emtsess:*") if not k.endswith(b":lock")]
    assert len(keys) == VISITORS, "the outage created or lost sessions in Redis"
