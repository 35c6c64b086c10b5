"""Sessions as files in one directory: atomic writes, mtime expiry, optional locking.

Each session is one file named by ``filename_template`` holding a header line
and the payload (:mod:`.files_format`). A save writes a 0600 temporary file
and renames it over the old one, so a reader or a crash sees the old file or
the new one, never a torn one; a save of an existing session swaps the files
atomically only if the session file still exists (:mod:`.files_atomic`), so a
logout is never undone. A read sets the file's mtime, which is what slides
expiry, so an unchanged session is never rewritten. Every call does its
blocking work in one function (:mod:`.files_ops`), in a worker thread: one
hop per store call. With ``inline_io=True`` (and no fsync), reads and saves
run it on the loop instead while such calls stay well under a millisecond
(they cost less than the thread hop), and move back to threads when they
slow down; leases, deletes and gc always use threads. Leases are sidecar
files that exist only while held (:mod:`.files_lease`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

import aiofiles.os

from .._exceptions import ConfigurationError, SessionBackendError
from .._gc import sweep
from . import files_lease, files_ops
from .base import GcResult, Lease, RecordTimes, ServerStore
from .files_format import Layout, encode_header

log = logging.getLogger("asess.files")
_T = TypeVar("_T")
#: The longest inline file calls may take on average before the store moves to threads...
INLINE_LIMIT = 0.001
#: ...for this many seconds.
INLINE_PAUSE = 5.0


class FileStore(ServerStore):
    """Server-side sessions stored as files in ``path``.

    Args:
        path: the directory, relative to the working directory at construction
            unless absolute. It is created (with missing parents, mode 0700) by
            the first write, off the event loop; an existing one is left as is.
        filename_template: file name of a session, with one ``%s`` for its id.
        fsync: flush each write (and the rename) to disk before the save
            returns. Off by default, as in Emmett, Django and PHP: a save is
            still atomic (a reader or a crashed process sees the old file or
            the new one, never a torn one), but a power loss or kernel crash
            may lose the last seconds of writes. On, a save waits for the
            disk (milliseconds) and runs in a worker thread.
        gc_probability: chance, per save, to start a background :meth:`gc`.
        inline_io: without fsync, run reads and saves on the event loop while
            they stay well under a millisecond (they then cost less than the
            thread hop), moving to worker threads when they slow down. Off by
            default: every file operation runs in a worker thread and the
            loop never waits on the filesystem.

    Raises:
        ConfigurationError: a parameter cannot work; the message says which.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "sessions",
        *,
        filename_template: str = "emt_%s.sess",
        fsync: bool = False,
        gc_probability: float = 0.0,
        inline_io: bool = False,
    ) -> None:
        self._layout = Layout(filename_template)
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(f"path={path!r}: pass a directory as a str or Path")
        if isinstance(gc_probability, bool) or not isinstance(gc_probability, (int, float)):
            raise ConfigurationError(f"gc_probability={gc_probability!r}: pass a number in [0, 1]")
        if not 0.0 <= gc_probability <= 1.0:
            raise ConfigurationError(f"gc_probability={gc_probability!r} must be within [0, 1]")
        if not isinstance(fsync, bool):
            raise ConfigurationError(f"fsync={fsync!r}: pass True or False")
        if not isinstance(inline_io, bool):
            raise ConfigurationError(f"inline_io={inline_io!r}: pass True or False")
        self._inline = inline_io and not fsync
        self.directory = os.path.abspath(os.fspath(path))
        self._fsync = fsync
        self._threads_until = 0.0  # monotonic time before which calls go to threads
        self._inline_avg = 0.0  # seconds an inline call takes, moving average
        self._gc_probability = gc_probability
        self._gc_task: asyncio.Task[GcResult] | None = None

    def __repr__(self) -> str:
        return f"FileStore({self.directory!r}, filename_template={self._layout.template!r})"

    def path_of(self, sid: str) -> str:
        """The file that holds session ``sid``. Raises ValueError for anything but a session id."""
        return os.path.join(self.directory, self._layout.session_name(sid))

    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        """Run a read or a save inline while such calls stay short, else in a thread.

        Without fsync a read or a save is a handful of system calls on the
        page cache (10 and 90 us here) while a thread hop costs 90 us of
        wake-ups and, under load, a GIL hand-off per call; so they run on the
        loop while they take under ``INLINE_LIMIT`` on average (a moving
        average over about 16 calls: one call the kernel preempted, or the
        first write that made the directory, does not count for much). When
        the average passes it (a slow or network filesystem, a stalled disk),
        this store's calls go to worker threads for ``INLINE_PAUSE`` seconds,
        then it tries again. With fsync every save waits on the disk, and
        always runs in a thread.
        """
        if not self._inline or time.monotonic() < self._threads_until:
            return await _offload(func, *args)
        start = time.perf_counter()
        try:
            return func(*args)
        finally:
            took = time.perf_counter() - start
            self._inline_avg += (took - self._inline_avg) / 16
            if self._inline_avg > INLINE_LIMIT:
                self._threads_until = time.monotonic() + INLINE_PAUSE
                self._inline_avg = 0.0
                log.debug(
                    "session file calls took %.1f ms on the event loop: %s uses worker "
                    "threads for the next %g s",
                    took * 1e3,
                    self,
                    INLINE_PAUSE,
                )

    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        name = self._layout.session_name(sid)
        return await self._run(files_ops.read_live, self.directory, name, now)

    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        name = self._layout.session_name(sid)
        data = encode_header(None, ttl) + payload
        await self._run(files_ops.write_new, self.directory, name, data, now, self._fsync)
        self._maybe_gc(now)

    async def update(
        self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
    ) -> bool:
        name = self._layout.session_name(sid)
        data = encode_header(None, ttl) + payload
        if lease is None:
            done = await self._run(
                files_ops.replace_existing, self.directory, name, data, now, self._fsync
            )
        else:
            done = await _offload(
                files_lease.replace_fenced,
                self.directory,
                name,
                data,
                now,
                self._fsync,
                lease.token,
            )
        self._maybe_gc(now)
        return done

    async def delete(self, sid: str) -> bool:
        return await _offload(files_ops.remove, self.directory, self._layout.session_name(sid))

    async def peek(self, sid: str, now: float) -> RecordTimes | None:
        name = self._layout.session_name(sid)
        found = await _offload(files_ops.expiry_of, self.directory, name, now)
        return None if found is None else RecordTimes(*found)

    async def acquire(self, sid: str, seconds: float, now: float) -> Lease | None:
        name = self._layout.session_name(sid)
        lease = Lease(sid, secrets.token_hex(16), now + seconds)
        taking = asyncio.ensure_future(
            _offload(
                files_lease.try_acquire, self.directory, name, lease.token, lease.expires_at, now
            )
        )
        try:
            taken = await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The thread runs to its end whatever happens to this caller, and a
            # lease it took would have no owner to release it: give it back first.
            await asyncio.shield(_give_back(taking, self.directory, name, lease.token))
            raise
        return lease if taken else None

    async def release(self, lease: Lease) -> None:
        name = self._layout.session_name(lease.sid)
        await _shielded(files_lease.release, self.directory, name, lease.token)

    async def clear(self) -> int:
        return await _offload(files_ops.remove_all, self.directory, self._layout)

    async def gc(self, now: float) -> GcResult:
        """Remove expired sessions, orphan temporary files and stale lease files."""
        return await _offload(sweep, self.directory, self._layout, None, now)

    def _maybe_gc(self, now: float) -> None:
        # One collection at a time, in the background: the save that drew the
        # lot does not wait for it.
        if not self._gc_probability or random.random() >= self._gc_probability:
            return
        if self._gc_task is None or self._gc_task.done():
            self._gc_task = asyncio.get_running_loop().create_task(self.gc(now))
            self._gc_task.add_done_callback(_log_gc_failure)

    async def aclose(self) -> None:
        task, self._gc_task = self._gc_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _offload(func: Callable[..., _T], *args: object) -> _T:
    # aiofiles' executor bridge, one hop per store call: measured 2-4x faster
    # than one aiofiles call per file operation (see the files store commit).
    return await aiofiles.os.wrap(func)(*args)


async def _shielded(func: Callable[..., _T], *args: object) -> _T:
    """Run a lease operation to its end even if the caller is cancelled.

    A lease taken in a thread whose caller was cancelled would otherwise stay
    on disk, unreleased, until it expires.
    """
    return await asyncio.shield(_offload(func, *args))


async def _give_back(taking: asyncio.Future[bool], directory: str, name: str, token: str) -> None:
    """Release the lease ``taking`` took for a caller that was cancelled meanwhile."""
    try:
        if not await taking:
            return
        await _offload(files_lease.release, directory, name, token)
    except SessionBackendError as exc:
        log.warning("a cancelled lease request left a lease; it expires on its own: %s", exc)


def _log_gc_failure(task: asyncio.Task[GcResult]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("background session gc failed: %s", exc)
