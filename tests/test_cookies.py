"""Cookie attributes, parsing, chunking: every Set-Cookie line is built in asess._cookies."""

import pytest

from asess import ConfigurationError, SessionManager, SessionTooLarge
from asess._cookies import (
    COOKIE_LINE_LIMIT,
    MAX_COOKIE_HEADER,
    CookieSettings,
    join_chunks,
    parse_cookie_header,
    render_set_cookies,
)

from .helpers import client, cookie_value, set_cookies


def settings(**kw):
    base = dict(name="s", secure=False, samesite="Lax", domain=None, cookie_data=None, max_chunks=3)
    base.update(kw)
    return CookieSettings.build(**base)


def test_defaults_are_httponly_lax_path_root():
    line = render_set_cookies("v", settings(), 60, set())[0]
    assert line.startswith("s=v; Path=/; Max-Age=60; Expires=")
    assert "; HttpOnly" in line and line.endswith("SameSite=Lax")
    assert "Secure" not in line and "Domain" not in line


async def test_every_parameter_reaches_the_set_cookie_header():
    manager = SessionManager.memory(
        expire=120,
        secure=True,
        samesite="Strict",
        domain="example.org",
        cookie_name="sid",
        cookie_data={"path": "/app", "priority": "High", "partitioned": True},
    )
    async with client(manager) as c:
        line = set_cookies(await c.get("https://testserver/"))[0]
    assert line.startswith("sid=")
    for part in (
        "Path=/app",
        "Max-Age=120",
        "Domain=example.org",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Priority=High",
        "Partitioned",
        "Expires=",
    ):
        assert f"; {part}" in line, part


def test_cookie_data_overrides_and_removes_attributes():
    line = render_set_cookies(
        "v", settings(cookie_data={"httponly": False, "samesite": None}), 5, set()
    )[0]
    assert "HttpOnly" not in line and "SameSite" not in line


def test_browser_session_cookie_has_no_max_age():
    line = render_set_cookies("v", settings(), None, set())[0]
    assert "Max-Age" not in line and "Expires" not in line


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"samesite": "sometimes"}, "samesite"),
        ({"samesite": "None"}, "secure=True"),
        ({"name": "bad name"}, "cookie_name"),
        ({"name": "semi;colon"}, "cookie_name"),
        ({"max_chunks": 0}, "max_cookie_chunks"),
        ({"cookie_data": {"path": "/a;b"}}, "';'"),
    ],
)
def test_bad_cookie_settings_are_configuration_errors(kw, message):
    with pytest.raises(ConfigurationError, match=message):
        settings(**kw)


def test_samesite_none_with_secure_is_fine():
    assert (
        "SameSite=None"
        in render_set_cookies("v", settings(samesite="none", secure=True), 1, set())[0]
    )


def test_parse_picks_names_and_unquotes():
    header = 'other=1; s="abc="; s.1=def; junk; s.2 = ghi'
    found = parse_cookie_header(header, ["s", "s.1", "s.2"])
    assert found == {"s": "abc=", "s.1": "def", "s.2": "ghi"}
    assert join_chunks(found, settings()) == "abc=defghi"


def test_oversized_header_is_ignored_without_parsing():
    header = "s=" + "a" * (MAX_COOKIE_HEADER + 1)
    assert parse_cookie_header(header, ["s"]) == {}


def test_join_requires_the_first_chunk_and_stops_at_a_gap():
    assert join_chunks({"s.1": "x"}, settings()) is None
    assert join_chunks({"s": "a", "s.2": "c"}, settings()) == "a"


def test_chunks_keep_every_line_within_4096_bytes():
    value = "x" * 10000
    lines = render_set_cookies(value, settings(domain="example.org"), 3600, set())
    assert len(lines) == 3
    assert all(len(line) <= COOKIE_LINE_LIMIT - 2 for line in lines)
    found = {ln.partition("=")[0]: ln.partition("=")[2].partition(";")[0] for ln in lines}
    assert join_chunks(found, settings()) == value


def test_stale_chunks_are_expired():
    lines = render_set_cookies("short", settings(), 60, {"s", "s.1", "s.2"})
    assert lines[0].startswith("s=short;")
    expired = [ln for ln in lines[1:]]
    assert [ln.partition("=")[0] for ln in expired] == ["s.1", "s.2"]
    assert all("Max-Age=0" in ln for ln in expired)


def test_too_large_names_sizes():
    with pytest.raises(SessionTooLarge, match=r"needs 20000 bytes .* 3 cookies"):
        render_set_cookies("x" * 20000, settings(), 60, set())


async def test_forged_cookie_is_never_adopted():
    manager = SessionManager.memory()
    async with client(manager) as c:
        c.cookies.set("asess_session", "A" * 43)
        r = await c.get("/")
        assert r.text == "1"
        assert cookie_value(r, "asess_session") != "A" * 43


def test_parser_skips_headers_without_the_name_and_keeps_the_first_of_each():
    settings = CookieSettings(name="sess", max_chunks=3)
    assert parse_cookie_header("a=1; b=2; _ga=GA1.2", settings.wanted) == {}
    header = 'x=1; sess="v1"; sess.1=v2; sess.2=v3; sess=late; sess.1=late'
    assert parse_cookie_header(header, settings.wanted) == {
        "sess": "v1",
        "sess.1": "v2",
        "sess.2": "v3",
    }


def test_one_line_fast_path_matches_the_chunking_loop():
    settings = CookieSettings(name="sess", max_chunks=3)
    attrs = settings.attributes(3600, 1_700_000_000.0)
    room = 4096 - len("sess") - 1 - len(attrs) - 2
    for value, present in [
        ("v" * room, set()),
        ("v" * room, {"sess"}),
        ("v" * (room + 1), {"sess"}),  # two chunks
        ("v" * 10, {"sess", "sess.1"}),  # a stale chunk to expire
        ("v" * 10, {"sess.2"}),
    ]:
        lines = render_set_cookies(value, settings, 3600, present, 1_700_000_000.0)
        names = [line.partition("=")[0] for line in lines]
        assert (
            "".join(
                line.partition("=")[2].split(";")[0] for line in lines if "Max-Age=0" not in line
            )
            == value
        )
        assert set(names) >= present
