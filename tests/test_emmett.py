"""The Emmett adapter in real Emmett apps, through Emmett's own test client.

The spec's three examples run verbatim with only the import line changed; then
every backend is checked for what Emmett code relies on: ``current.session``,
sdict reads, nested mappings, ``_expires_after``, copies in the test client,
chunked cookies through Emmett's response path, and a store outage.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import re
import secrets
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emmett import Form, current, redirect, request, session
from emmett.datastructures import sdict
from emmett.helpers import flash, get_flashed_messages
from emmett.orm import Field
from emmett.pipeline import Pipe
from emmett_core.http.response import HTTPResponse

from asess import SessionBackendError
from asess import SessionManager as CoreManager
from asess._backends.memory import MemoryStore
from asess.emmett import EmmettSession, SessionManager, SessionPipe
from tests.emmett_helpers import (
    BACKENDS,
    SERVER_SIDE,
    cookie_line,
    new_app,
    pipe_factory,
    redis_address,
    set_cookie_lines,
)

# -- the spec's examples, verbatim ------------------------------------------

COUNTER = """
@app.route("/counter")
async def count():
    session.counter = (session.counter or 0) + 1
    return "This is your %d visit" % session.counter
"""

SPEC_EXAMPLES = {
    "cookies": """
from emmett import App, session
from emmett.sessions import SessionManager

app = App(__name__)
app.pipeline = [SessionManager.cookies('myverysecretkey')]
""",
    "files": """
from emmett import App, session
from emmett.sessions import SessionManager

app = App(__name__)
app.pipeline = [SessionManager.files()]
""",
    "redis": """
from redis import Redis
from emmett import App, session
from emmett.sessions import SessionManager

app = App(__name__)
red = Redis(host='127.0.0.1', port=6379)
app.pipeline = [SessionManager.redis(red)]
""",
}
EMMETT_IMPORT = "from emmett.sessions import SessionManager"
ASESS_IMPORT = "from asess.emmett import SessionManager"


def load_example(source: str, root: Path) -> Any:
    """Write ``source`` as a module in ``root`` and import it (its App's root is ``root``)."""
    name = f"spec_example_{uuid.uuid4().hex[:8]}"
    path = root / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.mark.parametrize("backend", ["cookies", "files", "redis"])
def test_spec_examples_run_with_only_the_import_changed(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = SPEC_EXAMPLES[backend] + COUNTER
    assert source.count(EMMETT_IMPORT) == 1
    source = source.replace(EMMETT_IMPORT, ASESS_IMPORT)
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        if url is None:
            pytest.skip("no redis-server")
        # The test server listens on a free port, not on 6379.
        host, port = redis_address(url)
        source = source.replace("Redis(host='127.0.0.1', port=6379)", f"Redis({host!r}, {port})")
    module = load_example(source, tmp_path)
    pipe = module.app.pipeline[0]
    assert isinstance(pipe, SessionPipe)
    assert pipe.cookie_name == f"emt_session_data_{module.app.name}"

    client = module.app.test_client()
    pages = [client.get("/counter").data for _ in range(3)]
    assert pages == ["This is your 1 visit", "This is your 2 visit", "This is your 3 visit"]
    assert module.app.test_client().get("/counter").data == "This is your 1 visit"
    if backend == "redis":
        # The redis.asyncio client asess made from the example's Redis() lives
        # on the test client's event loop: close it there.
        asyncio.get_event_loop().run_until_complete(pipe.aclose())
    if backend == "files":
        # Emmett's default place and file names for file sessions.
        names = [p.name for p in (tmp_path / "sessions").iterdir()]
        assert len(names) == 2
        assert all(re.fullmatch(r"emt_[A-Za-z0-9_-]{43}\.sess", n) for n in names)


# -- one app per backend ----------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    app = new_app(tmp_path / "app")
    app.pipeline = [pipe_factory(backend, request)()]

    @app.route("/counter")
    async def count() -> str:
        session.counter = (session.counter or 0) + 1
        return "This is your %d visit" % session.counter  # noqa: UP031 - the spec's code

    @app.route("/inspect")
    async def inspect() -> str:
        assert isinstance(current.session, EmmettSession)
        current.session.marker = "set through current"
        assert session.marker == "set through current"
        assert session.missing is None
        assert session["missing"] is None
        return "ok"

    @app.route("/nested/set")
    async def nested_set() -> str:
        session.cart = {"items": [{"sku": "a1", "qty": 2}], "meta": {"seen": True}}
        session.auth = sdict(
            user=sdict(id=7, email="a@example.com"),
            last_visit=dt.datetime(2025, 1, 2, 3, 4, 5),
            remember=True,
        )
        return "ok"

    @app.route("/nested/get")
    async def nested_get() -> str:
        cart, auth = session.cart, session.auth
        assert isinstance(cart, sdict) and isinstance(cart.meta, sdict)
        assert isinstance(cart["items"][0], sdict)
        assert isinstance(auth.user, sdict)
        item, meta, user = cart["items"][0], cart.meta, auth.user
        return (
            f"{item.sku} {item.qty} {meta.seen} {meta.missing} {user.email} "
            f"{auth.last_visit.isoformat()} {auth.remember}"
        )

    @app.route("/remember")
    async def remember() -> str:
        session.user = "ann"
        session._expires_after(86400)
        return "ok"

    @app.route("/expiration")
    async def expiration() -> str:
        session._expires_after(86400)  # as Emmett's AuthPipe does on every request
        return str(session._expiration)

    @app.route("/big")
    async def big() -> str:
        session.blob = secrets.token_urlsafe(3000)
        return str(len(session.blob))

    @app.route("/form", methods=["get", "post"])
    async def form() -> str:
        form = await Form({"name": Field()})
        if form.accepted:
            return f"accepted {form.params.name}"
        return str(form)

    @app.route("/flash")
    async def flash_message() -> str:
        flash("saved!", "info")
        return "ok"

    @app.route("/flashes")
    async def flashes() -> str:
        return ",".join(f"{c}:{m}" for c, m in get_flashed_messages(with_categories=True))

    @app.route("/login")
    async def login() -> None:
        session.user = "ann"
        redirect("/whoami")

    @app.route("/whoami")
    async def whoami() -> str:
        return str(session.user)

    @app.route("/big/drop")
    async def big_drop() -> str:
        del session.blob
        return "dropped"

    @app.route("/big/check")
    async def big_check() -> str:
        return str(len(session.blob or ""))

    yield app


def test_counter_on_every_backend(app: Any) -> None:
    client = app.test_client()
    assert [client.get("/counter").data for _ in range(3)] == [
        "This is your 1 visit",
        "This is your 2 visit",
        "This is your 3 visit",
    ]
    assert app.test_client().get("/counter").data == "This is your 1 visit"


def test_cookie_name_and_attributes_follow_emmett(app: Any) -> None:
    response = app.test_client().get("/counter")
    line = cookie_line(response, f"emt_session_data_{app.name}")
    assert line is not None
    assert "; Path=/" in line and "; SameSite=Lax" in line and "; HttpOnly" in line
    assert "; Max-Age=3600" in line


def test_the_session_is_emmett_current_session_with_sdict_reads(app: Any) -> None:
    client = app.test_client()
    client.get("/counter")
    assert client.get("/inspect").data == "ok"


def test_nested_mappings_read_back_as_sdict(app: Any) -> None:
    client = app.test_client()
    client.get("/nested/set")
    page = client.get("/nested/get")
    assert page.status == 200, page.data
    assert page.data == "a1 2 True None a@example.com 2025-01-02T03:04:05 True"


def csrf_token(page: str) -> str:
    found = re.search(r'name="_csrf_token" type="hidden" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def test_forms_keep_their_csrf_tokens_in_the_session(app: Any) -> None:
    client = app.test_client()
    token = csrf_token(client.get("/form").data)
    csrf_token(client.get("/form").data)  # a second open form: two live tokens
    assert client.post("/form", data={"name": "ann", "_csrf_token": token}).data == "accepted ann"
    # A token is good once, and only in the session that holds it.
    again = client.post("/form", data={"name": "ann", "_csrf_token": token}).data
    assert not again.startswith("accepted")
    other = app.test_client()
    token = csrf_token(client.get("/form").data)
    assert not other.post("/form", data={"name": "x", "_csrf_token": token}).data.startswith("acc")


def test_a_redirect_carries_the_session_cookie(app: Any) -> None:
    client = app.test_client()
    response = client.get("/login")
    assert response.status == 303
    assert cookie_line(response, f"emt_session_data_{app.name}") is not None
    assert client.get("/login", follow_redirects=True).data == "ann"
    assert client.get("/whoami").data == "ann"


def test_flash_messages_survive_one_redirect(app: Any) -> None:
    client = app.test_client()
    client.get("/flash")
    assert client.get("/flashes").data == "info:saved!"
    assert client.get("/flashes").data == ""


def test_test_client_context_holds_an_sdict_copy(app: Any) -> None:
    client = app.test_client()
    client.get("/counter")
    copied = client.get("/counter").context.session
    assert type(copied) is sdict
    assert copied == {"counter": 2}
    assert copied.counter == 2 and copied.missing is None
    copied.counter = 99
    assert client.get("/counter").data == "This is your 3 visit"


def test_expires_after_sets_the_lifetime_emmett_pipes_ask_for(app: Any, backend: str) -> None:
    client = app.test_client()
    response = client.get("/remember")
    name = f"emt_session_data_{app.name}"
    line = cookie_line(response, name)
    assert line is not None and "; Max-Age=86400" in line
    # The lifetime travels with the session, and asking for the same one
    # again (as AuthPipe does on every request) does not force a save.
    response = client.get("/expiration")
    assert response.data == "86400"
    line = cookie_line(response, name)
    if backend in SERVER_SIDE:
        assert line is not None and "; Max-Age=86400" in line  # sliding expiry
    else:
        assert line is None  # the cookie token is unchanged: nothing re-issued


@pytest.mark.parametrize("backend", ["cookies-legacy", "cookies-modern"])
def test_large_session_is_chunked_through_emmett_response(app: Any) -> None:
    client = app.test_client()
    response = client.get("/big")
    assert response.data == "4000"
    name = f"emt_session_data_{app.name}"
    lines = set_cookie_lines(response)
    assert [line.partition("=")[0] for line in lines] == [name, f"{name}.1"]
    for line in lines:
        # Every whole header value, with room for quotes a writer may add.
        assert len(("Set-Cookie: " + line).encode()) <= 4096 + len("Set-Cookie: ")
        assert len(line.encode()) <= 4096 - 2
    assert client.get("/big/check").data == "4000"
    assert client.get("/counter").data == "This is your 1 visit"
    # Shrinking the session expires the chunk it no longer needs.
    response = client.get("/big/drop")
    assert [line.partition("=")[0] for line in set_cookie_lines(response)] == [name, f"{name}.1"]
    expired = cookie_line(response, f"{name}.1")
    assert expired is not None and "Max-Age=0" in expired
    assert client.get("/big/check").data == "0"
    assert client.get("/counter").data == "This is your 2 visit"


# -- a store outage -------------------------------------------------------


class BrokenStore(MemoryStore):
    """A memory store whose reads fail, like a Redis server that went away."""

    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        raise SessionBackendError("store is down")


def test_store_outage_answers_503_without_running_the_handler(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    app.pipeline = [SessionPipe(CoreManager(BrokenStore(), cookie_name="sid"))]
    calls: list[str] = []

    @app.route("/counter")
    async def count() -> str:
        calls.append("called")
        return "never"

    client = app.test_client()
    fresh = client.get("/counter")  # no cookie: nothing to load
    assert fresh.status == 200
    cookie = ("cookie", "sid=" + "A" * 43)
    response = client.get("/counter", headers=[cookie])
    assert response.status == 503
    assert response.data == "Session store unavailable"
    assert calls == ["called"]


def test_untouched_session_sends_nothing(app: Any) -> None:
    @app.route("/plain")
    async def plain() -> str:
        return "plain"

    response = app.test_client().get("/plain")
    assert response.data == "plain"
    assert set_cookie_lines(response) == []
    assert "vary" not in dict(response.headers)


class FailingOpen(Pipe):
    """A pipe whose open_request refuses some requests (Emmett then skips every close)."""

    async def open_request(self) -> None:
        if request.query_params.deny:
            raise HTTPResponse(403)


def test_locked_session_is_not_left_locked_by_a_failing_open(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    app.pipeline = [SessionManager.files(locking=True, lock_timeout=1.0), FailingOpen()]

    @app.route("/counter")
    async def count() -> str:
        session.counter = (session.counter or 0) + 1
        return str(session.counter)

    client = app.test_client()
    assert client.get("/counter").data == "1"
    assert client.get("/counter", query_string={"deny": "1"}).status == 403
    # Were the lock still held, this would wait lock_timeout and answer 503.
    response = client.get("/counter")
    assert (response.status, response.data) == (200, "2")
