"""FileStore on a real filesystem: contract, refs, permissions, expiry, gc, template, errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asess._backends import files_ops
from asess._backends.files import FileStore
from asess._backends.files_format import HOST_TAG, TEMP_SUFFIX, Layout, split_file
from asess._exceptions import ConfigurationError, SessionBackendError
from asess._gc import ORPHAN_AGE, GcResult, collect_garbage
from asess._ids import new_session_id
from asess._record import Record
from asess._serialize import load_record

TTL = 3600


def record(data: dict[str, object] | None = None, lifetime: int | None = None) -> Record:
    now = time.time()
    return Record(data if data is not None else {"n": 1}, now - 10, now, lifetime=lifetime)


def age(path: Path | str, seconds: float) -> None:
    """Make ``path`` look untouched for ``seconds``, instead of sleeping."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def store(store_dir: Path) -> FileStore:
    return FileStore(store_dir, fsync=False)


# -- contract -----------------------------------------------------------------------------


async def test_save_then_load_round_trips_data_and_times(store: FileStore) -> None:
    ref = new_session_id()
    saved = record({"user": 7, "when": dt.datetime(2024, 5, 1, 12, 0), "tags": {"a"}})
    assert await store.save(ref, saved, TTL) == ref
    before = time.time()
    loaded = await store.load(ref, TTL)
    after = time.time()
    assert loaded is not None
    assert loaded.data == saved.data
    assert (loaded.created_at, loaded.issued_at, loaded.lifetime) == (
        saved.created_at,
        saved.issued_at,
        None,
    )
    assert loaded.expires_at is not None
    assert before + TTL <= loaded.expires_at <= after + TTL


async def test_save_overwrites(store: FileStore) -> None:
    ref = new_session_id()
    await store.save(ref, record({"n": 1}), TTL)
    await store.save(ref, record({"n": 2}), TTL)
    loaded = await store.load(ref, TTL)
    assert loaded is not None and loaded.data == {"n": 2}


async def test_unknown_id_loads_as_none_and_creates_nothing(
    store: FileStore, store_dir: Path
) -> None:
    assert await store.load(new_session_id(), TTL) is None
    assert not store_dir.exists()


async def test_touch_slides_mtime_and_missing_touch_is_no_op(store: FileStore) -> None:
    ref = new_session_id()
    await store.save(ref, record(), TTL)
    path = store.path_of(ref)
    age(path, 3000)
    before = time.time()
    await store.touch(ref, TTL)
    assert os.stat(path).st_mtime >= before - 1
    await store.touch(new_session_id(), TTL)  # no error, no file
    assert os.listdir(store.directory) == [os.path.basename(path)]


async def test_delete_removes_and_tolerates_missing(store: FileStore) -> None:
    ref = new_session_id()
    await store.save(ref, record(), TTL)
    await store.delete(ref)
    assert not os.path.exists(store.path_of(ref))
    assert await store.load(ref, TTL) is None
    await store.delete(ref)


async def test_clear_counts_sessions_and_leaves_foreign_files(
    store: FileStore, store_dir: Path
) -> None:
    refs = [new_session_id() for _ in range(3)]
    for ref in refs:
        await store.save(ref, record(), TTL)
    foreign = ["notes.txt", "emt_short.sess", f"emt_{refs[0]}.sess.bak", f"x{refs[0]}.sess"]
    for name in foreign:
        (store_dir / name).write_text("keep me")
    (store_dir / f"emt_{refs[0]}.sess.lock").touch()
    assert await store.clear() == 3
    assert sorted(os.listdir(store_dir)) == sorted([*foreign, f"emt_{refs[0]}.sess.lock"])
    assert await store.clear() == 0


async def test_clear_of_missing_directory_is_zero(store: FileStore) -> None:
    assert await store.clear() == 0


# -- expiry ---------------------------------------------------------------------------------


async def test_expired_file_loads_as_none_and_is_removed(store: FileStore) -> None:
    ref = new_session_id()
    await store.save(ref, record(), TTL)
    age(store.path_of(ref), TTL + 5)
    assert await store.load(ref, TTL) is None
    assert not os.path.exists(store.path_of(ref))


async def test_load_slides_expiry_by_touching_mtime(store: FileStore) -> None:
    ref = new_session_id()
    await store.save(ref, record(), TTL)
    path = store.path_of(ref)
    age(path, TTL - 60)
    before = time.time()
    assert await store.load(ref, TTL) is not None
    assert os.stat(path).st_mtime >= before - 1
    age(path, TTL - 60)  # alive again only because the load moved it
    assert await store.load(ref, TTL) is not None


async def test_record_lifetime_overrides_ttl(store: FileStore) -> None:
    ref = new_session_id()
    await store.save(ref, record(lifetime=100), TTL)
    age(store.path_of(ref), 50)
    loaded = await store.load(ref, 10)  # ttl alone would have expired it
    assert loaded is not None and loaded.lifetime == 100
    age(store.path_of(ref), 150)
    assert await store.load(ref, TTL) is None


async def test_unchanged_session_is_never_rewritten(store: FileStore) -> None:
    ref = new_session_id()
    await store.save(ref, record(), TTL)
    path = Path(store.path_of(ref))
    inode, content = path.stat().st_ino, path.read_bytes()
    for _ in range(3):
        assert await store.load(ref, TTL) is not None
        await store.touch(ref, TTL)
    assert (path.stat().st_ino, path.read_bytes()) == (inode, content)


async def test_file_format_is_header_then_orjson_record(store: FileStore) -> None:
    ref = new_session_id()
    await store.save(ref, record({"k": "v"}, lifetime=120), 900)
    raw = Path(store.path_of(ref)).read_bytes()
    assert raw.startswith(b"ASESS1 120 900\n")
    header, body = split_file(raw)
    assert (header.lifetime, header.ttl) == (120, 900)
    assert load_record(body).data == {"k": "v"}
    await store.save(ref, record(), 900)
    assert Path(store.path_of(ref)).read_bytes().startswith(b"ASESS1 - 900\n")


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"ASESS1 - 3600\n{not json", b"ASESS9 - 1\n{}"]
)
async def test_unreadable_file_loads_as_none(store: FileStore, content: bytes) -> None:
    ref = new_session_id()
    await store.save(ref, record(), TTL)
    Path(store.path_of(ref)).write_bytes(content)
    assert await store.load(ref, TTL) is None


# -- refs that are not session ids ----------------------------------------------------------

BAD_REFS = [
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


@pytest.fixture
def fs_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every path-taking os call the store makes, in any thread."""
    calls: list[tuple[str, Any]] = []
    for name in ("open", "stat", "lstat", "utime", "unlink", "replace", "mkdir", "scandir"):
        real = getattr(os, name)

        def spy(
            *args: Any, _real: Callable[..., Any] = real, _name: str = name, **kwargs: Any
        ) -> Any:
            calls.append((_name, args[0] if args else None))
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, spy)
    return calls


@pytest.mark.parametrize("ref", BAD_REFS, ids=range(len(BAD_REFS)))
async def test_malformed_refs_never_reach_the_filesystem(
    tmp_path: Path, ref: str, fs_calls: list[tuple[str, Any]]
) -> None:
    store = FileStore(tmp_path / "sessions", locking=True)
    before = listing(tmp_path)
    fs_calls.clear()
    assert await store.load(ref, TTL) is None
    await store.touch(ref, TTL)
    await store.delete(ref)
    async with store.lock(ref):
        pass
    with pytest.raises(ValueError):
        await store.save(ref, record(), TTL)
    with pytest.raises(ValueError):
        store.path_of(ref)
    assert fs_calls == []
    assert listing(tmp_path) == before


async def test_well_formed_unknown_id_stays_inside_the_directory(
    store: FileStore, fs_calls: list[tuple[str, Any]]
) -> None:
    assert await store.load(new_session_id(), TTL) is None
    assert fs_calls and all(
        os.path.dirname(os.fsdecode(path)) == store.directory for _, path in fs_calls
    )


# -- permissions ------------------------------------------------------------------------------


@pytest.fixture
def umask_zero() -> object:
    old = os.umask(0)
    yield
    os.umask(old)


async def test_directory_0700_and_file_0600_even_with_umask_zero(
    tmp_path: Path, umask_zero: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("the store must create files with their mode, not chmod them")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    store = FileStore(tmp_path / "a" / "b" / "sessions", locking=True)
    ref = new_session_id()
    async with store.lock(ref):
        await store.save(ref, record(), TTL)
    for directory in ("a", "a/b", "a/b/sessions"):
        assert stat.S_IMODE((tmp_path / directory).stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path_of(ref)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path_of(ref) + ".lock").st_mode) == 0o600


async def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o750)
    await FileStore(directory).save(new_session_id(), record(), TTL)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_relative_path_is_resolved_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = FileStore()
    assert store.directory == str(tmp_path / "sessions")
    assert not (tmp_path / "sessions").exists()  # made by the first write, not here


# -- template validation ----------------------------------------------------------------------


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
    ref = new_session_id()
    await store.save(ref, record(), TTL)
    assert os.listdir(tmp_path) == [template.replace("%s", ref)]
    assert await store.load(ref, TTL) is not None
    assert await store.clear() == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lock_timeout": 0}, "lock_timeout"),
        ({"gc_probability": 2}, "gc_probability"),
        ({"default_ttl": 0}, "default_ttl"),
    ],
)
def test_bad_numbers_are_configuration_errors(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        FileStore(**kwargs)  # type: ignore[arg-type]


# -- garbage collection -----------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def temp_file(directory: Path, ref: str, pid: int, host: str = HOST_TAG) -> Path:
    name = Layout.temp_name(f"emt_{ref}.sess", pid)
    if host != HOST_TAG:
        name = name.replace(f".{HOST_TAG}.", f".{host}.")
    path = directory / name
    path.write_bytes(b"ASESS1 - 3600\n{partial")
    return path


async def test_gc_removes_garbage_and_keeps_everything_else(
    store: FileStore, store_dir: Path
) -> None:
    live, expired, gone = new_session_id(), new_session_id(), new_session_id()
    await store.save(live, record(), TTL)
    await store.save(expired, record(), TTL)
    age(store.path_of(expired), TTL + 1)
    orphan = temp_file(store_dir, live, dead_pid())
    in_progress = temp_file(store_dir, live, os.getpid())
    stale_in_progress = temp_file(store_dir, live, os.getpid())
    age(stale_in_progress, ORPHAN_AGE + 1)  # a live pid this old was reused
    other_host = temp_file(store_dir, live, dead_pid(), host="0badf00d")
    old_other_host = temp_file(store_dir, live, dead_pid(), host="0badf00d")
    age(old_other_host, ORPHAN_AGE + 1)
    idle_lock = store_dir / f"emt_{gone}.sess.lock"
    idle_lock.touch()
    live_lock = store_dir / f"emt_{live}.sess.lock"
    live_lock.touch()
    foreign = ["notes.txt", f"emt_{live}.sess.bak", "emt_short.sess", f"{orphan.name}.x"]
    for name in foreign:
        (store_dir / name).write_text("foreign")
        age(store_dir / name, 10 * ORPHAN_AGE)

    result = await store.gc()

    assert result == GcResult(expired=1, orphans=3, locks=1, kept=1)
    assert sorted(os.listdir(store_dir)) == sorted(
        [f"emt_{live}.sess", in_progress.name, other_host.name, live_lock.name, *foreign]
    )


async def test_gc_keeps_a_lock_file_that_is_held(tmp_path: Path) -> None:
    store = FileStore(tmp_path, locking=True)
    ref = new_session_id()
    async with store.lock(ref):
        assert (await store.gc()).locks == 0
        assert os.path.exists(store.path_of(ref) + ".lock")
    assert (await store.gc()).locks == 1
    assert os.listdir(tmp_path) == []


async def test_collect_garbage_uses_the_ttl_each_file_was_saved_with(
    store: FileStore, store_dir: Path
) -> None:
    short, long = new_session_id(), new_session_id()
    await store.save(short, record(), 60)
    await store.save(long, record(), 86400)
    for ref in (short, long):
        age(store.path_of(ref), 3600)
    corrupt = store_dir / f"emt_{new_session_id()}.sess"
    corrupt.write_bytes(b"not ours")
    age(corrupt, 10**6)
    result = await collect_garbage(store_dir)
    assert result == GcResult(expired=1, kept=2)  # the header-less file is kept: ttl unknown
    assert os.path.exists(store.path_of(long)) and not os.path.exists(store.path_of(short))
    assert (await collect_garbage(store_dir, ttl=60)).expired == 2


async def test_gc_of_missing_directory_finds_nothing(store: FileStore) -> None:
    assert await store.gc() == GcResult()


async def test_probabilistic_gc_runs_in_background_after_save(
    store: FileStore, store_dir: Path
) -> None:
    stale = new_session_id()
    await store.save(stale, record(), TTL)
    age(store.path_of(stale), TTL + 1)
    collecting = FileStore(store_dir, gc_probability=1.0, fsync=False)
    await collecting.save(new_session_id(), record(), TTL)
    for _ in range(500):
        if not os.path.exists(store.path_of(stale)):
            break
        await asyncio.sleep(0.01)
    assert not os.path.exists(store.path_of(stale))
    await collecting.aclose()


# -- failures ------------------------------------------------------------------------------


def temp_files(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(TEMP_SUFFIX)]


@pytest.mark.parametrize("call", ["write", "fsync", "replace", "open"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EMFILE, errno.EROFS])
async def test_write_failure_is_a_backend_error_and_keeps_old_data(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int
) -> None:
    store = FileStore(store_dir, fsync=True)
    ref = new_session_id()
    await store.save(ref, record({"n": "old"}), TTL)
    real = getattr(os, call)

    def fail(*args: object, **kwargs: object) -> object:
        if call == "open" and not (args[1] & os.O_CREAT):  # type: ignore[operator]
            return real(*args, **kwargs)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, call, fail)
    with pytest.raises(SessionBackendError) as info:
        await store.save(ref, record({"n": "new"}), TTL)
    monkeypatch.setattr(os, call, real)
    message = str(info.value)
    assert store.path_of(ref) in message and os.strerror(code) in message
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == code
    loaded = await store.load(ref, TTL)
    assert loaded is not None and loaded.data == {"n": "old"}
    assert temp_files(store_dir) == []


async def test_read_failure_is_a_backend_error_not_an_empty_session(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = new_session_id()
    await store.save(ref, record(), TTL)

    def fail(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "open", fail)
    with pytest.raises(SessionBackendError, match="ulimit") as info:
        await store.load(ref, TTL)
    assert store.path_of(ref) in str(info.value)


async def test_directory_that_cannot_exist_is_a_backend_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = FileStore(tmp_path / "file" / "sessions")
    with pytest.raises(SessionBackendError, match="Not a directory") as info:
        await store.save(new_session_id(), record(), TTL)
    assert isinstance(info.value.__cause__, NotADirectoryError)


_UNPRIVILEGED = textwrap.dedent(
    """
    import asyncio, concurrent.futures.thread, os, sys, time
    from asess._backends.files import FileStore
    from asess._exceptions import SessionBackendError
    from asess._record import Record

    async def main(directory, ref):
        store = FileStore(directory)
        for call in (
            store.save(ref, Record({"n": "new"}, time.time(), time.time()), 3600),
            store.load(ref, 3600),
        ):
            try:
                result = await call
            except SessionBackendError as exc:
                print(type(exc.__cause__).__name__, exc)
            else:
                print("ok", result.data if hasattr(result, "data") else result)

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
        ref = new_session_id()
        await store.save(ref, record({"n": "old"}), TTL)
        directory.chmod(0o755 if root else 0o500)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _UNPRIVILEGED,
            str(directory),
            ref,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        out, _ = await proc.communicate()
        saved, loaded_there = out.decode().splitlines()
        assert saved.startswith("PermissionError ") and "Permission denied" in saved
        assert store.path_of(ref) in saved
        if root:  # nobody cannot read root's 0600 file: an error, not an empty session
            assert loaded_there.startswith("PermissionError ") and store.path_of(ref) in saved
        else:
            assert loaded_there == "ok {'n': 'old'}"
        directory.chmod(0o700)
        loaded = await store.load(ref, TTL)
        assert loaded is not None and loaded.data == {"n": "old"}
        assert os.listdir(directory) == [os.path.basename(store.path_of(ref))]
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
