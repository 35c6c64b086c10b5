"""FileStore on a real filesystem: bytes, conditional writes, expiry, ids, modes, gc, errors.

Time comes from the ``now`` each call is given (a file's mtime is set from it),
so expiry is tested by passing a later ``now``, never by sleeping.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asess import SessionManager
from asess._backends import files_atomic, files_ops
from asess._backends.base import GcResult
from asess._backends.files import FileStore
from asess._backends.files_format import HOST_TAG, TEMP_SUFFIX, Layout, encode_header, split_file
from asess._clock import ManualClock
from asess._exceptions import ConfigurationError, SessionBackendError
from asess._gc import ORPHAN_AGE, collect_garbage
from asess._ids import new_session_id
from asess._record import Record
from asess._serialize import dump_record, load_record

TTL = 3600
T0 = 1_800_000_000.0  # every test's "now"; later instants are T0 + seconds


def payload(data: dict[str, object] | None = None, now: float = T0) -> bytes:
    return dump_record(Record(data if data is not None else {"n": 1}, now - 10, now))


def set_mtime(path: Path | str, when: float) -> None:
    os.utime(path, (when, when))


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def store(store_dir: Path) -> FileStore:
    return FileStore(store_dir, fsync=False)


async def data_of(store: FileStore, sid: str, now: float = T0) -> dict[str, Any] | None:
    raw = await store.read(sid, TTL, now)
    return None if raw is None else load_record(raw).data


# -- bytes in, bytes out ------------------------------------------------------------------


async def test_create_then_read_returns_the_same_bytes(store: FileStore) -> None:
    sid = new_session_id()
    blob = bytes(range(256)) * 64  # opaque to the store: any bytes, NULs and newlines included
    await store.create(sid, blob, TTL, T0)
    assert await store.read(sid, TTL, T0 + 1) == blob


async def test_update_replaces_an_existing_record(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload({"n": 1}), TTL, T0)
    assert await store.update(sid, payload({"n": 2}), TTL, T0 + 1) is True
    assert await data_of(store, sid, T0 + 2) == {"n": 2}


async def test_update_of_a_record_never_created_writes_nothing(
    store: FileStore, store_dir: Path
) -> None:
    assert await store.update(new_session_id(), payload(), TTL, T0) is False
    assert listing(store_dir.parent) == set()


async def test_update_after_delete_writes_nothing(store: FileStore, store_dir: Path) -> None:
    sid = new_session_id()
    await store.create(sid, payload({"n": 1}), TTL, T0)
    await store.delete(sid)
    assert await store.update(sid, payload({"n": 2}), TTL, T0 + 1) is False
    assert os.listdir(store_dir) == []  # not the session, and no temp file either
    assert await store.read(sid, TTL, T0 + 2) is None


@pytest.fixture
def no_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    """A system without renameat2: every replacement takes the directory guard."""
    monkeypatch.setattr(files_atomic, "_renameat2", None)
    monkeypatch.setattr(files_atomic, "_support", {})


async def test_without_exchange_update_after_delete_still_writes_nothing(
    no_exchange: None, store: FileStore, store_dir: Path
) -> None:
    sid = new_session_id()
    await store.create(sid, payload({"n": 1}), TTL, T0)
    assert await store.update(sid, payload({"n": 2}), TTL, T0 + 1) is True
    assert await data_of(store, sid, T0 + 2) == {"n": 2}
    assert files_atomic.can_exchange(str(store_dir)) is False
    await store.delete(sid)
    assert await store.update(sid, payload({"n": 3}), TTL, T0 + 3) is False
    assert os.listdir(store_dir) == [files_atomic.GUARD_NAME]  # the guard file, nothing else


async def test_exchange_refused_after_a_good_probe_falls_back_to_the_guard(
    store: FileStore, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_atomic, "_support", {})
    sid = new_session_id()
    await store.create(sid, payload({"n": 1}), TTL, T0)
    assert files_atomic.can_exchange(str(store_dir)) is True
    monkeypatch.setattr(files_atomic, "exchange", lambda source, target: None)
    assert await store.update(sid, payload({"n": 2}), TTL, T0 + 1) is True
    assert await data_of(store, sid, T0 + 2) == {"n": 2}
    # Distrusted from now on, so this process's deletes take the guard too.
    assert files_atomic.can_exchange(str(store_dir)) is False
    await store.delete(sid)
    assert await store.update(sid, payload({"n": 3}), TTL, T0 + 3) is False
    assert await store.read(sid, TTL, T0 + 4) is None


async def test_unknown_id_reads_as_none_and_creates_nothing(
    store: FileStore, store_dir: Path
) -> None:
    assert await store.read(new_session_id(), TTL, T0) is None
    assert not store_dir.exists()


async def test_delete_removes_and_tolerates_missing(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    await store.delete(sid)
    assert not os.path.exists(store.path_of(sid))
    assert await store.read(sid, TTL, T0) is None
    await store.delete(sid)
    await store.delete(new_session_id())


async def test_clear_counts_sessions_and_leaves_foreign_files(
    store: FileStore, store_dir: Path
) -> None:
    sids = [new_session_id() for _ in range(3)]
    for sid in sids:
        await store.create(sid, payload(), TTL, T0)
    foreign = ["notes.txt", "emt_short.sess", f"emt_{sids[0]}.sess.bak", f"x{sids[0]}.sess"]
    for name in foreign:
        (store_dir / name).write_text("keep me")
    lease = await store.acquire(sids[0], 10, T0)
    assert lease is not None
    assert await store.clear() == 3
    # A held lease stays: its holder releases it (or gc collects it, the session being gone).
    assert sorted(os.listdir(store_dir)) == sorted([*foreign, f"emt_{sids[0]}.sess.lock"])
    assert await store.clear() == 0
    assert await store.update(sids[0], payload(), TTL, T0 + 1, lease) is False
    await store.release(lease)
    assert sorted(os.listdir(store_dir)) == sorted(foreign)


async def test_clear_of_missing_directory_is_zero(store: FileStore) -> None:
    assert await store.clear() == 0


# -- expiry, from the given now -----------------------------------------------------------


async def test_writes_and_reads_set_mtime_to_now(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    path = store.path_of(sid)
    assert os.stat(path).st_mtime == pytest.approx(T0, abs=1e-3)
    assert await store.read(sid, TTL, T0 + 100) is not None
    assert os.stat(path).st_mtime == pytest.approx(T0 + 100, abs=1e-3)
    assert await store.update(sid, payload(), TTL, T0 + 200)
    assert os.stat(path).st_mtime == pytest.approx(T0 + 200, abs=1e-3)


async def test_expired_file_reads_as_none_and_is_removed(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    assert await store.read(sid, TTL, T0 + TTL - 1) is not None  # alive one second before
    assert await store.read(sid, TTL, T0 + 2 * TTL - 1) is None  # slid once, then idle a ttl
    assert not os.path.exists(store.path_of(sid))


async def test_read_slides_expiry_without_rewriting(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    path = Path(store.path_of(sid))
    inode, content = path.stat().st_ino, path.read_bytes()
    now = T0
    for _ in range(5):  # each read lands just before expiry: alive only because the last slid it
        now += TTL - 1
        assert await store.read(sid, TTL, now) is not None
    assert now > T0 + TTL
    assert (path.stat().st_ino, path.read_bytes()) == (inode, content)


async def test_the_ttl_saved_with_the_record_governs_its_expiry(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), 100, T0)  # e.g. a session with its own lifetime
    # read()'s ttl is only the usual value: the file keeps the 100 it was written with.
    assert await store.read(sid, 10, T0 + 50) is not None
    assert await store.read(sid, 10**6, T0 + 50 + 100) is None
    long = new_session_id()
    await store.create(long, payload(), 100, T0)
    assert await store.update(long, payload(), 10_000, T0 + 50)
    assert await store.read(long, 100, T0 + 50 + 9_999) is not None


async def test_update_of_an_expired_file_writes_nothing(store: FileStore, store_dir: Path) -> None:
    sid = new_session_id()
    await store.create(sid, payload({"n": 1}), TTL, T0)
    path = Path(store.path_of(sid))
    content = path.read_bytes()
    # A late save must not bring an expired session back.
    assert await store.update(sid, payload({"n": 2}), TTL, T0 + TTL) is False
    assert path.read_bytes() == content
    assert os.stat(path).st_mtime == pytest.approx(T0, abs=1e-3)
    assert os.listdir(store_dir) == [path.name]
    assert await store.read(sid, TTL, T0 + TTL) is None


async def test_old_header_lifetime_still_governs(store: FileStore, store_dir: Path) -> None:
    # Files written by 0.1 name the session's own lifetime in the header.
    sid = new_session_id()
    store_dir.mkdir()
    path = Path(store.path_of(sid))
    path.write_bytes(encode_header(100, TTL) + payload())
    set_mtime(path, T0)
    assert await store.read(sid, TTL, T0 + 99) is not None
    assert await store.read(sid, TTL, T0 + 99 + 100) is None


async def test_file_format_is_header_then_payload(store: FileStore) -> None:
    sid = new_session_id()
    body = payload({"k": "v"})
    await store.create(sid, body, 900, T0)
    raw = Path(store.path_of(sid)).read_bytes()
    assert raw == b"ASESS1 - 900\n" + body
    header, rest = split_file(raw)
    assert (header.lifetime, header.ttl, rest) == (None, 900, body)
    assert load_record(rest).data == {"k": "v"}
    assert await store.update(sid, body, 60, T0)
    assert Path(store.path_of(sid)).read_bytes() == b"ASESS1 - 60\n" + body


@pytest.mark.parametrize("content", [b"", b"garbage", b"ASESS9 - 1\n{}", b"ASESS1 x 3600\n{}"])
async def test_unreadable_file_reads_as_none_and_is_not_updated(
    store: FileStore, content: bytes
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    path = Path(store.path_of(sid))
    path.write_bytes(content)
    set_mtime(path, T0)
    assert await store.read(sid, TTL, T0) is None
    assert await store.update(sid, payload(), TTL, T0) is False
    assert path.read_bytes() == content


async def test_undecodable_record_reads_as_a_fresh_session_through_the_lifecycle(
    store_dir: Path,
) -> None:
    manager = SessionManager.files(path=store_dir, fsync=False, clock=ManualClock(T0))
    sid = new_session_id()
    store = manager.store
    assert isinstance(store, FileStore)
    await store.create(sid, b"{not json", TTL, T0)
    async with manager.lifecycle(f"asess_session={sid}") as session:
        assert session.is_new and dict(session) == {}


# -- ids that are not session ids ----------------------------------------------------------

BAD_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "../" + "A" * 40,  # right length, wrong shape
    "A" * 42 + "/",
    "A" * 21 + "\x00" + "A" * 21,
    "A" * 10240,
    "é" * 43,
    "\uff21\uff22" * 21 + "\uff23",  # fullwidth letters: 43 unicode "alphanumerics"
    "",
    ".",
    "..",
]


def _from_asess() -> bool:
    """Whether the os call being made comes from asess (directly or through os.path)."""
    frame = sys._getframe(2)
    for _ in range(3):
        if frame is None:
            return False
        if str(frame.f_globals.get("__name__", "")).startswith("asess"):
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def fs_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every path-taking os call asess makes, in any thread (not the test runner's own)."""
    calls: list[tuple[str, Any]] = []
    for name in ("open", "stat", "lstat", "utime", "unlink", "replace", "mkdir", "scandir"):
        real = getattr(os, name)

        def spy(
            *args: Any, _real: Callable[..., Any] = real, _name: str = name, **kwargs: Any
        ) -> Any:
            if _from_asess():
                calls.append((_name, args[0] if args else None))
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, spy)
    return calls


@pytest.mark.parametrize("sid", BAD_IDS, ids=range(len(BAD_IDS)))
async def test_malformed_ids_never_reach_the_filesystem(
    tmp_path: Path, sid: str, fs_calls: list[tuple[str, Any]]
) -> None:
    store = FileStore(tmp_path / "sessions")
    manager = SessionManager.files(path=tmp_path / "sessions", locking=True)
    before = listing(tmp_path)
    fs_calls.clear()
    # The lifecycle checks ids first: a bad cookie is a fresh session, with no I/O.
    async with manager.lifecycle(f"asess_session={sid}") as session:
        assert session.is_new
    # The store refuses them too, as a last line of defence.
    calls = [
        store.read(sid, TTL, T0),
        store.create(sid, payload(), TTL, T0),
        store.update(sid, payload(), TTL, T0),
        store.delete(sid),
        store.acquire(sid, 10, T0),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="not a session id"):
            await call
    with pytest.raises(ValueError):
        store.path_of(sid)
    assert fs_calls == []
    assert listing(tmp_path) == before


async def test_well_formed_unknown_id_stays_inside_the_directory(
    store: FileStore, fs_calls: list[tuple[str, Any]]
) -> None:
    sid = new_session_id()
    assert await store.read(sid, TTL, T0) is None
    assert await store.update(sid, payload(), TTL, T0) is False
    await store.delete(sid)
    lease = await store.acquire(sid, 10, T0)
    assert lease is not None
    await store.release(lease)
    assert {name for name, _ in fs_calls} >= {"open", "unlink"}
    for name, target in fs_calls:
        if isinstance(target, int):
            continue  # a call on an open descriptor, not a path
        path = os.fsdecode(target)
        if name in ("stat", "mkdir") and store.directory.startswith(path + os.sep):
            continue  # making the directory: probing and creating its parents
        assert store.directory in (path, os.path.dirname(path)), (name, path)


# -- permissions ------------------------------------------------------------------------------


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


async def test_directory_0700_and_files_0600_even_with_umask_zero(
    tmp_path: Path, umask_zero: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("the store must create files with their mode, not chmod them")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    store = FileStore(tmp_path / "a" / "b" / "sessions")
    sid = new_session_id()
    lease = await store.acquire(sid, 10, T0)  # a lease may be the first file written
    assert lease is not None
    await store.create(sid, payload(), TTL, T0)
    assert await store.update(sid, payload(), TTL, T0, lease)
    for directory in ("a", "a/b", "a/b/sessions"):
        assert stat.S_IMODE((tmp_path / directory).stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path_of(sid)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path_of(sid) + ".lock").st_mode) == 0o600


async def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o750)
    await FileStore(directory).create(new_session_id(), payload(), TTL, T0)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_relative_path_is_resolved_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = FileStore()
    assert store.directory == str(tmp_path / "sessions")
    assert not (tmp_path / "sessions").exists()  # made by the first write, not here


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "hint"),
    [
        ("emt.sess", "exactly one '%s'"),
        ("%s_%s", "exactly one '%s'"),
        ("emt_%d_%s", "no '%' besides"),
        ("100%_%s", "no '%' besides"),
        ("dir/%s", "path="),
        ("..\\%s", "path="),
        ("%s\x00", "path="),
        ("%s" + TEMP_SUFFIX, "must not end with"),
        ("x" * 250 + "%s", "shorten it"),
        ("\ud800%s", "ASCII"),
    ],
)
def test_bad_template_is_a_configuration_error(template: str, hint: str) -> None:
    with pytest.raises(ConfigurationError, match="filename_template") as info:
        FileStore(filename_template=template)
    assert hint in str(info.value)


@pytest.mark.parametrize("template", ["%s", "sess-%s.json", "séance_%s", ".%s.lock", "%s.tmp"])
async def test_good_templates_work(tmp_path: Path, template: str) -> None:
    store = FileStore(tmp_path, filename_template=template, fsync=False)
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    assert os.listdir(tmp_path) == [template.replace("%s", sid)]
    assert await store.read(sid, TTL, T0) is not None
    lease = await store.acquire(sid, 10, T0)
    assert lease is not None and await store.update(sid, payload(), TTL, T0, lease)
    await store.release(lease)
    assert await store.clear() == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"gc_probability": 2}, "gc_probability"),
        ({"gc_probability": -0.1}, "gc_probability"),
        ({"gc_probability": True}, "gc_probability"),
        ({"gc_probability": "0.1"}, "gc_probability"),
        ({"fsync": "yes"}, "fsync"),
        ({"path": 7}, "path"),
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        FileStore(**kwargs)


# -- garbage collection -----------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def temp_file(directory: Path, sid: str, pid: int, host: str = HOST_TAG) -> Path:
    name = Layout.temp_name(f"emt_{sid}.sess", pid)
    if host != HOST_TAG:
        name = name.replace(f".{HOST_TAG}.", f".{host}.")
    path = directory / name
    path.write_bytes(b"ASESS1 - 3600\n{partial")
    set_mtime(path, T0)
    return path


async def test_gc_removes_garbage_and_keeps_everything_else(
    store: FileStore, store_dir: Path
) -> None:
    live, expired, gone, dead_holder = (new_session_id() for _ in range(4))
    await store.create(live, payload(), TTL, T0)
    await store.create(dead_holder, payload(), TTL, T0)
    await store.create(expired, payload(), TTL, T0 - TTL - 1)
    now = T0 + 5
    orphan = temp_file(store_dir, live, dead_pid())
    in_progress = temp_file(store_dir, live, os.getpid())
    stale_in_progress = temp_file(store_dir, live, os.getpid())
    set_mtime(stale_in_progress, now - ORPHAN_AGE - 1)  # a live pid this old was reused
    other_host = temp_file(store_dir, live, dead_pid(), host="0badf00d")
    old_other_host = temp_file(store_dir, live, dead_pid(), host="0badf00d")
    set_mtime(old_other_host, now - ORPHAN_AGE - 1)
    held = await store.acquire(live, 60, T0)  # live lease on a live session: stays
    expired_lease = await store.acquire(dead_holder, 1, T0)  # its holder died: goes
    gone_lease = await store.acquire(gone, 60, T0)  # live lease, session gone: goes
    assert held and expired_lease and gone_lease
    empty_lease = store_dir / f"emt_{expired}.sess.lock"  # a holder killed mid-acquire
    empty_lease.touch()
    foreign = ["notes.txt", f"emt_{live}.sess.bak", "emt_short.sess", f"{orphan.name}.x"]
    for name in foreign:
        (store_dir / name).write_text("foreign")
        set_mtime(store_dir / name, now - 10 * ORPHAN_AGE)

    result = await store.gc(now)

    assert result == GcResult(expired=1, orphans=3, locks=3, kept=2)
    assert sorted(os.listdir(store_dir)) == sorted(
        [
            f"emt_{live}.sess",
            f"emt_{live}.sess.lock",
            f"emt_{dead_holder}.sess",
            in_progress.name,
            other_host.name,
            *foreign,
        ]
    )
    assert await store.update(live, payload({"n": 2}), TTL, now, held)  # still the holder's
    assert await store.acquire(live, 60, now) is None


async def test_gc_keeps_a_live_lease_and_collects_it_once_expired(store: FileStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    lease = await store.acquire(sid, 10, T0)
    assert lease is not None
    assert (await store.gc(T0 + 9.9)).locks == 0
    assert os.path.exists(store.path_of(sid) + ".lock")
    assert (await store.gc(T0 + 10)).locks == 1
    assert os.listdir(store.directory) == [os.path.basename(store.path_of(sid))]
    await store.release(lease)  # a late release of a collected lease is harmless


async def test_gc_keeps_a_live_lease_its_listing_saw_without_the_session(
    store: FileStore, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A session and its lease made while gc lists the directory can show in the
    # listing as a lease alone; the lease must stay all the same.
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    lease = await store.acquire(sid, 60, T0)
    assert lease is not None
    real_scandir = os.scandir

    class Listing:
        def __init__(self, path: str) -> None:
            self.inner = real_scandir(path)

        def __enter__(self) -> Iterator[os.DirEntry[str]]:
            entries = list(self.inner.__enter__())
            return iter(e for e in entries if not e.name.endswith(".sess"))

        def __exit__(self, *exc: object) -> None:
            self.inner.__exit__(*exc)

    monkeypatch.setattr(os, "scandir", Listing)
    assert await store.gc(T0 + 1) == GcResult()
    monkeypatch.undo()
    assert await store.update(sid, payload({"n": 2}), TTL, T0 + 1, lease)


async def test_collect_garbage_uses_the_ttl_each_file_was_saved_with(
    store: FileStore, store_dir: Path
) -> None:
    # collect_garbage is the shell command's entry point: it reads the real clock.
    short, long = new_session_id(), new_session_id()
    now = time.time()
    await store.create(short, payload(), 60, now - 3600)
    await store.create(long, payload(), 86400, now - 3600)
    corrupt = store_dir / f"emt_{new_session_id()}.sess"
    corrupt.write_bytes(b"not ours")
    set_mtime(corrupt, now - 10**6)
    result = await collect_garbage(store_dir)
    assert result == GcResult(expired=1, kept=2)  # the header-less file is kept: ttl unknown
    assert os.path.exists(store.path_of(long)) and not os.path.exists(store.path_of(short))
    assert (await collect_garbage(store_dir, ttl=60)).expired == 2


async def test_gc_of_missing_directory_finds_nothing(store: FileStore) -> None:
    assert await store.gc(T0) == GcResult()


async def test_probabilistic_gc_runs_in_background_after_a_write(
    store: FileStore, store_dir: Path
) -> None:
    stale = new_session_id()
    await store.create(stale, payload(), TTL, T0)
    collecting = FileStore(store_dir, gc_probability=1.0, fsync=False)
    await collecting.create(new_session_id(), payload(), TTL, T0 + TTL)
    for _ in range(500):
        if not os.path.exists(store.path_of(stale)):
            break
        await asyncio.sleep(0.01)
    assert not os.path.exists(store.path_of(stale))
    await collecting.aclose()


# -- failures ------------------------------------------------------------------------------


def temp_files(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(TEMP_SUFFIX)]


def failing(call: str, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``call`` fail with ``code``; "rename" is both os.replace and the exchange."""

    def fail(*args: object, **kwargs: object) -> object:
        raise OSError(code, os.strerror(code))

    if call == "rename":
        monkeypatch.setattr(os, "replace", fail)
        monkeypatch.setattr(files_atomic, "exchange", fail)
        return
    real = getattr(os, call)

    def fail_writes(*args: Any, **kwargs: Any) -> object:
        if call == "open" and not args[1] & os.O_CREAT:  # reads still work
            return real(*args, **kwargs)
        return fail()

    monkeypatch.setattr(os, call, fail_writes)


@pytest.mark.parametrize("call", ["write", "fsync", "rename", "open"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EMFILE, errno.EROFS])
async def test_write_failure_is_a_backend_error_and_keeps_old_data(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int
) -> None:
    store = FileStore(store_dir, fsync=True)
    sid, fresh = new_session_id(), new_session_id()
    await store.create(sid, payload({"n": "old"}), TTL, T0)
    failing(call, code, monkeypatch)
    with pytest.raises(SessionBackendError) as update_info:
        await store.update(sid, payload({"n": "new"}), TTL, T0 + 1)
    with pytest.raises(SessionBackendError) as create_info:
        await store.create(fresh, payload({"n": "new"}), TTL, T0 + 1)
    monkeypatch.undo()
    for info, target in ((update_info, sid), (create_info, fresh)):
        message = str(info.value)
        assert store.path_of(target) in message and os.strerror(code) in message
        assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == code
    assert await data_of(store, sid, T0 + 2) == {"n": "old"}
    assert await store.read(fresh, TTL, T0 + 2) is None
    assert temp_files(store_dir) == []


async def test_read_failure_is_a_backend_error_not_an_empty_session(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)

    def fail(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "open", fail)
    with pytest.raises(SessionBackendError, match="ulimit") as info:
        await store.read(sid, TTL, T0)
    assert store.path_of(sid) in str(info.value)
    with pytest.raises(SessionBackendError, match="ulimit"):
        await store.update(sid, payload(), TTL, T0)  # an unreadable file is not "gone"
    with pytest.raises(SessionBackendError, match="lease"):
        await store.acquire(sid, 10, T0)


async def test_directory_that_cannot_exist_is_a_backend_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = FileStore(tmp_path / "file" / "sessions")
    with pytest.raises(SessionBackendError, match="Not a directory") as info:
        await store.create(new_session_id(), payload(), TTL, T0)
    assert isinstance(info.value.__cause__, NotADirectoryError)


_UNPRIVILEGED = textwrap.dedent(
    """
    import asyncio, concurrent.futures.thread, os, sys, time
    from asess._backends.files import FileStore
    from asess._exceptions import SessionBackendError
    from asess._serialize import load_record

    async def main(directory, sid):
        store = FileStore(directory)
        now = time.time()
        for call in (
            lambda: store.update(sid, b"new", 3600, now),
            lambda: store.create(sid[::-1], b"new", 3600, now),
            lambda: store.read(sid, 3600, now),
        ):
            try:
                result = await call()
            except SessionBackendError as exc:
                print(type(exc.__cause__).__name__, exc)
            else:
                print("ok", load_record(result).data if isinstance(result, bytes) else result)

    if os.geteuid() == 0:  # drop to nobody now that python and asess are loaded
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_real_unwritable_directory() -> None:
    # Root ignores mode bits, so under root the child drops to nobody facing a
    # root-owned 0755 directory and 0600 file; otherwise chmod 0500 suffices.
    root = os.geteuid() == 0
    directory = Path(tempfile.mkdtemp(prefix="asess-ro-"))
    try:
        store = FileStore(directory, fsync=False)
        sid = new_session_id()
        now = time.time()
        await store.create(sid, payload({"n": "old"}), TTL, now)
        directory.chmod(0o755 if root else 0o500)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _UNPRIVILEGED,
            str(directory),
            sid,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        out, _ = await proc.communicate()
        updated, created, loaded_there = out.decode().splitlines()
        # Under root nobody cannot even read the 0600 file to see it is live.
        assert updated.startswith("PermissionError ") and "Permission denied" in updated
        assert store.path_of(sid) in updated
        assert created.startswith("PermissionError ") and "Permission denied" in created
        if root:  # nobody cannot read root's 0600 file: an error, not an empty session
            assert loaded_there.startswith("PermissionError ")
            assert store.path_of(sid) in loaded_there
        else:
            assert loaded_there == "ok {'n': 'old'}"
        directory.chmod(0o700)
        assert await data_of(store, sid, now) == {"n": "old"}
        assert os.listdir(directory) == [os.path.basename(store.path_of(sid))]
    finally:
        directory.chmod(0o700)
        for name in os.listdir(directory):
            os.unlink(directory / name)
        directory.rmdir()


def test_backend_error_names_errno_and_hint() -> None:
    exc = files_ops.backend_error("write session file", "/x/y", OSError(errno.ENOSPC, "No space"))
    assert str(exc) == (
        "could not write session file /x/y: No space (ENOSPC); "
        "free disk space in the session directory"
    )


# -- where the work runs: inline while calls are fast, threads when they are not or with fsync ---


def _watch_reads(monkeypatch: pytest.MonkeyPatch, delay: float) -> list[bool]:
    """Make read_live take ``delay`` seconds and record whether each ran on the loop's thread."""
    import threading

    from asess._backends import files_ops

    real = files_ops.read_live
    on_loop: list[bool] = []
    loop_thread = threading.get_ident()

    def read_live(*args: Any) -> bytes | None:
        on_loop.append(threading.get_ident() == loop_thread)
        if delay:
            time.sleep(delay)
        return real(*args)

    monkeypatch.setattr(files_ops, "read_live", read_live)
    return on_loop


async def test_by_default_every_file_call_runs_in_a_thread(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    on_loop = _watch_reads(monkeypatch, 0.0)
    for _ in range(3):
        assert await store.read(sid, TTL, T0) is not None
    assert on_loop == [False] * 3  # the loop never waits on the filesystem


async def test_inline_io_runs_fast_calls_inline_and_slow_ones_move_to_threads(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asess._backends import files

    store = FileStore(store_dir, inline_io=True)
    sid = new_session_id()
    await store.create(sid, payload(), TTL, T0)
    on_loop = _watch_reads(monkeypatch, 0.0)
    for _ in range(5):
        assert await store.read(sid, TTL, T0) is not None
    assert on_loop == [True] * 5  # a page-cache read costs less than a thread hop

    on_loop = _watch_reads(monkeypatch, 0.004)  # a slow disk: 4 ms a call
    for _ in range(12):
        await store.read(sid, TTL, T0)
    assert on_loop[0] and not on_loop[-1]  # a single slow call does not decide...
    assert on_loop.index(False) > 1  # ...a run of them does
    monkeypatch.setattr(files, "INLINE_PAUSE", 0.0)  # the pause is over: inline again
    store._threads_until = 0.0
    on_loop = _watch_reads(monkeypatch, 0.0)
    await store.read(sid, TTL, T0)
    assert on_loop == [True]


async def test_with_fsync_every_call_runs_in_a_thread(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable = FileStore(store_dir, fsync=True, inline_io=True)
    sid = new_session_id()
    await durable.create(sid, payload(), TTL, T0)
    on_loop = _watch_reads(monkeypatch, 0.0)
    await durable.read(sid, TTL, T0)
    assert on_loop == [False]
