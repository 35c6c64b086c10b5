"""Leases on session files: who holds a session, until when, checked across processes.

A lease is a sidecar ``<session file>.lock`` holding ``<token> <expires_at>``.
It exists only while a request holds its session: taking a lease creates it,
releasing removes it, and garbage collection removes the ones whose holder
died. Every read-check-write of a sidecar happens under a ``flock`` held for
microseconds (never across an await), which makes "take over an expired
lease" and "write the session only while my lease is live" (fencing) atomic
between the processes sharing the directory. Everything here blocks and runs
in the store's executor hop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from .files_format import LOCK_SUFFIX
from .files_ops import backend_error, make_dir, replace_existing

_OPEN = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW


def lease_path(directory: str, name: str) -> str:
    return os.path.join(directory, name + LOCK_SUFFIX)


def is_linked(fd: int, path: str) -> bool:
    """True when ``fd`` is still the file at ``path`` (not unlinked by a release or gc)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def locked_sidecar(path: str, *, create: bool) -> Iterator[int | None]:
    """The sidecar at ``path``, open and flock-ed; None when it is absent and not created."""
    while True:
        try:
            try:
                fd = os.open(path, _OPEN | (os.O_CREAT if create else 0), 0o600)
            except FileNotFoundError:
                if not create:
                    yield None
                    return
                make_dir(os.path.dirname(path))
                fd = os.open(path, _OPEN | os.O_CREAT, 0o600)
        except OSError as exc:
            raise backend_error("open lease file", path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if is_linked(fd, path):
                yield fd
                return
        finally:
            os.close(fd)  # closing drops the flock
        # Released or collected while we waited for the flock: the next open sees the new state.


def read_lease(fd: int) -> tuple[str, float] | None:
    """``(token, expires_at)`` written in a sidecar, or None when empty or unreadable."""
    raw = os.pread(fd, 128, 0)
    token, _, expires = raw.decode("ascii", "replace").partition(" ")
    try:
        return token, float(expires)
    except ValueError:
        return None


def try_acquire(directory: str, name: str, token: str, expires_at: float, now: float) -> bool:
    """Take the lease of session ``name`` unless a live one is held; never waits for it."""
    path = lease_path(directory, name)
    try:
        with locked_sidecar(path, create=True) as fd:
            assert fd is not None
            held = read_lease(fd)
            if held is not None and held[1] > now:
                return False
            data = f"{token} {expires_at!r}".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return True
    except OSError as exc:
        raise backend_error("take lease", path, exc) from exc


def release(directory: str, name: str, token: str) -> None:
    """Remove the lease of session ``name`` if it is still ``token``'s."""
    path = lease_path(directory, name)
    try:
        with locked_sidecar(path, create=False) as fd:
            if fd is not None and (held := read_lease(fd)) is not None and held[0] == token:
                os.unlink(path)
    except OSError as exc:
        raise backend_error("release lease", path, exc) from exc


def replace_fenced(
    directory: str, name: str, payload: bytes, now: float, fsync: bool, token: str
) -> bool:
    """Replace session ``name`` only while ``token`` holds a live lease on it and it exists."""
    path = lease_path(directory, name)
    try:
        with locked_sidecar(path, create=False) as fd:
            if fd is None:
                return False
            held = read_lease(fd)
            if held is None or held[0] != token or held[1] <= now:
                return False
            return replace_existing(directory, name, payload, now, fsync)
    except OSError as exc:
        raise backend_error("check lease", path, exc) from exc


def remove_stale(path: str, now: float, remove: bool = True) -> bool:
    """Garbage collection: unlink a sidecar whose lease expired or whose session is gone.

    With ``remove=False`` (a dry run) it only says whether it would.

    Both are checked under the sidecar's flock, the session's existence at that
    moment rather than in the collector's directory listing: a session and its
    lease made while the listing ran may show in it as a lease alone, and a
    live lease on an existing session must stay.
    """
    with locked_sidecar(path, create=False) as fd:
        if fd is None:
            return False
        held = read_lease(fd)
        session = path[: -len(LOCK_SUFFIX)]
        if held is not None and held[1] > now and os.path.lexists(session):
            return False
        if remove:
            os.unlink(path)
        return True
