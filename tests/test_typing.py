"""Typed access, checked by mypy --strict and at run time.

``tests/typing_sample.py`` uses the public API as the README shows it and must
type-check with no error; a second, deliberately wrong sample must produce the
errors the Literal types and the typed helpers exist for (so the first check
cannot pass by mypy seeing everything as ``Any``). The sample app is also
served, so what type-checks also works.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asess import SessionError, SessionManager, get_session

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "typing_sample.py"

WRONG = """\
from fastapi import Request
from asess import SessionManager, get_session

SessionManager.cookies("key", samesite="Laxx")
SessionManager.files(samesite="strict-ish")
SessionManager.cookies("key", encryption_mode="moden")


async def handler(request: Request) -> None:
    request.session.regenerate()
    get_session(request).regenerate()
    n: int = get_session(request).regenerate()
"""


@contextlib.contextmanager
def _cache_turn() -> Iterator[None]:
    """Hold the checkout's mypy cache for one run.

    mypy keeps its incremental cache in ``.mypy_cache`` (shared with ``make
    lint``, so a run here is a cache hit once the lint step ran), in SQLite:
    two runs at once, from two pytest-xdist workers, could find it locked and
    fail. They take turns instead, and the second reuses what the first wrote.
    """
    cache = ROOT / ".mypy_cache"
    cache.mkdir(exist_ok=True)
    with open(cache / "asess-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -r requirements/dev.txt)")
    with _cache_turn():
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, paths)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=280,
        )


def test_the_sample_app_type_checks_strictly() -> None:
    result = mypy(SAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_wrong_values_and_untyped_access_are_caught(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_sample.py"
    wrong.write_text(WRONG)
    result = mypy(wrong)
    assert result.returncode == 1
    lines = sorted({int(m) for m in re.findall(r"wrong_sample\.py:(\d+): error", result.stdout)})
    # samesite twice, encryption_mode, Starlette's dict-typed request.session, and the
    # helper's result is a real Session (regenerate() returns None, not Any).
    assert lines == [4, 5, 6, 10, 12], result.stdout
    assert '"dict[str, Any]" has no attribute "regenerate"' in result.stdout


async def test_the_sample_app_serves_what_it_types(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("typing_sample", SAMPLE)
    assert spec and spec.loader
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    transport = httpx.ASGITransport(app=sample.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/counter")).json() == "This is your 1 visit"
        before = http.cookies.get("asess_session")
        login = await http.post("/login", params={"user": "ada"})
        assert login.json() == {"user": "ada", "new": False}
        assert http.cookies.get("asess_session") not in (None, before)  # regenerated
        assert (await http.get("/whoami")).json() == {
            "user": "ada",
            "same": True,
            "modified": False,
        }
        await http.post("/logout")
        assert (await http.get("/whoami")).json()["user"] is None
    transport = httpx.ASGITransport(app=sample.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/cart", params={"item": "jam"})).json() == {
            "cart": ["jam"],
            "id_set": False,
        }
        assert (await http.get("/cart")).json()["cart"] == ["jam", "tea"]
    await sample.manager.aclose()


def test_get_session_without_the_middleware_says_what_to_do() -> None:
    with pytest.raises(SessionError, match=r"wrap the app in asess\.SessionMiddleware"):
        get_session({"type": "http"})
    with pytest.raises(SessionError, match="holds a dict"):
        get_session({"type": "http", "session": {}})
    manager = SessionManager.memory()
    lifecycle = manager.lifecycle(None)
    assert get_session({"session": lifecycle.session}) is lifecycle.session
