"""Ordering a session file's replacement against its deletion, across processes.

A save of an existing session must not write back a file that a logout has
just deleted. Linux gives this for free: ``renameat2(..., RENAME_EXCHANGE)``
swaps the new file with the session file atomically and fails when the
session file is gone, so the kernel orders the two. Filesystems or systems
without it (probed once per directory, and for good once an exchange is
refused) fall back to one flock-ed guard file per directory plus a thread
lock, held only around the existence check and the rename, or the unlink:
microseconds, never across an await. Every process sharing a directory
probes the same filesystem, so they all take the same path.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import threading
from collections.abc import Iterator

GUARD_NAME = ".asess-guard"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


def _load_renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    func = getattr(libc, "renameat2", None)
    if func is not None:
        func.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()
_support: dict[str, bool] = {}
_thread_locks: dict[str, threading.Lock] = {}
_table_lock = threading.Lock()


def exchange(source: str, target: str) -> bool | None:
    """Swap ``source`` and ``target`` atomically.

    Returns True when swapped, False when ``target`` does not exist (nothing
    changed), None when this system or filesystem cannot exchange.
    """
    if _renameat2 is None:
        return None
    rc = _renameat2(
        _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE
    )  # type: ignore[operator]
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.ENOENT:
        if not os.path.lexists(source):
            raise FileNotFoundError(err, os.strerror(err), source)
        return False
    if err in _UNSUPPORTED:
        return None
    raise OSError(err, os.strerror(err), target)


def can_exchange(directory: str) -> bool:
    """Whether ``directory``'s filesystem supports RENAME_EXCHANGE (probed once)."""
    known = _support.get(directory)
    if known is None:
        known = _support[directory] = _probe(directory)
    return known


def _probe(directory: str) -> bool:
    if _renameat2 is None:
        return False
    tag = secrets.token_hex(6)
    a = os.path.join(directory, f".asess-probe-{tag}-a")
    b = os.path.join(directory, f".asess-probe-{tag}-b")
    try:
        for path in (a, b):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        return exchange(a, b) is True
    finally:
        for path in (a, b):
            with contextlib.suppress(OSError):
                os.unlink(path)


def replace_if_exists(source: str, target: str, directory: str) -> bool:
    """Move ``source`` over ``target`` only if ``target`` exists; False, changing nothing, if not.

    After a True return ``source`` holds the previous ``target`` (an exchange)
    or is gone (a rename); the caller removes whatever is left of it.
    """
    if can_exchange(directory):
        swapped = exchange(source, target)
        if swapped is not None:
            return swapped
        # The probe said yes but this call says no: stop trusting exchange
        # here, so this process's deletes take the guard from now on.
        _support[directory] = False
    with _guard(directory):
        if not os.path.lexists(target):
            return False
        os.replace(source, target)
        return True


@contextlib.contextmanager
def exclusive_guard(directory: str) -> Iterator[None]:
    """Held around a delete where replacements cannot exchange; else a no-op."""
    if not os.path.isdir(directory) or can_exchange(directory):
        yield
        return
    with _guard(directory):
        yield


@contextlib.contextmanager
def _guard(directory: str) -> Iterator[None]:
    """The directory's guard: a thread lock, then a flock on its guard file."""
    with _table_lock:
        lock = _thread_locks.setdefault(directory, threading.Lock())
    # flock excludes other processes; the thread lock, other threads of this one
    # (each opens its own descriptor, but ordering them here costs nothing).
    with lock:
        fd = os.open(
            os.path.join(directory, GUARD_NAME),
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
