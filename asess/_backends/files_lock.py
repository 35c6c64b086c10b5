"""Exclusive hold of one session across tasks and processes, without blocking the loop.

Two layers: a first-come first-served turn per session queues the tasks of
this process (refcounted, so the table holds only sessions in use), and
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
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._exceptions import SessionLockTimeout
from .files_format import LOCK_SUFFIX
from .files_ops import backend_error, make_dir

_OPEN = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
_FIRST_WAIT = 0.001
_MAX_WAIT = 0.025


class _Turns:
    """A FIFO mutex for the tasks of one loop whose wait can time out.

    ``asyncio.Lock`` has no timeout of its own, and ``wait_for`` around its
    ``acquire`` can lose a lock won at the instant of the timeout before
    Python 3.12. Here a release hands the turn straight to the first waiter's
    future, so a waiter that gives up can always tell whether it was served.
    """

    __slots__ = ("held", "users", "waiters")

    def __init__(self) -> None:
        self.held = False
        self.users = 0  # tasks holding or waiting; the entry goes when it drops to 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, timeout: float) -> bool:
        """Take the turn, waiting at most ``timeout`` seconds; False when it did not come."""
        if not self.held:  # a queue only exists while the turn is held
            self.held = True
            return True
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await asyncio.wait({fut}, timeout=max(timeout, 0))
        except BaseException:
            self._give_up(fut)
            raise
        if fut.done():
            return True
        self._give_up(fut)
        return False

    def release(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the turn passes on; held stays True
                return
        self.held = False

    def _give_up(self, fut: asyncio.Future[None]) -> None:
        if fut.done() and not fut.cancelled():  # served at the last instant: pass it on
            self.release()
        else:
            fut.cancel()
            self.waiters.remove(fut)


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
        self._entries: dict[str, _Turns] = {}

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
        turns = self._entries.get(name)
        if turns is None:
            turns = self._entries[name] = _Turns()
        turns.users += 1
        try:
            if not await turns.acquire(deadline - loop.time()):
                raise self._timed_out(path)
            try:
                fd = await self._acquire_file(path, deadline)
                try:
                    yield
                finally:
                    # Closing drops the flock. A close of a lock file that was
                    # never written to does no I/O, so it runs here, at once.
                    os.close(fd)
            finally:
                turns.release()
        finally:
            turns.users -= 1
            if turns.users == 0:
                del self._entries[name]

    def _timed_out(self, lock_path: str) -> SessionLockTimeout:
        path = lock_path.removesuffix(LOCK_SUFFIX)
        return SessionLockTimeout(
            f"session {path} stayed locked by another request for {self._timeout}s; "
            "raise lock_timeout or shorten the requests that hold this session"
        )

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
