"""Process bodies for the cross-process lease tests in tests/test_files_locking.py.

They live apart from the test module because a ``spawn`` child imports the
module its target is defined in: here that is asess alone, not pytest and
the test module's other imports, so each child starts in a fraction of the time.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from asess import SessionManager
from asess._backends.files import FileStore
from asess._record import Record
from asess._serialize import dump_record

TTL = 3600
T0 = 1_800_000_000.0
COOKIE = "asess_session"


def payload(n: int, now: float = T0) -> bytes:
    return dump_record(Record({"n": n}, now, now))


async def increment(manager: SessionManager, header: str, marker: str) -> None:
    """One request that bumps the counter; proves it was alone with the session meanwhile."""
    async with manager.lifecycle(header) as session:
        # O_EXCL fails if another holder, in any process, is inside right now.
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        try:
            await asyncio.sleep(0)  # let every other task pile up on the lease
            session["n"] += 1
        finally:
            os.unlink(marker)


def counter_process(directory: str, sid: str, tasks: int, start: Any) -> None:
    async def run() -> None:
        manager = SessionManager.files(path=directory, locking=True, lock_timeout=60, fsync=False)
        start.wait()
        marker = os.path.join(directory, "inside")
        header = f"{COOKIE}={sid}"
        await asyncio.gather(*(increment(manager, header, marker) for _ in range(tasks)))

    asyncio.run(run())


def holder_process(directory: str, sid: str, now: float, ready: Any, verdict: Any) -> None:
    """Hold the lease of ``sid`` from ``now`` for 10s; after ``verdict``, try to write with it."""

    async def run() -> None:
        store = FileStore(directory, fsync=False)
        lease = await store.acquire(sid, 10, now)
        assert lease is not None
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, verdict.wait, 60)
        late = await store.update(sid, payload(-1), TTL, now + 12, lease)
        await store.release(lease)
        os._exit(10 + late)

    asyncio.run(run())


def killed_holder_process(directory: str, sid: str, ready: Any) -> None:
    async def run() -> None:
        store = FileStore(directory)
        assert await store.acquire(sid, 30, time.time()) is not None
        ready.set()
        await asyncio.sleep(3600)

    asyncio.run(run())
