"""The ``asess`` command: its ``main()`` run in this process, and as ``python -m asess``.

Covers help text, ``--version``, exit codes (0 / 1 operation failed, a busy
port included / 2 usage), keygen, ``inspect`` on tokens minted by both codecs
(plain, chunked, tampered, format detected, pasted as ``name=value`` or a
Cookie header) and on files and Redis sessions by id, ``gc`` on a real
files-store directory (``--dry-run``, refused ``--expire``), and the message
``import asess.emmett`` gives without Emmett.

Most cases call ``main(argv)`` in process, the way the entry point does, with
what a process would see and show (its own stdout and stderr, the exit status
``SystemExit`` or an uncaught exception would give); a few run the real
``python -m asess`` so the entry point itself stays covered.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asess import Session, SessionManager

from .cli_inprocess import run_main as asess
from .helpers import client, cookie_value
from .servers import backend_missing, subprocess_env

pytestmark = pytest.mark.timeout(60)

COOKIE = "asess_session"
KEY = "an-inspect-test-key-that-is-long-enough-0123456789"
DATA = {"user": "ada", "visits": 3, "roles": ["admin", "dev"], "prefs": {"theme": "dark"}}


def asess_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m asess ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "asess", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(**env),
        timeout=60,
    )


def need(backend: str) -> None:
    reason = backend_missing(backend)
    if reason:
        pytest.skip(reason)


# -- help and usage --------------------------------------------------------------


def test_help_lists_every_command_and_the_exit_codes() -> None:
    result = asess("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: asess")
    for command in ("demo", "gc", "inspect", "keygen"):
        assert command in result.stdout
    assert "Exit codes: 0 success, 1 the operation failed, 2 usage error" in " ".join(
        result.stdout.split()
    )


def test_no_command_is_a_usage_error() -> None:
    # Through the real entry point: argparse's exit status is the process's.
    result = asess_process()
    assert result.returncode == 2
    assert "usage: asess" in result.stderr


def test_an_unknown_command_is_a_usage_error() -> None:
    result = asess("frobnicate")
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert result.stdout == ""


def test_demo_help_shows_backends_servers_and_port() -> None:
    result = asess("demo", "--help")
    assert result.returncode == 0
    text = result.stdout
    for word in ("--backend", "cookies", "files", "redis", "--server", "uvicorn", "granian"):
        assert word in text
    for option in ("--port", "--mode", "--workers", "--path", "--redis-url", "--locking"):
        assert option in text


def test_demo_rejects_memory_sessions_across_workers() -> None:
    result = asess("demo", "--backend", "memory", "--workers", "2")
    assert result.returncode == 2
    assert "--workers 1" in result.stderr


# -- keygen ----------------------------------------------------------------------


def test_keygen_prints_a_strong_unique_key() -> None:
    keys = []
    for _ in range(3):
        result = asess("keygen")
        assert result.returncode == 0
        keys.append(result.stdout.strip())
    assert len(set(keys)) == 3
    for key in keys:
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        # Each byte comes from the OS CSPRNG: 32 bytes are 256 bits of entropy.
        assert len(raw) >= 32
        assert key.isascii() and " " not in key
    SessionManager.cookies(keys[0])  # usable as a session key as printed


# -- inspect ---------------------------------------------------------------------


async def mint(mode: str, data: dict[str, Any]) -> list[str]:
    """The session cookie values (first, then chunks) a real request hands out."""

    async def store(session: Session, scope: dict[str, Any]) -> str:
        session.update(data)
        return "ok"

    manager = SessionManager.cookies(KEY, encryption_mode=mode)
    async with client(manager, store) as http:
        response = await http.get("/")
    values = []
    for name in [COOKIE] + [f"{COOKIE}.{i}" for i in range(1, 3)]:
        value = cookie_value(response, name)
        if value:
            values.append(value)
    assert values, response.headers
    return values


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_inspect_prints_the_session_as_json(mode: str) -> None:
    need(f"cookies-{mode}")
    (token,) = await mint(mode, DATA)
    before = time.time()
    result = asess("inspect", token, "--key", KEY, "--mode", mode)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["data"] == DATA
    meta = out["meta"]
    # Times are ISO 8601 in UTC, with the time left beside them.
    created = dt.datetime.fromisoformat(meta["created_at"])
    expires = dt.datetime.fromisoformat(meta["expires_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert created.timestamp() <= before + 1
    assert expires.timestamp() > before + 3000  # the default expire is 3600 s
    assert 3500 < meta["expires_in_seconds"] <= 3600
    assert re.fullmatch(r"(59m \d+s|1h)", meta["expires_in"]), meta["expires_in"]
    assert set(meta) == {
        "format",
        "created_at",
        "issued_at",
        "expires_at",
        "expires_in",
        "expires_in_seconds",
        "lifetime",
        "needs_reissue",
    }
    assert meta["format"] == mode


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_inspect_joins_chunked_cookies(mode: str) -> None:
    need(f"cookies-{mode}")
    data = {"blob": os.urandom(3000).hex()}
    tokens = await mint(mode, data)
    assert len(tokens) >= 2
    # "--" ends the options: a chunk may start with "-", a base64url character.
    result = asess("inspect", "--key", KEY, "--mode", mode, "--", *tokens)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == data


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_inspect_says_why_a_tampered_token_does_not_decode(mode: str) -> None:
    need(f"cookies-{mode}")
    (token,) = await mint(mode, DATA)
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    result = asess("inspect", tampered, "--key", KEY, "--mode", mode)
    assert result.returncode == 1
    assert result.stdout == ""
    reason, hint = result.stderr.strip().splitlines()
    assert reason.startswith("asess: the token does not decode: ")
    assert len(reason) > len("asess: the token does not decode: ") + 5  # a reason follows
    assert f"--mode {mode}" in hint


async def test_inspect_with_the_wrong_key_or_mode_fails() -> None:
    need("cookies-modern")
    (token,) = await mint("modern", DATA)
    wrong_key = asess(
        "inspect", token, "--key", "another-key-entirely-0123456789", "--mode", "modern"
    )
    assert wrong_key.returncode == 1
    assert "does not decode" in wrong_key.stderr
    if not backend_missing("cookies-legacy"):
        wrong_mode = asess("inspect", token, "--key", KEY, "--mode", "legacy")
        assert wrong_mode.returncode == 1
        assert "does not decode" in wrong_mode.stderr


async def test_inspect_tries_every_key_of_a_rotation() -> None:
    need("cookies-modern")
    (token,) = await mint("modern", DATA)
    result = asess(
        "inspect", token, "--key", "a-newer-key-0123456789abcdef", "--key", KEY, "--mode", "modern"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == DATA


async def test_inspect_reads_the_key_from_the_environment() -> None:
    need("cookies-modern")
    (token,) = await mint("modern", DATA)
    result = asess("inspect", token, "--mode", "modern", ASESS_KEY=KEY)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == DATA


def test_inspect_without_a_key_is_a_usage_error() -> None:
    result = asess("inspect", "sometoken", unset=("ASESS_KEY",))
    assert result.returncode == 2
    assert "--key" in result.stderr and "ASESS_KEY" in result.stderr


# -- gc --------------------------------------------------------------------------


async def test_gc_removes_expired_sessions_and_orphans_and_prints_counts(tmp_path: Path) -> None:
    need("files")
    from asess._backends.files_format import Layout

    sessions = tmp_path / "sessions"
    manager = SessionManager.files(path=str(sessions), expire=60)
    for _ in range(3):
        async with client(manager) as http:
            assert (await http.get("/")).text == "1"
    await manager.aclose()
    files = sorted(sessions.iterdir())
    assert len(files) == 3
    # Two sessions idle for longer than their 60 s ttl; one still live.
    old = time.time() - 600
    for path in files[:2]:
        os.utime(path, (old, old))
    # A temp file left by a crashed writer long ago, and a file gc must not touch.
    orphan = sessions / Layout.temp_name(files[0].name)
    orphan.write_bytes(b"partial")
    os.utime(orphan, (time.time() - 7200,) * 2)
    (sessions / "notes.txt").write_text("keep me")

    result = asess("gc", "--path", str(sessions))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "expired sessions removed: 2" in lines
    assert "orphan temporary files removed: 1" in lines
    assert "live sessions kept: 1" in lines
    assert sorted(p.name for p in sessions.iterdir()) == sorted([files[2].name, "notes.txt"])


def test_gc_on_a_missing_directory_fails(tmp_path: Path) -> None:
    # Through the real entry point: main()'s return value is the exit status.
    result = asess_process("gc", "--path", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "is not a directory" in result.stderr


def test_gc_with_a_bad_template_fails_saying_what_to_change(tmp_path: Path) -> None:
    need("files")
    result = asess("gc", "--path", str(tmp_path), "--filename-template", "no-placeholder")
    assert result.returncode == 1
    assert result.stderr.startswith("asess: filename_template=")


def test_gc_requires_a_path() -> None:
    result = asess("gc")
    assert result.returncode == 2
    assert "--path" in result.stderr


# -- version, ports, imports -----------------------------------------------------


def test_version_is_the_package_version() -> None:
    import asess as package

    # Through the real entry point, as `asess --version` runs for a user.
    result = asess_process("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"asess {package.__version__}"


def test_demo_on_a_busy_port_exits_1_saying_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = asess("demo", "--backend", "memory", "--port", str(port))
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_demo_refuses_a_port_outside_the_range(port: str) -> None:
    result = asess("demo", "--port", port)
    assert result.returncode == 2
    assert "port from 1 to 65535" in result.stderr


def test_importing_the_emmett_adapter_without_emmett_names_the_extra() -> None:
    code = "import sys; sys.modules['emmett'] = None; import asess.emmett"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: asess.emmett needs Emmett")
    assert "pip install 'asess[emmett]'" in last


# -- inspect: format detection and pasted cookies ---------------------------------


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_inspect_detects_the_format(mode: str) -> None:
    need(f"cookies-{mode}")
    (token,) = await mint(mode, DATA)
    result = asess("inspect", token, "--key", KEY)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["data"] == DATA
    assert out["meta"]["format"] == mode


def test_inspect_says_when_the_format_cannot_be_told() -> None:
    result = asess("inspect", "plainly-not-a-token", "--key", KEY)
    assert result.returncode == 1
    assert "neither a modern token" in result.stderr


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_inspect_accepts_name_value_as_a_browser_shows_it(mode: str) -> None:
    need(f"cookies-{mode}")
    (token,) = await mint(mode, DATA)
    for pasted in (f"{COOKIE}={token}", f'{COOKIE}="{token}"', f"theme=dark; {COOKIE}={token}"):
        result = asess("inspect", "--key", KEY, "--cookie-name", COOKIE, "--", pasted)
        assert result.returncode == 0, (pasted, result.stderr)
        assert json.loads(result.stdout)["data"] == DATA
    # Without --cookie-name, a single pasted cookie names itself.
    result = asess("inspect", "--key", KEY, "--", f"{COOKIE}={token}")
    assert result.returncode == 0, result.stderr
    # Two candidates: the command asks which one.
    result = asess("inspect", "--key", KEY, "--", f"other=x; {COOKIE}={token}")
    assert result.returncode == 1
    assert "--cookie-name" in result.stderr


async def test_inspect_joins_chunks_pasted_as_a_cookie_header_in_any_order() -> None:
    need("cookies-modern")
    data = {"blob": os.urandom(3000).hex()}
    tokens = await mint("modern", data)
    assert len(tokens) >= 2
    names = [COOKIE] + [f"{COOKIE}.{i}" for i in range(1, len(tokens))]
    header = "; ".join(f"{n}={t}" for n, t in reversed(list(zip(names, tokens, strict=True))))
    result = asess("inspect", "--key", KEY, "--", header)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == data
    # A chunk missing from the middle is named, not decoded into garbage.
    if len(tokens) >= 3:
        gappy = f"{COOKIE}={tokens[0]}; {COOKIE}.2={tokens[2]}"
        result = asess("inspect", "--key", KEY, "--", gappy)
        assert result.returncode == 1
        assert f"{COOKIE}.1 is missing" in result.stderr


def test_inspect_unit_helpers() -> None:
    from asess._inspect import human, pasted_value

    assert human(3599.5) == "59m 59s"
    assert human(90061) == "1d 1h"
    assert human(7) == "7s"
    assert human(-125) == "expired 2m 5s ago"
    # Base64 padding is not a name=value separator.
    assert pasted_value(["abc=:def=:ghi"], None) == (None, "abc=:def=:ghi")
    assert pasted_value(["n=abc=:def"], None) == ("n", "abc=:def")


# -- inspect: stored sessions by id ----------------------------------------------


async def _file_session(directory: Path, data: dict[str, Any], expire: int = 600) -> str:
    async def store(session: Session, scope: dict[str, Any]) -> str:
        session.update(data)
        return "ok"

    manager = SessionManager.files(path=str(directory), expire=expire)
    async with client(manager, store) as http:
        response = await http.get("/")
    await manager.aclose()
    sid = cookie_value(response, COOKIE)
    assert sid
    return sid


async def test_inspect_shows_a_file_session_by_id_without_touching_it(tmp_path: Path) -> None:
    need("files")
    sid = await _file_session(tmp_path, DATA)
    (path,) = tmp_path.iterdir()
    old = time.time() - 100
    os.utime(path, (old, old))
    # An id may start with "-" (1 in 64): after "--" it is never an option.
    result = asess("inspect", "--path", str(tmp_path), "--", sid)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["data"] == DATA
    assert out["meta"]["store"] == "files"
    assert out["meta"]["file"] == str(path)
    assert 480 < out["meta"]["expires_in_seconds"] <= 500  # 600 s from an mtime 100 s ago
    assert path.stat().st_mtime == pytest.approx(old, abs=1)  # expiry not slid
    # Pasted as name=value, too.
    result = asess("inspect", "--path", str(tmp_path), f"{COOKIE}={sid}")
    assert result.returncode == 0, result.stderr


async def test_inspect_by_id_explains_a_missing_or_malformed_id(tmp_path: Path) -> None:
    need("files")
    await _file_session(tmp_path, DATA)
    missing = asess("inspect", "--path", str(tmp_path), "A" * 43)
    assert missing.returncode == 1
    assert "no session file" in missing.stderr
    malformed = asess("inspect", "--path", str(tmp_path), "../../etc/passwd")
    assert malformed.returncode == 1
    assert "not a session id" in malformed.stderr
    both = asess("inspect", "--path", str(tmp_path), "--redis-url", "redis://x", "A" * 43)
    assert both.returncode == 2


async def test_inspect_shows_a_redis_session_by_id_keeping_its_ttl(redis_url: str | None) -> None:
    if redis_url is None:
        pytest.skip("needs a real Redis server (the command runs in its own process)")
    import redis.asyncio as aioredis

    prefix = f"inspect-{os.urandom(4).hex()}:"

    async def store(session: Session, scope: dict[str, Any]) -> str:
        session.update(DATA)
        return "ok"

    manager = SessionManager.redis(redis_url, prefix=prefix, expire=900)
    async with client(manager, store) as http:
        sid = cookie_value(await http.get("/"), COOKIE)
    await manager.aclose()
    assert sid
    raw = aioredis.from_url(redis_url)
    try:
        await raw.expire(prefix + sid, 300)
        result = asess("inspect", "--redis-url", redis_url, "--prefix", prefix, "--", sid)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["data"] == DATA
        assert out["meta"]["store"] == "redis"
        assert out["meta"]["key"] == prefix + sid
        assert 280 < out["meta"]["expires_in_seconds"] <= 300
        assert 0 < await raw.ttl(prefix + sid) <= 300  # GET, not GETEX: not slid back to 900
        gone = asess("inspect", "--redis-url", redis_url, "--prefix", prefix, "B" * 43)
        assert gone.returncode == 1
        assert "no key" in gone.stderr
    finally:
        await raw.delete(prefix + sid)
        await raw.aclose()


# -- gc: refused lifetimes and dry runs ------------------------------------------


@pytest.mark.parametrize("expire", ["0", "-5", "soon"])
async def test_gc_refuses_a_non_positive_expire(tmp_path: Path, expire: str) -> None:
    need("files")
    await _file_session(tmp_path, DATA)
    before = sorted(tmp_path.iterdir())
    result = asess("gc", "--path", str(tmp_path), f"--expire={expire}")
    assert result.returncode == 2
    assert "--expire" in result.stderr
    assert sorted(tmp_path.iterdir()) == before


async def test_gc_dry_run_counts_and_removes_nothing(tmp_path: Path) -> None:
    need("files")
    for _ in range(3):
        await _file_session(tmp_path, DATA, expire=60)
    files = sorted(tmp_path.iterdir())
    old = time.time() - 600
    for path in files[:2]:
        os.utime(path, (old, old))
    dry = asess("gc", "--path", str(tmp_path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "expired sessions that would be removed: 2" in dry.stdout.splitlines()
    assert "dry run: nothing was removed" in dry.stdout
    assert sorted(tmp_path.iterdir()) == files
    real = asess("gc", "--path", str(tmp_path))
    assert "expired sessions removed: 2" in real.stdout.splitlines()
    assert sorted(tmp_path.iterdir()) == files[2:]


async def _logins(manager: SessionManager, users: list[str]) -> list[str]:
    sids = []
    for user in users:
        async with manager.lifecycle(None) as session:
            session["user"] = user
        assert session.id is not None
        sids.append(session.id)
    return sids


@pytest.mark.parametrize("store", ["files", "redis"])
async def test_sessions_list_and_revoke_a_users_sessions(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from asess._ids import handle_of

    if store == "files":
        manager = SessionManager.files(path=tmp_path, user_key="user")
        where = ["--path", str(tmp_path)]
    else:
        url = request.getfixturevalue("redis_url")
        if url is None:
            pytest.skip("no redis-server (CI requires one)")
        prefix = f"cli{os.getpid()}:"
        manager = SessionManager.redis(url, prefix=prefix, user_key="user")
        where = ["--redis-url", url, "--prefix", prefix]
    try:
        a1, a2, _a3, b1 = await _logins(manager, ["alice", "alice", "alice", "bob"])
        listed = asess("sessions", "list", "--user", "alice", *where)
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert len(rows) == 3 and {"handle", "created", "last_seen", "expires"} <= set(rows[0])
        keep = handle_of(a1)
        revoked = asess("sessions", "revoke", "--user", "alice", f"--keep={keep}", *where)
        assert revoked.returncode == 0 and "revoked 2 session(s)" in revoked.stdout
        assert [i.handle for i in await manager.sessions_of("alice")] == [keep]
        assert [i.handle for i in await manager.sessions_of("bob")] == [handle_of(b1)]
        assert await manager.store.read(a2, 60, time.time()) is None  # type: ignore[union-attr]
    finally:
        await manager.aclose()


def test_sessions_needs_a_user_and_a_store() -> None:
    assert asess("sessions", "list", "--path", "x").returncode == 2
    assert asess("sessions", "list", "--user", "u").returncode == 2
