"""Disk faults at the app level: a full disk and an unwritable directory under the demo app.

Each fault gives a clear error (a 5xx from the server naming the cause in its
log, or :class:`~asess.SessionBackendError` from the app in process), never a
fresh session written over the old one: the session file keeps its last good
value, and the app recovers without a restart once the disk is fixed.

The real faults need a small tmpfs (``mount``, as root); where that is not
allowed they are skipped and the injected ones still run.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from asess import SessionBackendError, SessionManager
from asess._backends import files_ops
from asess._backends.files_format import LOCK_SUFFIX, TEMP_SUFFIX, split_file
from asess._serialize import load_record
from asess.demo import DemoApp, build_app, describe

from .load import COOKIE_NAME, Clients, Figures, Visitor, uvicorn_demo, visit
from .servers import Server

pytestmark = pytest.mark.timeout(60)


def stored_counters(directory: Path) -> dict[str, Any]:
    """Session id -> counter, read straight from the files (every one must parse)."""
    found = {}
    for path in directory.glob("emt_*.sess"):
        _, body = split_file(path.read_bytes())
        found[path.name[4:-5]] = load_record(body).data.get("counter")
    return found


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def lease_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(LOCK_SUFFIX)]


async def leases_released(directory: Path) -> None:
    """Wait (at most 5 s) until every lease is given back: releases follow the response."""
    for _ in range(500):
        if not lease_files(directory):
            return
        await asyncio.sleep(0.01)


def _mount(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["mount", *args], capture_output=True, check=False, timeout=30)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 kB tmpfs of our own, or a skip where mounting is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = _mount("-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mnt))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace')}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False, timeout=30)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it (delete it to free the space)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


async def _counter(client: Clients, visitor: Visitor) -> tuple[httpx.Response | None, Figures]:
    figures = Figures("disk")
    response = await visit(client, visitor, figures)
    return response, figures


async def _three_visits(server: Server) -> tuple[Clients, Visitor]:
    client = Clients(server.url, 1)
    visitor = Visitor()
    for expected in (1, 2, 3):
        response, _ = await _counter(client, visitor)
        assert response is not None and response.status_code == 200
        assert visitor.last == expected
    return client, visitor


@pytest.mark.parametrize("locking", [False, True], ids=["unlocked", "locking"])
async def test_full_disk_answers_5xx_and_keeps_the_old_session(
    tmpfs: Path, tmp_path: Path, locking: bool
):
    sessions = tmpfs / "sessions"
    env = {"ASESS_DEMO_PATH": str(sessions), "ASESS_DEMO_LOCKING": "1" if locking else "0"}
    with uvicorn_demo(tmp_path, workers=1, **env) as srv:
        client, visitor = await _three_visits(srv)
        async with client:
            # A lease is released after its response is sent: wait for the last
            # one, or its freed page would hand the next write some space.
            await leases_released(sessions)
            filler = fill(tmpfs)

            response, figures = await _counter(client, visitor)
            assert response is not None and response.status_code >= 500, figures.statuses
            newcomer = Visitor()
            response, figures = await _counter(client, newcomer)
            assert response is not None and response.status_code >= 500, figures.statuses
            assert newcomer.cookie is None  # no cookie for a session that was not stored

            assert stored_counters(sessions) == {visitor.cookie: 3}
            assert temp_files(sessions) == []
            whoami = await client.get("/whoami", visitor.headers())
            if locking:
                # A lease is a file to write: with no space left even a read
                # cannot take one, and says so rather than run unleased.
                assert whoami.status_code >= 500
            else:  # reading still works on a full disk: the session is intact
                assert whoami.status_code == 200 and whoami.json() == {"counter": 3}

            filler.unlink()
            response, _ = await _counter(client, visitor)
            assert response is not None and response.status_code == 200
            assert visitor.last == 4
            assert stored_counters(sessions) == {visitor.cookie: 4}
            await leases_released(sessions)
            assert lease_files(sessions) == []
    log = srv.output()
    assert "SessionBackendError" in log and "No space left on device" in log, log


async def test_unwritable_directory_answers_5xx_and_keeps_the_old_session(
    tmpfs: Path, tmp_path: Path
):
    sessions = tmpfs / "sessions"
    with uvicorn_demo(tmp_path, workers=1, ASESS_DEMO_PATH=str(sessions)) as srv:
        client, visitor = await _three_visits(srv)
        async with client:
            # root writes through file modes, so for root the directory's
            # filesystem goes read-only; anyone else loses the write bit.
            if os.geteuid() == 0:
                assert _mount("-o", "remount,ro", str(tmpfs)).returncode == 0
            else:
                sessions.chmod(0o500)
            try:
                response, figures = await _counter(client, visitor)
                assert response is not None and response.status_code >= 500, figures.statuses
                newcomer = Visitor()
                response, figures = await _counter(client, newcomer)
                assert response is not None and response.status_code >= 500, figures.statuses
                assert newcomer.cookie is None
                assert stored_counters(sessions) == {visitor.cookie: 3}
            finally:
                if os.geteuid() == 0:
                    assert _mount("-o", "remount,rw", str(tmpfs)).returncode == 0
                else:
                    sessions.chmod(0o700)
            response, _ = await _counter(client, visitor)
            assert response is not None and response.status_code == 200
            assert visitor.last == 4
            assert stored_counters(sessions) == {visitor.cookie: 4}
    log = srv.output()
    assert "SessionBackendError" in log, log
    assert "Read-only file system" in log or "Permission denied" in log, log


# -- injected faults, in process: the app raises SessionBackendError ------------


class _FailingOs:
    """``os`` for files_ops, with ``fail(name, args)`` deciding which calls raise."""

    def __init__(self, code: int, names: set[str], only_creating: bool = False) -> None:
        self.code, self.names, self.only_creating = code, names, only_creating

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.names:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            creating = name != "open" or bool(args[1] & os.O_CREAT)
            if creating or not self.only_creating:
                raise OSError(self.code, os.strerror(self.code))
            return real(*args, **kwargs)

        return call


@pytest.mark.parametrize("locking", [False, True], ids=["unlocked", "locking"])
@pytest.mark.parametrize(
    ("code", "names", "only_creating"),
    [
        pytest.param(errno.ENOSPC, {"write"}, False, id="ENOSPC"),
        pytest.param(errno.EDQUOT, {"write"}, False, id="EDQUOT"),
        pytest.param(errno.EACCES, {"open"}, True, id="EACCES"),
        pytest.param(errno.EIO, {"fsync"}, False, id="EIO-fsync"),
    ],
)
async def test_injected_write_failure_answers_503_and_keeps_the_old_session(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: int,
    names: set[str],
    only_creating: bool,
    locking: bool,
):
    sessions = tmp_path / "sessions"
    app = build_app("files", path=str(sessions), locking=locking)
    if "fsync" in names:  # a failing fsync needs a store that fsyncs (not the default)
        manager = SessionManager.files(path=str(sessions), locking=locking, fsync=True)
        info = describe("files", mode="legacy", path=str(sessions), locking=locking)
        app = DemoApp(manager, info)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for _ in range(3):
            response = await client.get("/counter")
        assert response.text == "This is your 3 visit"
        sid = client.cookies[COOKIE_NAME]

        monkeypatch.setattr(files_ops, "os", _FailingOs(code, names, only_creating))
        with caplog.at_level(logging.ERROR, logger="asess"):
            failed = await client.get("/counter")
        # The middleware answers the failed save as it answers a failed load.
        assert failed.status_code == 503
        errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
        assert len(errors) == 1 and isinstance(errors[0], SessionBackendError)
        assert os.strerror(code) in str(errors[0])
        assert isinstance(errors[0].__cause__, OSError)
        assert errors[0].__cause__.errno == code
        assert stored_counters(sessions) == {sid: 3}
        assert temp_files(sessions) == []
        assert lease_files(sessions) == []  # the failed request gave its lease back

        monkeypatch.undo()
        response = await client.get("/counter")
        assert response.text == "This is your 4 visit"
        assert stored_counters(sessions) == {sid: 4}
        assert lease_files(sessions) == []
