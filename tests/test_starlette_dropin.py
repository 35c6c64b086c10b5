"""asess.starlette.SessionMiddleware behaves as Starlette's own does, with asess sessions.

Each rule below is Starlette 1.10's, checked where possible against Starlette's
real middleware running the same app: the constructor's signature, the
Set-Cookie attributes byte for byte, when a cookie and ``Vary`` are sent, and
the ``Session`` flags. What differs is asess's on purpose: the token format,
nested-change detection, regenerate, and server-side stores via ``manager=``.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Any

import pytest
import starlette.middleware.sessions as real
from starlette.datastructures import Secret
from starlette.testclient import TestClient

import asess
from asess import ConfigurationError, SessionManager
from asess.starlette import Session, SessionMiddleware

from .starlette_apps import attributes, client, make_app

KEY = "a-long-random-secret-for-the-drop-in-tests"


def test_the_signature_is_starlettes_plus_keyword_only_extras() -> None:
    ours = list(inspect.signature(SessionMiddleware).parameters.values())
    theirs = list(inspect.signature(real.SessionMiddleware).parameters.values())
    assert [(p.name, p.default, p.kind) for p in ours[: len(theirs)]] == [
        (p.name, p.default, p.kind) for p in theirs
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs) :])
    assert {p.name for p in ours[len(theirs) :]} == {"manager", "migrate"}
    built = SessionMiddleware(make_app, KEY, "sid", 60, "/app")
    assert (built.session_cookie, built.max_age, built.path) == ("sid", 60, "/app")


CONFIGS: list[dict[str, Any]] = [
    {},
    {"max_age": None},
    {"max_age": 0},
    {"max_age": -1},
    {"max_age": 60, "path": "/", "same_site": "strict"},
    {"https_only": True, "same_site": "none", "partitioned": True},
    {"domain": ".example.com", "https_only": True},
    {"partitioned": True},
    {"same_site": "Strict"},  # Starlette writes the spelling it was given
]


@pytest.mark.parametrize(
    "options", CONFIGS, ids=lambda o: ",".join(map(str, o.items())) or "default"
)
async def test_set_cookie_lines_have_starlettes_attributes(options: dict[str, Any]) -> None:
    base = "https://testserver" if options.get("https_only") else "http://testserver"
    lines: dict[str, list[str]] = {}
    for name, middleware in (("theirs", real.SessionMiddleware), ("ours", SessionMiddleware)):
        async with client(make_app(middleware, secret_key=KEY, **options), base) as c:
            written = await c.post("/put", json={"a": 1})
            c.cookies.set("session", _value(written.headers["set-cookie"]))
            cleared = await c.post("/clear")
            lines[name] = [written.headers["set-cookie"], cleared.headers.get("set-cookie", "")]
    assert lines["ours"][0].startswith("session=as1.")
    assert attributes(lines["ours"][0]) == attributes(lines["theirs"][0])
    if options.get("max_age", 1) is None or options.get("max_age", 1) > 0:
        # Deleting looks the same too, value included. (With max_age <= 0 the cookie
        # is refused when it comes back, so there is nothing to delete; Starlette
        # still accepts a max_age=0 cookie within the second it was signed.)
        assert lines["ours"][1] == lines["theirs"][1]
        assert lines["ours"][1].startswith("session=null; path=/; expires=Thu, 01 Jan 1970")


def _value(line: str) -> str:
    return line.partition("=")[2].partition(";")[0]


async def test_round_trip_read_only_requests_send_no_cookie_and_vary_follows_access() -> None:
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        first = await c.post("/put", json={"some": "data"})
        assert "cookie" in first.headers["vary"].lower()
        read = await c.get("/view")
        assert read.json() == {"some": "data"}
        assert "set-cookie" not in read.headers
        assert "cookie" in read.headers["vary"].lower()
        untouched = await c.get("/idle")
        assert "set-cookie" not in untouched.headers and "vary" not in untouched.headers


async def test_request_session_is_an_asess_session_with_nested_changes_and_regenerate() -> None:
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        await c.post("/put", json={"items": []})
        token = c.cookies["session"]
        nested = await c.post("/append")
        # Starlette's own middleware would miss this change and send nothing.
        assert nested.json() == {"items": [0]}
        assert c.cookies["session"] != token
        assert (await c.get("/view")).json() == {"items": [0]}
        before = c.cookies["session"]
        assert (await c.post("/login")).json() == {"items": [0], "user": "ada"}
        assert c.cookies["session"] != before


async def test_the_cookie_is_keyed_from_secret_key() -> None:
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        await c.post("/put", json={"a": 1})
        token = c.cookies["session"]
    for key, seen in ((KEY, {"a": 1}), ("another-key-entirely", {})):
        async with client(make_app(SessionMiddleware, secret_key=key)) as c:
            c.cookies.set("session", token)
            assert (await c.get("/view")).json() == seen


async def test_the_token_is_bound_to_the_cookie_name() -> None:
    async with client(make_app(SessionMiddleware, secret_key=KEY, session_cookie="a")) as c:
        await c.post("/put", json={"x": 1})
        token = c.cookies["a"]
    async with client(make_app(SessionMiddleware, secret_key=KEY, session_cookie="b")) as c:
        c.cookies.set("b", token)
        assert (await c.get("/view")).json() == {}


async def test_secret_key_may_be_starlettes_secret() -> None:
    async with client(make_app(SessionMiddleware, secret_key=Secret(KEY))) as c:
        await c.post("/put", json={"a": 1})
        token = c.cookies["session"]
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        c.cookies.set("session", token)
        assert (await c.get("/view")).json() == {"a": 1}


@pytest.mark.parametrize("max_age", [0, -1])
async def test_a_zero_or_negative_max_age_lasts_one_request(max_age: int) -> None:
    async with client(make_app(SessionMiddleware, secret_key=KEY, max_age=max_age)) as c:
        written = await c.post("/put", json={"a": 1})
        assert f"; Max-Age={max_age}; " in written.headers["set-cookie"]
        c.cookies.set("session", _value(written.headers["set-cookie"]))
        assert (await c.get("/view")).json() == {}


async def test_max_age_none_is_a_browser_session_cookie_that_still_works() -> None:
    async with client(make_app(SessionMiddleware, secret_key=KEY, max_age=None)) as c:
        written = await c.post("/put", json={"a": 1})
        assert "max-age" not in written.headers["set-cookie"].lower()
        assert (await c.get("/view")).json() == {"a": 1}


async def test_max_age_is_the_tokens_lifetime() -> None:
    app = make_app(SessionMiddleware, secret_key=KEY, max_age=60)
    # The token carries its expiry: decode it at a later time through the store.
    async with client(app) as c:
        await c.post("/put", json={"a": 1})
        token = c.cookies["session"]
    middleware = app.build_middleware_stack()
    while not isinstance(middleware, SessionMiddleware):
        middleware = middleware.app
    store = middleware.manager.store
    assert isinstance(store, asess._backends.cookie.CookieStore)
    record = await store.decode(token, time.time())
    assert record is not None and record.expires_at is not None
    assert 0 < record.expires_at - record.issued_at == 60
    assert await store.decode(token, record.expires_at + 1) is None


async def test_a_websocket_sees_the_session() -> None:
    app = make_app(SessionMiddleware, secret_key=KEY)
    with TestClient(app) as c:
        c.post("/put", json={"a": 1})
        with c.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"a": 1}


async def test_a_server_side_store_through_manager() -> None:
    manager = SessionManager.memory(expire=600)
    app = make_app(SessionMiddleware, secret_key=KEY, manager=manager)
    async with client(app) as c:
        written = await c.post("/put", json={"a": 1})
        line = written.headers["set-cookie"]
        assert re.fullmatch(r"session=[\w-]+; path=/; Max-Age=600; httponly; samesite=lax", line)
        assert not c.cookies["session"].startswith("as1.")
        assert (await c.get("/view")).json() == {"a": 1}
        assert await manager.store.read(c.cookies["session"], 600, asess.SystemClock().now())


def test_manager_with_a_conflicting_max_age_or_cookie_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="expire"):
        SessionMiddleware(make_app, KEY, max_age=60, manager=SessionManager.memory(expire=600))
    with pytest.raises(ConfigurationError, match="cookie_name"):
        SessionMiddleware(make_app, KEY, manager=SessionManager.memory(cookie_name="sid"))
    with pytest.raises(ConfigurationError, match="SessionManager"):
        SessionMiddleware(make_app, KEY, manager=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"secret_key": ""}, "secret_key"),
        ({"secret_key": KEY, "same_site": "sideways"}, "samesite"),
        ({"secret_key": KEY, "max_age": "3600"}, "max_age"),
        ({"secret_key": KEY, "session_cookie": "bad name"}, "cookie_name"),
    ],
)
def test_bad_arguments_are_configuration_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SessionMiddleware(make_app, **options)


# -- the Session class: Starlette's flags, checked against Starlette's own class -----

OPERATIONS: list[tuple[str, Any]] = [
    ("set", lambda s: s.__setitem__("c", 3)),
    ("del", lambda s: s.__delitem__("a")),
    ("clear", lambda s: s.clear()),
    ("pop existing", lambda s: s.pop("a")),
    ("pop missing", lambda s: s.pop("missing", None)),
    ("popitem", lambda s: s.popitem()),
    ("setdefault missing", lambda s: s.setdefault("z", 0)),
    ("setdefault existing", lambda s: s.setdefault("a", 0)),
    ("update", lambda s: s.update({"b": 2})),
    ("ior", lambda s: s.__ior__({"b": 2})),
    ("get", lambda s: s.get("a")),
    ("read", lambda s: s["a"]),
    ("iterate", lambda s: list(s)),
    ("mark_accessed", lambda s: s.mark_accessed()),
    ("mark_modified", lambda s: s.mark_modified()),
]


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_session_flags_follow_starlettes_rules(name: str, operation: Any) -> None:
    theirs, ours = real.Session({"a": 1, "b": 2}), Session({"a": 1, "b": 2})
    assert (ours.accessed, ours.modified) == (False, False)
    assert operation(ours) == operation(theirs)
    assert (ours.accessed, ours.modified) == (theirs.accessed, theirs.modified)
    assert dict(ours) == dict(theirs)


def test_session_is_built_like_a_dict_and_sees_nested_changes() -> None:
    assert dict(Session()) == {}
    assert dict(Session(a=1)) == {"a": 1}
    assert dict(Session([("a", 1)])) == {"a": 1}
    session = Session({"cart": []})
    assert isinstance(session, asess.Session) and isinstance(session, dict)
    session["cart"].append(1)
    assert session.modified  # Starlette's own Session says False here
    assert not session.accessed


async def test_reading_through_asess_session_also_earns_vary() -> None:
    # Starlette marks access in request.session; asess.session reaches the same
    # object without that property and must still add Vary: Cookie.
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def proxy(request: Any) -> PlainTextResponse:
        return PlainTextResponse(str(asess.session.get("a")))

    app = Starlette(
        routes=[Route("/proxy", proxy)],
        middleware=[Middleware(SessionMiddleware, secret_key=KEY)],
    )
    async with client(app) as c:
        response = await c.get("/proxy")
        assert response.text == "None" and response.headers["vary"] == "Cookie"


async def test_asess_secret_is_unwrapped_like_the_str_it_holds() -> None:
    async with client(make_app(SessionMiddleware, secret_key=asess.Secret(KEY))) as c:
        await c.post("/put", json={"a": 1})
        token = c.cookies["session"]
    async with client(make_app(SessionMiddleware, secret_key=KEY)) as c:
        c.cookies.set("session", token)
        assert (await c.get("/view")).json() == {"a": 1}
