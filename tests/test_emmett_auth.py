"""Emmett's own Auth, unchanged, on every asess backend, through Emmett's test client.

The app is what an Emmett user writes: ``Auth`` with its ``AuthPipe`` and
routes, a ``Mailer`` that keeps mails instead of sending them, a SQLite
database, and the session pipe from :mod:`asess.emmett` in place of Emmett's.
Auth flashes lazy translations (``T("...")``) and keeps CSRF tokens, the
user's row and datetimes in the session, so every flow below goes through the
session types Emmett itself stores: registration with email verification,
login, logout, password change, password retrieval and reset.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from emmett.language.helpers import Tstr
from emmett.orm import Database
from emmett.tools import Mailer
from emmett.tools.auth import Auth, AuthUser
from emmett.tools.auth import models as auth_models
from emmett_core.datastructures import sdict

from tests.emmett_helpers import new_app, pipe_factory

AUTH_BACKENDS = ["cookies-legacy", "cookies-modern", "files", "redis"]
EMAIL = "nina@example.com"
PASSWORD = "first-secret-1"

# The one page Auth renders (single_template): its flashes, then its form.
AUTH_TEMPLATE = """{{for message in current.response.alerts(category_filter='auth'):}}
<p class="flash">{{=message}}</p>
{{pass}}
{{=form}}
"""


class AuthApp:
    """An Emmett app with Auth on one backend, a browser, and the outbox."""

    def __init__(self, root: Path, make_pipe: Any) -> None:
        app = new_app(root)
        (root / "templates" / "auth").mkdir(parents=True, exist_ok=True)
        (root / "templates" / "auth" / "auth.html").write_text(AUTH_TEMPLATE)
        app.config.mailer.sender = "app@example.com"
        app.config.mailer.suppress = True
        app.config.auth.single_template = True
        app.config.auth.hmac_key = "auth-test-hmac"
        app.config.db.uri = "sqlite://auth.db"
        self.mailer = Mailer(app)
        # Emmett names each model's row class after the model, process-wide.
        self.user = type(f"User{uuid.uuid4().hex[:8]}", (AuthUser,), {"__module__": __name__})
        self.db = Database(app, auto_migrate=True)
        self.auth = Auth(app, self.db, user_model=self.user)
        app.pipeline = [make_pipe(), self.db.pipe, self.auth.pipe]
        self.auth.module(__name__)
        self.app = app
        self.browser = app.test_client()

    def csrf_token(self, path: str) -> str:
        """Open a form page; the token Emmett's form put in the session."""
        response = self.browser.get(path)
        assert response.status == 200, response.data
        tokens = response.context.session._csrf
        assert tokens, "the form stored no CSRF token in the session"
        return str(list(tokens)[-1])

    def submit(self, path: str, data: dict[str, str]) -> Any:
        data = {**data, "_csrf_token": self.csrf_token(path)}
        response = self.browser.post(path, data=data, follow_redirects=True)
        assert response.status == 200, response.data
        return response

    def mailed_link(self, mailbox: list[Any], route: str) -> str:
        assert len(mailbox) == 1
        found = re.search(rf"http://localhost(/auth/{route}/\S+)", str(mailbox[0]))
        assert found is not None, str(mailbox[0])
        return found.group(1)

    def register(self) -> Any:
        """Register and verify the email, as a user does; the verification page."""
        with self.mailer.store_mails() as mailbox:
            page = self.submit(
                "/auth/registration",
                {
                    "email": EMAIL,
                    "first_name": "Nina",
                    "last_name": "Sharp",
                    "password": PASSWORD,
                    "password2": PASSWORD,
                },
            )
            assert "We sent you an email, check your inbox" in page.data
            assert mailbox[0].subject == "Email verification"
            link = self.mailed_link(mailbox, "email_verification")
        return self.browser.get(link, follow_redirects=True)

    def login(self, password: str = PASSWORD) -> Any:
        return self.submit("/auth/login", {"email": EMAIL, "password": password})

    def stored_password_is(self, password: str) -> bool:
        with self.db.connection():
            row = self.user.get(email=EMAIL)
            hashed = self.user.table.password.requires[-1](password)[0]
            return bool(row.password == hashed)


@pytest.fixture(params=AUTH_BACKENDS)
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AuthApp:
    # Each Auth wraps its models' class-level form labels in T() again, so a
    # second Auth in one process renders T(T("E-mail")) and fails, with
    # Emmett's own session manager too: put the plain labels back afterwards.
    for model in vars(auth_models).values():
        if isinstance(model, type) and "form_labels" in vars(model):
            plain = {key: _untranslated(label) for key, label in model.form_labels.items()}
            monkeypatch.setattr(model, "form_labels", plain)
    return AuthApp(tmp_path, pipe_factory(request.param, request))


def _untranslated(label: Any) -> Any:
    while isinstance(getattr(label, "text", None), (str, Tstr)):
        label = label.text
    return label


def flashes(page: Any) -> list[str]:
    return re.findall(r'<p class="flash">(.*?)</p>', page.data)


def test_registration_with_email_verification(site: AuthApp) -> None:
    page = site.register()
    # Auth flashed T("Account verification completed"): rendered on the next page.
    assert flashes(page) == ["Account verification completed"]
    assert "Sign in" in page.data
    with site.db.connection():
        assert site.user.get(email=EMAIL).registration_key == ""


def test_registration_flash_is_a_translation_until_rendered(site: AuthApp) -> None:
    with site.mailer.store_mails():
        site.browser.get("/auth/registration")
        token = site.csrf_token("/auth/registration")
        form = {"email": EMAIL, "first_name": "N", "last_name": "S"}
        form.update(password=PASSWORD, password2=PASSWORD, _csrf_token=token)
        response = site.browser.post("/auth/registration", data=form)
    assert response.status == 303
    # The redirect's session holds Emmett's T() as a T(), not yet a string.
    category, message = response.context.session._flashes[0]
    assert (category, type(message).__name__) == ("auth", "Tstr")
    assert message.text == "We sent you an email, check your inbox"


def test_login_shows_the_profile_and_keeps_the_user(site: AuthApp) -> None:
    site.register()
    page = site.login()
    assert "Nina" in page.data and "Sharp" in page.data and "Save" in page.data
    auth = page.context.session.auth
    assert auth.user.email == EMAIL and auth.remember is False
    # What Auth stores: an sdict with the user's row (kept as an sdict of its
    # fields), naive datetimes, the lifetime and the "remember me" flag.
    assert type(auth) is sdict and type(auth.user) is sdict and "password" not in auth.user
    assert type(auth.last_visit) is dt.datetime and auth.last_visit.tzinfo is None
    assert site.auth.ext.config.session_expiration == auth.expiration
    # The next request still knows the user (AuthPipe re-reads the session).
    assert "Nina" in site.browser.get("/auth/profile").data


def test_a_wrong_password_is_refused(site: AuthApp) -> None:
    site.register()
    page = site.login("not-the-password")
    assert "Invalid credentials" in page.data
    assert page.context.session.auth is None


def test_logout_forgets_the_user(site: AuthApp) -> None:
    site.register()
    site.login()
    page = site.browser.get("/auth/logout", follow_redirects=True)
    assert page.status == 200
    assert page.context.session.auth is None
    # Logged out: the profile redirects to the login page.
    after = site.browser.get("/auth/profile", follow_redirects=True)
    assert "Sign in" in after.data and "Save" not in after.data


def test_password_change(site: AuthApp) -> None:
    site.register()
    site.login()
    page = site.submit(
        "/auth/password_change",
        {"old_password": PASSWORD, "new_password": "second-2", "new_password2": "second-2"},
    )
    assert flashes(page) == ["Password changed successfully"]
    assert "Nina" in page.data and "Save" in page.data
    assert site.stored_password_is("second-2")


def test_password_retrieval_and_reset(site: AuthApp) -> None:
    site.register()
    with site.mailer.store_mails() as mailbox:
        page = site.submit("/auth/password_retrieval", {"email": EMAIL})
        assert flashes(page) == ["We sent you an email, check your inbox"]
        assert mailbox[0].subject == "Password reset requested"
        link = site.mailed_link(mailbox, "password_reset")
    form_page = site.browser.get(link, follow_redirects=True)
    assert "Reset password" in form_page.data
    token = list(form_page.context.session._csrf)[-1]
    page = site.browser.post(
        link,
        data={"password": "third-3", "password2": "third-3", "_csrf_token": token},
        follow_redirects=True,
    )
    assert flashes(page) == ["Password changed successfully"]
    assert "Sign in" in page.data
    assert site.stored_password_is("third-3")
    assert "Nina" in site.login("third-3").data


# A store bound to no loop: the manager is driven from a second loop below.
@pytest.mark.parametrize("server_side", ["files"])
def test_emmett_auth_logins_are_listed_and_revocable_without_configuration(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_side: str,
) -> None:
    """asess.emmett's server-side factories follow Auth's layout (session.auth.user.id)."""
    import asyncio

    for model in vars(auth_models).values():
        if isinstance(model, type) and "form_labels" in vars(model):
            plain = {key: _untranslated(label) for key, label in model.form_labels.items()}
            monkeypatch.setattr(model, "form_labels", plain)
    pipes: list[Any] = []
    make = pipe_factory(server_side, request)

    def remember() -> Any:
        pipes.append(make())
        return pipes[-1]

    site = AuthApp(tmp_path, remember)
    manager = pipes[0].manager

    def run(coro: Any) -> Any:
        # A loop of its own, leaving the one Emmett's test client uses alone.
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()

    site.register()
    site.login()
    with site.db.connection():
        user_id = site.user.get(email=EMAIL).id
    listed = run(manager.sessions_of(user_id))
    assert len(listed) == 1
    assert "Nina" in site.browser.get("/auth/profile").data
    assert run(manager.revoke_user(user_id)) == 1
    after = site.browser.get("/auth/profile", follow_redirects=True)
    assert "Sign in" in after.data  # the revoked session is gone: logged out
    assert run(manager.sessions_of(user_id)) == []
