"""aiohttp-session's EncryptedCookieStorage cookies, read and re-issued behind ``fernet_key``.

The old cookies are minted by a real aiohttp-session app (the same handler,
``EncryptedCookieStorage`` with the same key and cookie name) over loopback
TCP; the asess app then reads them only when given ``fernet_key``, refuses
altered, foreign-key and too-old ones, and re-issues the data once in its
own format.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import aiohttp_session
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet, InvalidToken

from asess import ConfigurationError, ManualClock, SessionManager
from asess.aiohttp import get_session, setup

KEY = b"0123456789abcdef0123456789abcdef"  # the 32 raw bytes aiohttp-session takes
NAME = "AIOHTTP_SESSION"

# aiohttp-session (the peer that mints the old cookies) keys requests by str.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


async def put(request: web.Request) -> web.Response:
    session = await aiohttp_session.get_session(request)
    session.update(await request.json())
    return web.Response(text="ok")


async def view(request: web.Request) -> web.Response:
    session = await get_session(request)
    return web.json_response(dict(session))


async def mint(data: dict[str, Any]) -> str:
    """A cookie written by aiohttp-session's own middleware."""
    app = web.Application()
    aiohttp_session.setup(app, EncryptedCookieStorage(KEY, cookie_name=NAME))
    app.router.add_post("/put", put)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        await client.post("/put", json=data)
        value = next(m.value for m in client.session.cookie_jar if m.key == NAME)
    finally:
        await client.close()
    return value


def asess_app(manager: SessionManager, **options: Any) -> web.Application:
    app = web.Application()
    setup(app, manager, **options)
    app.router.add_get("/view", view)
    return app


async def serve(app: web.Application, cookie: str) -> TestClient[Any, Any]:
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    client.session.cookie_jar.update_cookies({NAME: cookie})
    return client


def fernet_reads(value: str) -> bool:
    try:
        Fernet(base64.urlsafe_b64encode(KEY)).decrypt(value.encode())
    except InvalidToken:
        return False
    return True


@pytest.fixture(params=["cookies", "files"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> SessionManager:
    if request.param == "cookies":
        return SessionManager.cookies("asess-key-" * 4, encryption_mode="modern", cookie_name=NAME)
    return SessionManager.files(path=tmp_path, fsync=False, cookie_name=NAME)


async def test_an_aiohttp_session_cookie_is_read_and_reissued_once(manager: SessionManager) -> None:
    old = await mint({"user": "ada", "cart": [1]})
    assert fernet_reads(old)
    client = await serve(asess_app(manager, fernet_key=KEY), old)
    try:
        first = await client.get("/view")
        assert await first.json() == {"user": "ada", "cart": [1]}
        new = first.cookies[NAME].value
        assert new != old and not fernet_reads(new)
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({NAME: new})
        second = await client.get("/view")
        assert await second.json() == {"user": "ada", "cart": [1]}
        if not manager.server_side:
            assert "Set-Cookie" not in second.headers  # re-issued once
        else:
            assert second.cookies[NAME].value == new  # the same id, slid
    finally:
        await client.close()


def flip(value: str, index: int) -> str:
    """The token with one bit of byte ``index`` flipped (decoded, so base64 stays valid)."""
    raw = bytearray(base64.urlsafe_b64decode(value))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda v: flip(v, -1),  # the HMAC
        lambda v: flip(v, 30),  # the ciphertext
        lambda v: flip(v, 3),  # the timestamp
        lambda v: v[: len(v) // 2],
    ],
    ids=["mac", "ciphertext", "timestamp", "truncated"],
)
async def test_an_altered_cookie_is_refused(spoil: Any) -> None:
    manager = SessionManager.cookies("asess-key-" * 4, encryption_mode="modern", cookie_name=NAME)
    client = await serve(asess_app(manager, fernet_key=KEY), spoil(await mint({"user": "ada"})))
    try:
        assert await (await client.get("/view")).json() == {}
    finally:
        await client.close()


async def test_without_the_flag_or_with_another_key_nothing_is_read() -> None:
    old = await mint({"user": "ada"})
    manager = SessionManager.cookies("asess-key-" * 4, encryption_mode="modern", cookie_name=NAME)
    for options in ({}, {"fernet_key": b"f" * 32}):
        client = await serve(asess_app(manager, **options), old)
        try:
            assert await (await client.get("/view")).json() == {}
        finally:
            await client.close()


@pytest.mark.parametrize(("later", "accepted"), [(30, True), (120, False)])
async def test_fernet_max_age_is_checked(later: int, accepted: bool) -> None:
    old = await mint({"user": "ada"})
    clock = ManualClock(time.time() + later)
    manager = SessionManager.cookies(
        "asess-key-" * 4, encryption_mode="modern", cookie_name=NAME, clock=clock
    )
    client = await serve(asess_app(manager, fernet_key=KEY, fernet_max_age=60), old)
    try:
        assert await (await client.get("/view")).json() == ({"user": "ada"} if accepted else {})
    finally:
        await client.close()


def test_a_bad_fernet_key_is_a_configuration_error() -> None:
    manager = SessionManager.memory()
    with pytest.raises(ConfigurationError, match="fernet_key"):
        setup(web.Application(), manager, fernet_key="not a key")
