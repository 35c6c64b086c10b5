"""Cookies written by Starlette's own SessionMiddleware are adopted, never written.

Every old cookie here is minted by the real ``starlette.middleware.sessions``
running the same app; asess's middleware then reads it with the same
``secret_key``, checks Starlette's signature and ``max_age``, and re-issues
the data once in its own format (into a server-side store with ``manager=``).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import itsdangerous
import pytest
import starlette.middleware.sessions as real

from asess import SessionManager
from asess.starlette import SessionMiddleware

from .starlette_apps import client, make_app

KEY = "the-key-the-starlette-app-always-had"
DAY = 24 * 60 * 60


async def mint(data: dict[str, Any], *, age: int = 0, **options: Any) -> str:
    """A cookie from Starlette's real middleware, signed ``age`` seconds ago."""
    signed_at = int(time.time()) - age
    original = itsdangerous.TimestampSigner.get_timestamp
    itsdangerous.TimestampSigner.get_timestamp = lambda self: signed_at  # type: ignore[method-assign]
    try:
        async with client(make_app(real.SessionMiddleware, secret_key=KEY, **options)) as c:
            response = await c.post("/put", json=data)
    finally:
        itsdangerous.TimestampSigner.get_timestamp = original  # type: ignore[method-assign]
    return response.headers["set-cookie"].partition("=")[2].partition(";")[0]


def starlette_can_read(value: str) -> bool:
    try:
        itsdangerous.TimestampSigner(KEY).unsign(value)
    except itsdangerous.BadSignature:
        return False
    return True


async def test_a_starlette_cookie_is_read_and_reissued_once_in_asess_format() -> None:
    old = await mint({"user": "ada", "cart": [1, 2]})
    assert starlette_can_read(old)
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        c.cookies.set("session", old, domain="testserver.local")
        first = await c.get("/view")
        assert first.json() == {"user": "ada", "cart": [1, 2]}
        new = c.cookies["session"]
        assert new.startswith("as1.") and not starlette_can_read(new)
        assert first.headers["set-cookie"].endswith(
            "; path=/; Max-Age=1209600; httponly; samesite=lax"
        )
        second = await c.get("/view")
        assert second.json() == {"user": "ada", "cart": [1, 2]}
        assert "set-cookie" not in second.headers  # re-issued once, then left alone


async def test_migration_happens_even_when_the_handler_ignores_the_session() -> None:
    old = await mint({"user": "ada"})
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        c.cookies.set("session", old, domain="testserver.local")
        response = await c.get("/idle")
        assert c.cookies["session"].startswith("as1.")
        assert "vary" not in response.headers  # Starlette's rule: Vary only on access
        assert (await c.get("/view")).json() == {"user": "ada"}


@pytest.mark.parametrize(
    "tamper",
    [
        # Inside the signature: its last character carries two unused bits.
        lambda v: v[:-5] + ("A" if v[-5] != "A" else "B") + v[-4:],
        lambda v: ("e" if v[0] != "e" else "f") + v[1:],  # the payload
        lambda v: v.rsplit(".", 2)[0],  # the timestamp and signature cut off
        lambda v: base64.b64encode(json.dumps({"user": "root"}).encode()).decode(),
    ],
    ids=["signature", "payload", "truncated", "unsigned"],
)
async def test_a_tampered_starlette_cookie_is_refused(tamper: Any) -> None:
    old = await mint({"user": "ada"})
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        c.cookies.set("session", tamper(old), domain="testserver.local")
        response = await c.get("/view")
        assert response.json() == {}
        # The unusable cookie is expired, not replaced by a session.
        assert response.headers["set-cookie"].startswith("session=null;")


async def test_a_starlette_cookie_signed_with_another_key_is_refused() -> None:
    old = await mint({"user": "ada"})
    async with client(make_app(SessionMiddleware, secret_key="not-" + KEY)) as c:
        c.cookies.set("session", old, domain="testserver.local")
        assert (await c.get("/view")).json() == {}


@pytest.mark.parametrize(
    ("age", "max_age", "accepted"),
    [
        (13 * DAY, 14 * DAY, True),
        (15 * DAY, 14 * DAY, False),
        (7200, 3600, False),
        (60, 3600, True),
        (400 * DAY, None, True),  # Starlette checks no age without max_age
    ],
)
async def test_starlettes_max_age_is_checked(age: int, max_age: int | None, accepted: bool) -> None:
    old = await mint({"user": "ada"}, age=age, max_age=max_age)
    async with client(make_app(SessionMiddleware, secret_key=KEY, max_age=max_age)) as c:
        c.cookies.set("session", old, domain="testserver.local")
        assert (await c.get("/view")).json() == ({"user": "ada"} if accepted else {})


async def test_migrate_false_reads_no_starlette_cookie() -> None:
    old = await mint({"user": "ada"})
    async with client(make_app(SessionMiddleware, secret_key=KEY, migrate=False)) as c:
        c.cookies.set("session", old, domain="testserver.local")
        assert (await c.get("/view")).json() == {}


async def test_a_starlette_cookie_moves_into_a_server_side_store(tmp_path: Path) -> None:
    manager = SessionManager.files(path=tmp_path, fsync=False)
    old = await mint({"user": "ada"})
    async with client(make_app(SessionMiddleware, secret_key=KEY, manager=manager)) as c:
        c.cookies.set("session", old, domain="testserver.local")
        assert (await c.get("/view")).json() == {"user": "ada"}
        sid = c.cookies["session"]
        assert sid != old and not starlette_can_read(sid)
        assert len(list(tmp_path.iterdir())) == 1
        again = await c.get("/view")
        assert again.json() == {"user": "ada"}
        assert c.cookies["session"] == sid


async def test_an_asess_session_wins_over_nothing_else() -> None:
    # A valid asess cookie is never re-read as a Starlette one (and vice versa).
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        await c.post("/put", json={"n": 1})
        token = c.cookies["session"]
        response = await c.get("/view")
        assert response.json() == {"n": 1} and "set-cookie" not in response.headers
        assert c.cookies["session"] == token
