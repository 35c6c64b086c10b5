"""The ``asess`` command, run as ``python -m asess`` in a subprocess.

Covers help text, exit codes (0 / 1 operation failed / 2 usage), keygen,
``inspect`` on tokens minted by both codecs (plain, chunked, tampered), and
``gc`` on a real files-store directory.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asess import Session, SessionManager

from .helpers import client, cookie_value
from .servers import backend_missing, subprocess_env

pytestmark = pytest.mark.timeout(60)

COOKIE = "asess_session"
KEY = "an-inspect-test-key-that-is-long-enough-0123456789"
DATA = {"user": "ada", "visits": 3, "roles": ["admin", "dev"], "prefs": {"theme": "dark"}}


def asess(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
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
    result = asess()
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
    assert meta["created_at"] <= before + 1
    assert meta["expires_at"] > before + 3000  # the default expire is 3600 s
    assert set(meta) == {"created_at", "issued_at", "expires_at", "lifetime", "needs_reissue"}


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_inspect_joins_chunked_cookies(mode: str) -> None:
    need(f"cookies-{mode}")
    data = {"blob": os.urandom(3000).hex()}
    tokens = await mint(mode, data)
    assert len(tokens) >= 2
    result = asess("inspect", *tokens, "--key", KEY, "--mode", mode)
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
    env = {k: v for k, v in os.environ.items() if k != "ASESS_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "asess", "inspect", "sometoken"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": subprocess_env()["PYTHONPATH"]},
        timeout=60,
    )
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
    result = asess("gc", "--path", str(tmp_path / "nowhere"))
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
