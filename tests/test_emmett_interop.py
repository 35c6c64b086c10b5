"""Switching an Emmett app to asess, and back, without logging anyone out.

Two apps with the same name and key: one on Emmett's own
``emmett.sessions.SessionManager.cookies``, one on ``asess.emmett``'s. A
browser (Emmett's test client cookie jar) moves between them. Both run a real
Emmett ``Auth`` with its ``AuthPipe`` on a SQLite database, so ``session.auth``
is what Emmett really stores: an sdict holding the user's ORM row, datetimes
and flags.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from emmett import Form, session
from emmett.datastructures import sdict
from emmett.orm import Database, Field
from emmett.sessions import SessionManager as EmmettManager
from emmett.tools import Mailer
from emmett.tools.auth import Auth, AuthUser

from asess.emmett import SessionManager
from tests.emmett_helpers import BACKENDS, KEY, cookie_line, new_app, pipe_factory

APP_NAME = "shop"
COOKIE = f"emt_session_data_{APP_NAME}"
REMEMBER = 3600 * 24 * 30  # Emmett Auth's session_long_expiration


def auth_app(root: Path, make_pipe: Any, user_model: str = "User") -> Any:
    """An Emmett app with Auth, its AuthPipe, and routes to log in and look.

    Emmett publishes each model's row class as ``emmett.orm.models.<Model>Row``,
    so two apps in one process need differently named user models.
    """
    app = new_app(root, APP_NAME)
    app.config.auth.hmac_key = "interop-hmac-key"
    app.config.db.uri = "sqlite://auth.db"
    Mailer(app)  # Auth warns (through a deprecated logging call) without one

    User: Any = type(user_model, (AuthUser,), {"__module__": __name__})

    db = Database(app, auto_migrate=True)
    auth = Auth(app, db, user_model=User)
    app.pipeline = [make_pipe(), db.pipe, auth.pipe]

    @app.route("/login")
    async def login() -> str:
        user = User.get(email="ann@example.com")
        if user is None:
            User.create(
                email="ann@example.com", first_name="Ann", last_name="Lee", password="pw-123456"
            )
            user = User.get(email="ann@example.com")
        auth.ext.login_user(user, True)
        return "in"

    @app.route("/me")
    async def me() -> str:
        if not auth.is_logged():
            return "anonymous"
        state = session.auth
        return "|".join(
            [
                auth.user.email,
                str(auth.user.id),
                type(state).__name__,
                type(state.last_visit).__name__,
                str(state.remember),
                str(state.expiration),
            ]
        )

    @app.route("/counter")
    async def counter() -> str:
        session.counter = (session.counter or 0) + 1
        return str(session.counter)

    return app


def emmett_pipe(**kw: Any) -> Any:
    return lambda: EmmettManager.cookies(KEY, **kw)


def asess_pipe(**kw: Any) -> Any:
    return lambda: SessionManager.cookies(KEY, **kw)


def move_cookies(source: Any, target: Any) -> None:
    """The browser goes from one app to the other, cookies and all."""
    target.cookie_jar.clear()
    for cookie in source.cookie_jar:
        target.cookie_jar.set_cookie(cookie)


def test_emmett_login_survives_the_switch_to_asess(tmp_path: Path) -> None:
    emmett_app = auth_app(tmp_path / "emmett", emmett_pipe(), "EmmettUser")
    asess_app = auth_app(tmp_path / "asess", asess_pipe(), "AsessUser")
    browser_e, browser_a = emmett_app.test_client(), asess_app.test_client()

    assert browser_e.get("/login").data == "in"
    expected = f"ann@example.com|1|sdict|datetime|True|{REMEMBER}"
    assert browser_e.get("/me").data == expected

    move_cookies(browser_e, browser_a)
    response = browser_a.get("/me")
    assert response.data == expected
    # Emmett's token is re-issued in asess's form, with the lifetime AuthPipe
    # asks for ("remember me"), and the user row is kept as an sdict.
    line = cookie_line(response, COOKIE)
    assert line is not None and f"; Max-Age={REMEMBER}" in line
    assert type(response.context.session.auth.user) is sdict
    # Asking for the same lifetime again does not re-issue the cookie.
    response = browser_a.get("/me")
    assert response.data == expected
    assert cookie_line(response, COOKIE) is None


def test_asess_login_survives_the_switch_back_to_emmett(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emmett_app = auth_app(tmp_path / "emmett", emmett_pipe(), "EmmettUser")
    asess_app = auth_app(tmp_path / "asess", asess_pipe(), "AsessUser")
    browser_e, browser_a = emmett_app.test_client(), asess_app.test_client()

    with caplog.at_level(logging.WARNING, logger="asess.emmett"):
        assert browser_a.get("/login").data == "in"
    assert "AsessUserRow is stored in the session as an sdict" in caplog.text
    expected = f"ann@example.com|1|sdict|datetime|True|{REMEMBER}"
    assert browser_a.get("/me").data == expected

    move_cookies(browser_a, browser_e)
    assert browser_e.get("/me").data == expected
    # Emmett adds to the session; asess reads both back.
    assert browser_e.get("/counter").data == "1"
    move_cookies(browser_e, browser_a)
    assert browser_a.get("/counter").data == "2"
    assert browser_a.get("/me").data == expected


@pytest.mark.parametrize("level", [0, 6])
def test_both_directions_with_plain_data(tmp_path: Path, level: int) -> None:
    """Datetimes, nested sdicts, sets and numbers, with and without compression."""
    apps = []
    for where, make in (("emmett", emmett_pipe), ("asess", asess_pipe)):
        app = new_app(tmp_path / where, APP_NAME)
        app.pipeline = [make(compression_level=level)()]

        @app.route("/write")
        async def write() -> str:
            session.data = sdict(
                when=dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone.utc),
                tags={"a", "b"},
                scores=[1, 2.5, None],
                inner=sdict(flag=True),
            )
            return "ok"

        @app.route("/read")
        async def read() -> str:
            data = session.data
            return repr(
                (data.when, sorted(data.tags), data.scores, data.inner.flag, type(data.inner))
            )

        apps.append(app)
    emmett_client, asess_client = (app.test_client() for app in apps)
    expected = repr(
        (
            dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone.utc),
            ["a", "b"],
            [1, 2.5, None],
            True,
            sdict,
        )
    )
    for writer, reader in ((emmett_client, asess_client), (asess_client, emmett_client)):
        writer.cookie_jar.clear()
        assert writer.get("/write").data == "ok"
        move_cookies(writer, reader)
        assert reader.get("/read").data == expected


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cookies-legacy"])
def test_auth_login_on_json_backends(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Stores that hold JSON keep the login too: the row is flattened to an sdict."""
    app = auth_app(tmp_path, pipe_factory(backend, request))
    browser = app.test_client()
    assert browser.get("/login").data == "in"
    expected = f"ann@example.com|1|sdict|datetime|True|{REMEMBER}"
    assert browser.get("/me").data == expected
    assert app.test_client().get("/me").data == "anonymous"


def form_app(root: Path, make_pipe: Any) -> Any:
    app = new_app(root, APP_NAME)
    app.pipeline = [make_pipe()]

    @app.route("/form", methods=["get", "post"])
    async def form() -> str:
        form = await Form({"name": Field()})
        if form.accepted:
            return f"accepted {form.params.name}"
        return str(form)

    return app


def test_a_form_opened_on_one_side_is_accepted_on_the_other(tmp_path: Path) -> None:
    """Emmett's CSRF storage (``session._csrf``) round-trips as itself."""
    emmett_browser = form_app(tmp_path / "emmett", emmett_pipe()).test_client()
    asess_browser = form_app(tmp_path / "asess", asess_pipe()).test_client()
    for opener, submitter in ((emmett_browser, asess_browser), (asess_browser, emmett_browser)):
        opener.cookie_jar.clear()
        page = opener.get("/form").data
        token = re.search(r'name="_csrf_token" type="hidden" value="([^"]+)"', page)
        assert token is not None, page
        move_cookies(opener, submitter)
        answer = submitter.post("/form", data={"name": "ann", "_csrf_token": token.group(1)})
        assert answer.data == "accepted ann"
