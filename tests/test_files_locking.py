"""Leases of the file store: one holder per session across tasks and processes, fencing, cleanup.

A lease is a sidecar file that exists only while held (:mod:`asess._backends.files_lease`).
Lease expiry is decided from the ``now`` each call is given, so takeovers are
tested by passing a later ``now`` rather than by sleeping; the cross-process
tests use the real clock only where the lifecycle's waiting is the point.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from asess import SessionManager
from asess._backends import files_lease
from asess._backends.files import FileStore
from asess._backends.files_format import LOCK_SUFFIX
from asess._clock import ManualClock
from asess._exceptions import SessionLockTimeout
from asess._ids import new_session_id
from asess._serialize import load_record

from .files_lease_procs import (
    COOKIE,
    T0,
    TTL,
    counter_process,
    holder_process,
    increment,
    killed_holder_process,
    payload,
)

REQUESTS = int(os.environ.get("ASESS_LEASE_REQUESTS", "1000"))


def lease_files(directory: Path | str) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(LOCK_SUFFIX)]


async def counter(store: FileStore, sid: str, now: float) -> int:
    raw = await store.read(sid, TTL, now)
    assert raw is not None
    return int(load_record(raw).data["n"])


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path, fsync=False)


# -- one holder ---------------------------------------------------------------------------


async def test_acquire_excludes_a_second_holder_until_release(
    store: FileStore, tmp_path: Path
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    first = await store.acquire(sid, 10, T0)
    assert first is not None and first.sid == sid and first.expires_at == T0 + 10
    other_store = FileStore(tmp_path)  # nothing shared in memory: only the file decides
    assert await store.acquire(sid, 10, T0 + 1) is None
    assert await other_store.acquire(sid, 10, T0 + 9.99) is None
    await store.release(first)
    second = await other_store.acquire(sid, 10, T0 + 2)
    assert second is not None and second.token != first.token
    await other_store.release(second)


async def test_leases_of_different_sessions_do_not_interfere(store: FileStore) -> None:
    a, b = new_session_id(), new_session_id()
    first, second = await store.acquire(a, 10, T0), await store.acquire(b, 10, T0)
    assert first is not None and second is not None
    await store.release(first)
    assert await store.acquire(b, 10, T0) is None
    await store.release(second)


async def test_lease_file_exists_only_while_held(store: FileStore, tmp_path: Path) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    lease = await store.acquire(sid, 10, T0)
    assert lease is not None
    assert lease_files(tmp_path) == [os.path.basename(store.path_of(sid)) + LOCK_SUFFIX]
    assert await store.update(sid, payload(1), TTL, T0 + 1, lease)
    await store.release(lease)
    assert lease_files(tmp_path) == []
    assert os.listdir(tmp_path) == [os.path.basename(store.path_of(sid))]  # the session stays
    await store.release(lease)  # twice: nothing left to do, no error


# -- expiry and takeover --------------------------------------------------------------------


async def test_an_expired_lease_is_taken_over(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    stale = await store.acquire(sid, 10, T0)
    assert stale is not None
    assert await store.acquire(sid, 10, T0 + 9.999) is None
    fresh = await store.acquire(sid, 10, T0 + 10)
    assert fresh is not None and fresh.token != stale.token
    assert await store.acquire(sid, 10, T0 + 19) is None  # the new holder's full term


async def test_release_never_deletes_another_holders_lease(
    store: FileStore, tmp_path: Path
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    stale = await store.acquire(sid, 10, T0)
    fresh = await store.acquire(sid, 10, T0 + 10)
    assert stale is not None and fresh is not None
    await store.release(stale)  # the stalled request finally ends
    assert len(lease_files(tmp_path)) == 1
    assert await store.acquire(sid, 10, T0 + 11) is None  # still the new holder's
    assert await store.update(sid, payload(1), TTL, T0 + 11, fresh)
    await store.release(fresh)
    assert lease_files(tmp_path) == []


async def test_a_fenced_update_with_an_expired_lease_writes_nothing(
    store: FileStore, tmp_path: Path
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    path = Path(store.path_of(sid))
    lease = await store.acquire(sid, 10, T0)
    assert lease is not None
    assert await store.update(sid, payload(1), TTL, T0 + 9, lease)
    content = path.read_bytes()
    # Expired, nobody took over: still refused, since another could at any moment.
    assert await store.update(sid, payload(2), TTL, T0 + 10, lease) is False
    assert path.read_bytes() == content
    assert os.stat(path).st_mtime == pytest.approx(T0 + 9, abs=1e-3)
    # Taken over: refused, and the new holder's write stands.
    fresh = await store.acquire(sid, 10, T0 + 11)
    assert fresh is not None
    assert await store.update(sid, payload(3), TTL, T0 + 12, fresh)
    assert await store.update(sid, payload(4), TTL, T0 + 12, lease) is False
    assert await counter(store, sid, T0 + 13) == 3
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, path.name + LOCK_SUFFIX])


async def test_a_fenced_update_needs_the_lease_it_names(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    lease = await store.acquire(sid, 10, T0)
    assert lease is not None
    forged = type(lease)(sid, "0" * 32, T0 + 10)
    assert await store.update(sid, payload(1), TTL, T0 + 1, forged) is False
    await store.release(lease)
    assert await store.update(sid, payload(2), TTL, T0 + 1, lease) is False  # released
    assert await counter(store, sid, T0 + 2) == 0
    assert await store.update(sid, payload(3), TTL, T0 + 2)  # unfenced: existence only


async def test_update_after_delete_writes_nothing_even_under_a_live_lease(
    store: FileStore, tmp_path: Path
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    lease = await store.acquire(sid, 10, T0)
    assert lease is not None
    await store.delete(sid)  # a logout from a request that did not lease (locking off there)
    assert await store.update(sid, payload(1), TTL, T0 + 1, lease) is False
    assert not os.path.exists(store.path_of(sid))
    await store.release(lease)
    assert os.listdir(tmp_path) == []


async def test_gc_removes_the_lease_of_a_dead_holder_only_once_expired(
    store: FileStore, tmp_path: Path
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    lease = await store.acquire(sid, 30, T0)
    assert lease is not None
    assert (await store.gc(T0 + 29)).locks == 0
    assert (await store.gc(T0 + 30)).locks == 1
    assert lease_files(tmp_path) == []
    assert await store.update(sid, payload(1), TTL, T0 + 31, lease) is False
    assert await store.acquire(sid, 30, T0 + 31) is not None


async def test_an_empty_lease_file_left_by_a_crash_blocks_nobody(
    store: FileStore, tmp_path: Path
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    Path(store.path_of(sid) + LOCK_SUFFIX).write_bytes(b"")  # killed between create and write
    lease = await store.acquire(sid, 10, T0)
    assert lease is not None
    assert await store.update(sid, payload(1), TTL, T0, lease)


# -- cancellation ---------------------------------------------------------------------------


async def test_a_cancelled_acquire_leaves_no_lease_behind(
    store: FileStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    inside, go_on = threading.Event(), threading.Event()
    real = files_lease.try_acquire

    def slow_acquire(*args: Any) -> bool:
        inside.set()
        assert go_on.wait(10)
        return real(*args)

    monkeypatch.setattr(files_lease, "try_acquire", slow_acquire)
    fds_before = len(os.listdir("/proc/self/fd"))
    task = asyncio.create_task(store.acquire(sid, 3600, T0))
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, inside.wait, 10)
    task.cancel()  # the thread is inside: it will take the lease after the caller is gone
    await asyncio.sleep(0.01)
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lease_files(tmp_path) == []
    monkeypatch.undo()
    again = await store.acquire(sid, 10, T0 + 1)  # the hour-long lease was given back
    assert again is not None
    await store.release(again)
    assert len(os.listdir("/proc/self/fd")) == fds_before


async def test_a_cancelled_request_leaves_no_lease_whether_waiting_or_holding(
    tmp_path: Path,
) -> None:
    manager = SessionManager.files(path=tmp_path, locking=True, lock_timeout=30, fsync=False)
    store = manager.store
    assert isinstance(store, FileStore)
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, time.time())
    header = f"{COOKIE}={sid}"
    held = asyncio.Event()

    async def holder() -> None:
        async with manager.lifecycle(header) as session:
            session["n"] += 1
            held.set()
            await asyncio.sleep(3600)

    async def waiter() -> None:
        async with manager.lifecycle(header):
            pytest.fail("two holders of one session")

    holding = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.05)  # backing off on the held lease
    assert len(lease_files(tmp_path)) == 1
    waiting.cancel()
    holding.cancel()
    for task in (waiting, holding):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert lease_files(tmp_path) == []


# -- through the lifecycle --------------------------------------------------------------------


async def test_200_increments_over_two_processes_end_at_200(tmp_path: Path) -> None:
    directory = str(tmp_path)
    store = FileStore(directory)
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, time.time())
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)  # both processes begin together
    procs = [ctx.Process(target=counter_process, args=(directory, sid, 100, start)) for _ in "ab"]
    for proc in procs:
        proc.start()
    for proc in procs:
        await asyncio.get_running_loop().run_in_executor(None, proc.join)
        assert proc.exitcode == 0
    assert await counter(store, sid, time.time()) == 200
    assert lease_files(directory) == []


async def test_tasks_of_one_process_take_turns(tmp_path: Path) -> None:
    manager = SessionManager.files(path=tmp_path, locking=True, fsync=False)
    store = manager.store
    assert isinstance(store, FileStore)
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, time.time())
    marker = str(tmp_path / "inside")
    await asyncio.gather(*(increment(manager, f"{COOKIE}={sid}", marker) for _ in range(50)))
    assert await counter(store, sid, time.time()) == 50
    assert lease_files(tmp_path) == []


async def test_a_live_session_keeps_its_file_and_loses_its_lease_at_release(
    tmp_path: Path,
) -> None:
    clock = ManualClock(T0)
    manager = SessionManager.files(path=tmp_path, locking=True, fsync=False, clock=clock)
    async with manager.lifecycle(None) as session:
        session["n"] = 1
    sid = session.id
    assert sid is not None
    for change in (True, False):
        async with manager.lifecycle(f"{COOKIE}={sid}") as session:
            assert len(lease_files(tmp_path)) == 1  # held while the request runs
            if change:
                session["n"] += 1
        assert lease_files(tmp_path) == []
        clock.advance(1)
    assert os.listdir(tmp_path) == [f"emt_{sid}.sess"]


async def test_a_waiter_times_out_on_a_longer_lease_and_leaves_it_alone(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    manager = SessionManager.files(
        path=tmp_path, locking=True, lock_timeout=2, fsync=False, clock=clock
    )
    store = manager.store
    assert isinstance(store, FileStore)
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    other = await store.acquire(sid, 60, T0)  # e.g. a process with a longer lock_timeout
    assert other is not None
    with pytest.raises(SessionLockTimeout, match="lock_timeout"):
        async with manager.lifecycle(f"{COOKIE}={sid}"):
            pytest.fail("two holders of one session")
    assert clock.now() == pytest.approx(T0 + 2)  # waited on the manual clock, not in real time
    assert await store.update(sid, payload(1), TTL, clock.now(), other)  # untouched
    await store.release(other)
    assert lease_files(tmp_path) == []


async def test_a_waiter_takes_over_a_lease_of_the_same_term(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    manager = SessionManager.files(
        path=tmp_path, locking=True, lock_timeout=5, fsync=False, clock=clock
    )
    store = manager.store
    assert isinstance(store, FileStore)
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    stalled = await store.acquire(sid, 5, T0)  # a request stuck for good
    assert stalled is not None
    async with manager.lifecycle(f"{COOKIE}={sid}") as session:
        session["n"] += 1
    assert clock.now() >= T0 + 5
    assert await counter(store, sid, clock.now()) == 1
    # The stalled request wakes up: its write and its release change nothing.
    assert await store.update(sid, payload(99), TTL, clock.now(), stalled) is False
    await store.release(stalled)
    assert await counter(store, sid, clock.now()) == 1
    assert lease_files(tmp_path) == []


async def test_many_requests_with_random_ids_leave_no_lease_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unknown ids (most of them) get no lease at all; live sessions get one per
    # request, given back whether the request reads, writes, logs out or fails.
    manager = SessionManager.files(path=tmp_path, locking=True, lock_timeout=30, fsync=False)
    taken = 0
    real_acquire = files_lease.try_acquire

    def counting_acquire(*args: Any) -> bool:
        nonlocal taken
        got = real_acquire(*args)
        taken += got
        return got

    monkeypatch.setattr(files_lease, "try_acquire", counting_acquire)
    rng = random.Random(7)
    live: list[str] = []
    for _ in range(20):
        async with manager.lifecycle(None) as session:
            session["n"] = 0
        assert session.id is not None
        live.append(session.id)

    async def request(i: int) -> None:
        sid = rng.choice(live) if live and rng.random() < 0.3 else new_session_id()
        action = rng.choice(["read", "write", "write", "fail", "logout"])
        try:
            async with manager.lifecycle(f"{COOKIE}={sid}") as session:
                if action == "read":
                    session.get("n")
                elif action == "write":
                    session["n"] = (session.get("n") or 0) + 1
                elif action == "fail":
                    raise LookupError(i)
                else:
                    session.clear()
        except LookupError:
            pass
        if session.id is not None and session.id not in live:
            live.append(session.id)  # a new session: later requests may lease it

    for start in range(0, REQUESTS, 50):  # 50 at a time: requests of one session contend
        await asyncio.gather(*(request(i) for i in range(start, min(start + 50, REQUESTS))))
    assert lease_files(tmp_path) == []
    assert taken > REQUESTS // 10  # leases were taken, not avoided


async def test_locking_off_takes_no_lease(tmp_path: Path) -> None:
    manager = SessionManager.files(path=tmp_path, fsync=False)
    async with manager.lifecycle(None) as session:
        session["n"] = 1
    for _ in range(3):
        async with manager.lifecycle(f"{COOKIE}={session.id}") as session:
            session["n"] += 1
    assert lease_files(tmp_path) == []


# -- across processes -------------------------------------------------------------------------


async def test_an_expired_lease_of_another_process_is_taken_over(tmp_path: Path) -> None:
    store = FileStore(tmp_path, fsync=False)
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, T0)
    ctx = multiprocessing.get_context("spawn")
    ready, verdict = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=holder_process, args=(str(tmp_path), sid, T0, ready, verdict))
    holder.start()
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, ready.wait, 60)
        assert await store.acquire(sid, 10, T0 + 9) is None  # the other process holds it
        taken = await store.acquire(sid, 10, T0 + 10)
        assert taken is not None
        assert await store.update(sid, payload(1), TTL, T0 + 11, taken)
        verdict.set()  # the first holder now writes and releases with its expired lease
        await loop.run_in_executor(None, holder.join, 60)
        assert holder.exitcode == 10  # its write was refused
        assert await counter(store, sid, T0 + 12) == 1
        assert await store.acquire(sid, 10, T0 + 12) is None  # and its release left ours
        await store.release(taken)
        assert lease_files(tmp_path) == []
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join()


async def test_the_lease_of_a_killed_process_blocks_until_it_expires(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    sid = new_session_id()
    await store.create(sid, payload(0), TTL, time.time())
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=killed_holder_process, args=(str(tmp_path), sid, ready))
    holder.start()
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, ready.wait, 60)
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        await loop.run_in_executor(None, holder.join)
        now = time.time()
        assert await store.acquire(sid, 10, now) is None  # dead, but its lease runs on
        assert (await store.gc(now)).locks == 0
        assert (await store.gc(now + 30)).locks == 1  # expired: its holder is gone
        assert lease_files(tmp_path) == []
        assert await store.acquire(sid, 10, now + 30) is not None
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join()


def test_an_acquirer_blocked_on_a_lease_file_that_is_unlinked_retries_on_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A release or gc unlinks the sidecar while another acquirer waits for its
    # flock: that acquirer must not take a lease on the unlinked file.
    name = f"emt_{new_session_id()}.sess"
    path = files_lease.lease_path(str(tmp_path), name)
    waiting = threading.Event()
    real_flock = files_lease.fcntl.flock

    class Fcntl:
        LOCK_EX = files_lease.fcntl.LOCK_EX

        @staticmethod
        def flock(fd: int, op: int) -> None:
            if threading.current_thread().name == "acquirer":
                waiting.set()
            real_flock(fd, op)

    monkeypatch.setattr(files_lease, "fcntl", Fcntl)
    result: list[bool] = []
    with files_lease.locked_sidecar(path, create=True) as fd:
        assert fd is not None
        acquirer = threading.Thread(
            target=lambda: result.append(
                files_lease.try_acquire(str(tmp_path), name, "b" * 32, T0 + 10, T0)
            ),
            name="acquirer",
        )
        acquirer.start()
        assert waiting.wait(10)
        time.sleep(0.05)  # into the blocking flock call
        os.unlink(path)  # what release does, under the flock
    acquirer.join(10)
    assert result == [True]
    assert Path(path).read_text().startswith("b" * 32)
    assert files_lease.try_acquire(str(tmp_path), name, "c" * 32, T0 + 10, T0) is False
