"""The file store's blocking work, one function per store call, each run whole in one thread hop.

A hop to the executor costs tens of microseconds, more than the system calls
of a small session, so every store call does all its system calls in one of
these functions instead of awaiting each. Failures of the filesystem become
:class:`~asess.SessionBackendError` naming the path and what to change; a
failed save removes its temporary file and leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os

from .._exceptions import SessionBackendError
from .files_atomic import exclusive_guard, replace_if_exists
from .files_format import HEADER_MAX, Layout, split_file

log = logging.getLogger("asess.files")

_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_HINTS = {
    errno.ENOSPC: "free disk space in the session directory",
    errno.EDQUOT: "raise the disk quota of this user",
    errno.EACCES: "make the session directory readable and writable by this process",
    errno.EPERM: "make the session directory readable and writable by this process",
    errno.EROFS: "point path= at a writable filesystem",
    errno.EMFILE: "raise the open-file limit (ulimit -n) or lower concurrency",
    errno.ENFILE: "raise the system open-file limit or lower concurrency",
    errno.ELOOP: "remove the symbolic link: session files must be regular files",
}


def backend_error(action: str, path: str, exc: OSError) -> SessionBackendError:
    """A SessionBackendError saying what failed on which path, and what to change."""
    reason = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or 0, "")
    hint = _HINTS.get(exc.errno or 0)
    tail = f"; {hint}" if hint else ""
    return SessionBackendError(f"could not {action} {path}: {reason} ({code}){tail}")


def make_dir(directory: str) -> None:
    """Create ``directory`` and its missing parents, each with mode 0700."""
    missing = []
    path = directory
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it: fine
            os.mkdir(path, 0o700)


def read_live(directory: str, name: str, now: float) -> bytes | None:
    """The payload of a live session file, sliding its expiry (mtime := now); None when dead.

    A file lives the ttl its header line names after its last write or read.
    An expired file is removed, unless a save replaced it meanwhile.
    """
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, _READ)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise backend_error("read session file", path, exc) from exc
    try:
        st = os.fstat(fd)
        raw = _read_all(fd, st.st_size)
        try:
            header, body = split_file(raw)
        except ValueError as exc:
            log.warning("ignoring unreadable session file %s: %s", path, exc)
            return None
        if st.st_mtime + header.seconds(None) <= now:
            remove_if_same(path, st.st_ino)
            return None
        os.utime(fd, (now, now))  # the touch that slides expiry; no rewrite
    except OSError as exc:
        raise backend_error("read session file", path, exc) from exc
    finally:
        os.close(fd)
    return body


def _read_all(fd: int, size: int) -> bytes:
    # Files are replaced, never written in place, so one read of the fstat size
    # is the whole file; the loop only runs if something else grew it.
    raw = os.read(fd, size + 1)
    if len(raw) <= size:
        return raw
    chunks = [raw]
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def remove_if_same(path: str, inode: int) -> None:
    # A save may have replaced the expired file since we opened it: keep the new one.
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


def write_new(directory: str, name: str, payload: bytes, now: float, fsync: bool) -> None:
    """Write a new session file: a 0600 temp file beside ``name``, renamed into place."""
    path = os.path.join(directory, name)
    temp = _write_temp(directory, name, payload, now, fsync)
    try:
        os.replace(temp, path)
        if fsync:
            fsync_dir(directory)
    except OSError as exc:
        _discard(temp)
        raise backend_error("write session file", path, exc) from exc


def replace_existing(directory: str, name: str, payload: bytes, now: float, fsync: bool) -> bool:
    """Replace the session file ``name`` only if it is still live; False (nothing written) if not.

    A file that expired by ``now`` is refused like a missing one, so a late
    save cannot bring an expired session back. The existence check is atomic
    with the write (:func:`~.files_atomic.replace_if_exists`): a concurrent
    delete (logout) and this write are ordered by the kernel, or by a
    directory guard where it cannot exchange, and a deleted session is never
    written back. Expiry needs no such care: until a delete, only reads and
    writes change a live file, and both make it live longer.
    """
    path = os.path.join(directory, name)
    if not _live(path, now):
        return False
    temp = _write_temp(directory, name, payload, now, fsync)
    try:
        swapped = replace_if_exists(temp, path, directory)
        if swapped and fsync:
            fsync_dir(directory)
    except OSError as exc:
        _discard(temp)
        raise backend_error("write session file", path, exc) from exc
    _discard(temp)  # after an exchange it holds the previous version; else our payload
    return swapped


def _live(path: str, now: float) -> bool:
    """Whether the session file at ``path`` exists, is readable and has not expired by ``now``.

    A file whose header does not parse is what read() calls no session, and
    an update must not revive it.
    """
    return expiry_of(os.path.dirname(path), os.path.basename(path), now) is not None


def _write_temp(directory: str, name: str, payload: bytes, now: float, fsync: bool) -> str:
    path = os.path.join(directory, name)
    temp = os.path.join(directory, Layout.temp_name(name))
    try:
        try:
            fd = os.open(temp, _CREATE, 0o600)
        except FileNotFoundError:  # first write: the directory is made lazily, off the loop
            make_dir(directory)
            fd = os.open(temp, _CREATE, 0o600)
    except OSError as exc:
        raise backend_error("write session file", path, exc) from exc
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
        os.utime(fd, (now, now))  # mtime is the start of the idle time (the lifecycle's clock)
    except OSError as exc:
        os.close(fd)
        _discard(temp)
        raise backend_error("write session file", path, exc) from exc
    os.close(fd)
    return temp


def _discard(temp: str) -> None:
    try:
        os.unlink(temp)
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("could not remove temporary file %s", temp)


def fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(directory: str, name: str) -> bool:
    """Delete a session file; True when there was one (a missing file is not an error)."""
    path = os.path.join(directory, name)
    try:
        with exclusive_guard(directory):
            os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise backend_error("delete session file", path, exc) from exc
    return True


def expiry_of(directory: str, name: str, now: float) -> tuple[float, int] | None:
    """``(expires_at, ttl)`` of a live session file from its mtime and header; no slide."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, _READ)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise backend_error("read session file", path, exc) from exc
    try:
        st = os.fstat(fd)
        head = os.read(fd, HEADER_MAX)
    except OSError as exc:
        raise backend_error("read session file", path, exc) from exc
    finally:
        os.close(fd)
    try:
        seconds = split_file(head)[0].seconds(None)
    except ValueError:
        return None
    expires = st.st_mtime + seconds
    return None if expires <= now else (expires, seconds)


def remove_all(directory: str, layout: Layout) -> int:
    """Delete every session file of ``layout`` in ``directory``, nothing else; return the count."""
    count = 0
    try:
        with os.scandir(directory) as entries:
            names = [e.name for e in entries if layout.is_session(e.name)]
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise backend_error("list session directory", directory, exc) from exc
    with exclusive_guard(directory):  # a clear is a delete of each: ordered like one
        for name in names:
            path = os.path.join(directory, name)
            try:
                os.unlink(path)
                count += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise backend_error("delete session file", path, exc) from exc
    return count
