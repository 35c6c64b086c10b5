"""Exclusive hold of one session across tasks and processes, without blocking the loop.

Two layers: an :class:`asyncio.Lock` per session queues the tasks of this
process in order (refcounted, so the table holds only sessions in use), and
``flock`` on a ``<session file>.lock`` sidecar excludes other processes. The
kernel drops a ``flock`` when its descriptor closes, so a lock whose holder
died is free again. Waiting for another process polls with a non-blocking
``flock`` and a growing ``asyncio.sleep``, never a blocked thread that could
outlive its timeout. A sidecar is only ever unlinked by someone holding it,
and a locker checks after locking that its descriptor is still the file at
the path, so garbage collection can remove idle sidecars safely.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from .._exceptions import SessionLockTimeout
from .files_format import LOCK_SUFFIX
from .files_ops import backend_error, make_dir

_OPEN = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
_FIRST_WAIT = 0.001
_MAX_WAIT = 0.025


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def try_flock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` if nobody holds it; never waits."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def is_linked(fd: int, path: str) -> bool:
    """True when ``fd`` is still the file at ``path`` (not unlinked or replaced by gc)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return False


def open_and_try(directory: str, path: str) -> tuple[int, bool]:
    """Open (creating) the sidecar at ``path`` and try to lock it; ``(fd, locked)``."""
    while True:
        try:
            try:
                fd = os.open(path, _OPEN, 0o600)
            except FileNotFoundError:
                make_dir(directory)
                fd = os.open(path, _OPEN, 0o600)
        except OSError as exc:
            raise backend_error("open lock file", path, exc) from exc
        try:
            if not try_flock(fd):
                return fd, False
            if is_linked(fd, path):
                return fd, True
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # gc removed the file we locked: lock the new one


class SessionLocks:
    """Hands out exclusive holds of session files of one directory."""

    def __init__(self, directory: str, timeout: float) -> None:
        self._directory = directory
        self._timeout = timeout
        self._entries: dict[str, _Entry] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold session file ``name`` until the block exits.

        Raises:
            SessionLockTimeout: it stayed held elsewhere for ``timeout`` seconds.
            SessionBackendError: the lock file could not be opened.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        path = os.path.join(self._directory, name + LOCK_SUFFIX)
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry()
        entry.users += 1
        try:
            await self._acquire_local(entry.lock, deadline, path)
            try:
                fd = await self._acquire_file(path, deadline)
                try:
                    yield
                finally:
                    # Closing drops the flock. A close of a lock file that was
                    # never written to does no I/O, so it runs here, at once.
                    os.close(fd)
            finally:
                entry.lock.release()
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[name]

    def _timed_out(self, lock_path: str) -> SessionLockTimeout:
        path = lock_path.removesuffix(LOCK_SUFFIX)
        return SessionLockTimeout(
            f"session {path} stayed locked by another request for {self._timeout}s; "
            "raise lock_timeout or shorten the requests that hold this session"
        )

    async def _acquire_local(self, lock: asyncio.Lock, deadline: float, path: str) -> None:
        if not lock.locked():
            await lock.acquire()  # free: returns without suspending
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(lock.acquire())
        try:
            done, _ = await asyncio.wait({task}, timeout=deadline - loop.time())
        except BaseException:
            _abandon(task, lock)
            raise
        if not done:
            _abandon(task, lock)
            raise self._timed_out(path)

    async def _acquire_file(self, path: str, deadline: float) -> int:
        loop = asyncio.get_running_loop()
        fd, locked = await _shielded_open(loop, self._directory, path)
        try:
            wait = _FIRST_WAIT
            while not locked:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._timed_out(path)
                await asyncio.sleep(min(wait, remaining))
                wait = min(wait * 2, _MAX_WAIT)
                if not try_flock(fd):
                    continue
                if await loop.run_in_executor(None, is_linked, fd, path):
                    locked = True
                else:  # gc removed the sidecar while we waited: start over on the new one
                    stale, fd = fd, -1
                    os.close(stale)
                    fd, locked = await _shielded_open(loop, self._directory, path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return fd


async def _shielded_open(
    loop: asyncio.AbstractEventLoop, directory: str, path: str
) -> tuple[int, bool]:
    """``open_and_try`` in a thread; if the caller is cancelled, the fd is closed, not leaked."""
    fut = loop.run_in_executor(None, open_and_try, directory, path)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        fut.add_done_callback(_close_result)
        raise


def _close_result(fut: asyncio.Future[tuple[int, bool]]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        os.close(fut.result()[0])


def _abandon(task: asyncio.Task[bool], lock: asyncio.Lock) -> None:
    """Give up a pending ``lock.acquire()``; if it wins the race anyway, release it."""
    task.cancel()

    def release_if_won(t: asyncio.Task[bool]) -> None:
        if not t.cancelled() and t.exception() is None:
            lock.release()

    task.add_done_callback(release_if_won)
