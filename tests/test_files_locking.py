"""locking=True: one holder per session across tasks and processes, timeouts, dead holders."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from asess._backends import files_lock
from asess._backends.files import FileStore
from asess._backends.files_format import Layout
from asess._backends.files_lock import _Turns
from asess._exceptions import SessionLockTimeout
from asess._gc import sweep
from asess._ids import new_session_id
from asess._record import Record

TTL = 3600


def new_record(n: int) -> Record:
    now = time.time()
    return Record({"n": n}, now, now)


async def increment(store: FileStore, ref: str, marker: str) -> None:
    """One request: lock, load, bump the counter, save; proves it was alone while inside."""
    async with store.lock(ref):
        # O_EXCL fails if another holder, in any process, is inside right now.
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        try:
            loaded = await store.load(ref, TTL)
            assert loaded is not None
            await asyncio.sleep(0)  # let every other task pile up on the lock
            await store.save(ref, new_record(loaded.data["n"] + 1), TTL)
        finally:
            os.unlink(marker)


def counter_process(directory: str, ref: str, tasks: int, start: Any) -> None:
    async def run() -> None:
        store = FileStore(directory, locking=True, fsync=False, lock_timeout=60)
        start.wait()
        marker = os.path.join(directory, "inside")
        await asyncio.gather(*(increment(store, ref, marker) for _ in range(tasks)))

    asyncio.run(run())


async def test_200_concurrent_increments_over_two_processes_end_at_200(tmp_path: Path) -> None:
    directory = str(tmp_path)
    store = FileStore(directory, locking=True)
    ref = new_session_id()
    await store.save(ref, new_record(0), TTL)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)  # both processes begin together
    procs = [ctx.Process(target=counter_process, args=(directory, ref, 100, start)) for _ in "ab"]
    for proc in procs:
        proc.start()
    for proc in procs:
        await asyncio.get_running_loop().run_in_executor(None, proc.join)
        assert proc.exitcode == 0
    loaded = await store.load(ref, TTL)
    assert loaded is not None and loaded.data["n"] == 200


async def test_tasks_of_one_process_take_turns(tmp_path: Path) -> None:
    store = FileStore(tmp_path, locking=True, fsync=False)
    ref = new_session_id()
    await store.save(ref, new_record(0), TTL)
    await asyncio.gather(*(increment(store, ref, str(tmp_path / "inside")) for _ in range(50)))
    loaded = await store.load(ref, TTL)
    assert loaded is not None and loaded.data["n"] == 50
    assert store._locks is not None and store._locks._entries == {}  # no per-id leftovers


async def test_waiter_in_the_same_process_times_out_naming_the_session(tmp_path: Path) -> None:
    store = FileStore(tmp_path, locking=True, lock_timeout=0.2)
    ref = new_session_id()
    async with store.lock(ref):
        with pytest.raises(SessionLockTimeout) as info:
            async with store.lock(ref):
                pytest.fail("two holders of one session")
    assert store.path_of(ref) in str(info.value)
    assert "lock_timeout" in str(info.value)
    async with store.lock(ref):  # released after all, and the timed-out wait left nothing held
        pass


async def test_cancelled_waiter_leaves_the_lock_usable(tmp_path: Path) -> None:
    store = FileStore(tmp_path, locking=True, lock_timeout=5)
    ref = new_session_id()
    fds_before = len(os.listdir("/proc/self/fd"))
    async with store.lock(ref):
        waiter = asyncio.create_task(store.lock(ref).__aenter__())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with store.lock(ref):
        pass
    assert len(os.listdir("/proc/self/fd")) == fds_before


def holder_process(directory: str, ref: str, ready: Any) -> None:
    async def run() -> None:
        store = FileStore(directory, locking=True)
        async with store.lock(ref):
            ready.set()
            await asyncio.sleep(3600)

    asyncio.run(run())


async def test_lock_held_by_another_process_times_out_then_frees_when_it_is_killed(
    tmp_path: Path,
) -> None:
    ref = new_session_id()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=holder_process, args=(str(tmp_path), ref, ready))
    holder.start()
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, ready.wait, 60)
        impatient = FileStore(tmp_path, locking=True, lock_timeout=0.3)
        with pytest.raises(SessionLockTimeout, match="stayed locked"):
            async with impatient.lock(ref):
                pytest.fail("locked a session another process holds")
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        await loop.run_in_executor(None, holder.join)
        patient = FileStore(tmp_path, locking=True, lock_timeout=30)
        async with patient.lock(ref):
            pass
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join()


async def test_waiter_relocks_when_gc_removed_the_lock_file_it_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = threading.Event()
    real_try = files_lock.try_flock

    def try_flock(fd: int) -> bool:
        got = real_try(fd)
        if not got:
            refused.set()
        return got

    monkeypatch.setattr(files_lock, "try_flock", try_flock)
    # Separate stores: no shared in-process lock, so all three meet at flock.
    first, second, third = (FileStore(tmp_path, locking=True, lock_timeout=t) for t in (5, 5, 0.2))
    ref = new_session_id()
    held = asyncio.Event()

    async def wait_then_hold() -> None:
        async with second.lock(ref):
            held.set()
            await asyncio.sleep(3600)

    async with first.lock(ref):
        waiter = asyncio.create_task(wait_then_hold())
        while not refused.is_set():
            await asyncio.sleep(0.005)
    # Released, and before the waiter can run, gc unlinks the idle lock file.
    assert sweep(str(tmp_path), Layout("emt_%s.sess"), TTL, time.time()).locks == 1
    await asyncio.wait_for(held.wait(), 10)
    assert os.path.exists(second.path_of(ref) + ".lock")
    with pytest.raises(SessionLockTimeout):  # the waiter holds the file now at the path
        async with third.lock(ref):
            pytest.fail("two holders: the waiter kept a lock on an unlinked file")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_locking_off_is_a_no_op(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    ref = new_session_id()
    async with store.lock(ref), store.lock(ref):
        pass
    assert os.listdir(tmp_path) == []


async def test_turn_handed_to_a_waiter_cancelled_at_that_instant_passes_on() -> None:
    turns = _Turns()
    assert await turns.acquire(1)
    second = asyncio.create_task(turns.acquire(5))
    third = asyncio.create_task(turns.acquire(5))
    await asyncio.sleep(0)  # both queued
    turns.release()  # the turn goes to the second...
    second.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await third is True
    assert turns.held
    turns.release()
    assert not turns.held and not turns.waiters


async def test_turn_wait_times_out_and_leaves_no_waiter() -> None:
    turns = _Turns()
    assert await turns.acquire(1)
    assert await turns.acquire(0.05) is False
    assert turns.held and not turns.waiters
    turns.release()
    assert await turns.acquire(0) is True
