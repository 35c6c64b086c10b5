"""Garbage collection of a session directory: expired sessions, orphan temp files, stale leases.

Expiry is read from each file's header line and mtime, not by decoding the
session. A temporary file is an orphan when the process that was writing it
is gone: its name carries the writer's pid and host, so a crash's leftovers
go at the next collection while writes in progress (live pid) stay. A temp
file from another host, or one whose pid may have been reused, goes once it
is older than any write could take. Lease sidecars go when their lease
has expired (a holder that died) or their session is gone. Files that do not match the
template are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from ._backends.base import GcResult
from ._backends.files_format import HEADER_MAX, HOST_TAG, Layout, pid_alive, split_file
from ._backends.files_lease import remove_stale
from ._backends.files_ops import backend_error, remove_if_same
from ._exceptions import SessionBackendError

log = logging.getLogger("asess.files")

#: No write takes this long: a temp file this old is an orphan whatever its pid says.
ORPHAN_AGE = 3600.0


async def collect_garbage(
    path: str | os.PathLike[str],
    *,
    filename_template: str = "emt_%s.sess",
    ttl: int | None = None,
    dry_run: bool = False,
) -> GcResult:
    """Collect garbage in the session directory ``path``, off the event loop.

    Args:
        path: the store's directory.
        filename_template: the store's template; only files it names are touched.
        ttl: the manager's ``expire`` in seconds. ``None`` uses the ttl each
            file was saved with (what a shell command wants); files whose
            header cannot be read are then kept.
        dry_run: count what would be removed, and remove nothing.

    Raises:
        ConfigurationError: the template is not valid.
        SessionBackendError: the directory cannot be listed.
    """
    layout = Layout(filename_template)
    directory = os.fspath(path)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, sweep, directory, layout, ttl, time.time(), not dry_run)


def sweep(
    directory: str, layout: Layout, ttl: int | None, now: float, remove: bool = True
) -> GcResult:
    """The blocking collection; see :func:`collect_garbage`."""
    try:
        with os.scandir(directory) as it:
            names = [entry.name for entry in it]
    except FileNotFoundError:
        return GcResult()
    except OSError as exc:
        raise backend_error("list session directory", directory, exc) from exc
    expired = orphans = kept = 0
    locks: list[str] = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            if layout.is_session(name):
                if _expired(path, ttl, now, remove):
                    expired += 1
                else:
                    kept += 1
            elif (writer := layout.temp_writer(name)) is not None:
                if _orphan(path, writer[0], writer[1], now, remove):
                    orphans += 1
            elif layout.is_lock(name):
                locks.append(name)
        except FileNotFoundError:  # removed meanwhile by a request or another gc
            continue
        except OSError as exc:
            log.warning("gc skipped %s: %s", path, exc)
    removed_locks = 0
    for name in locks:
        try:
            removed_locks += remove_stale(os.path.join(directory, name), now, remove)
        except (OSError, SessionBackendError) as exc:
            log.warning("gc skipped %s: %s", name, exc)
    return GcResult(expired=expired, orphans=orphans, locks=removed_locks, kept=kept)


def _expired(path: str, ttl: int | None, now: float, remove: bool) -> bool:
    """True when the header and mtime say ``path`` has expired; removed when ``remove``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        head = os.read(fd, HEADER_MAX)
    finally:
        os.close(fd)
    try:
        seconds = split_file(head)[0].seconds(ttl)
    except ValueError:
        if ttl is None:
            return False
        seconds = ttl
    if st.st_mtime + seconds > now:
        return False
    if remove:
        remove_if_same(path, st.st_ino)
    return True


def _orphan(path: str, pid: int, host: str, now: float, remove: bool) -> bool:
    """True when the writer of temp file ``path`` is gone; removed when ``remove``."""
    dead = host == HOST_TAG and not pid_alive(pid)
    if not dead and now - os.stat(path, follow_symlinks=False).st_mtime < ORPHAN_AGE:
        return False
    if not remove:
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:  # its writer renamed it into place after all
        return False
    return True
