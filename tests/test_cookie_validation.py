"""Cookie attributes and factory arguments are validated at construction, never at response time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from asess import ConfigurationError, SessionManager
from asess._cookies import CookieSettings, expire_cookies, render_set_cookies

from .helpers import client, set_cookies

NOW = 1_700_000_000.0


def settings(**kw: Any) -> CookieSettings:
    base: dict[str, Any] = dict(
        name="s", secure=False, samesite="Lax", domain=None, cookie_data=None, max_chunks=3
    )
    base.update(kw)
    return CookieSettings.build(**base)


def attributes(line: str) -> list[str]:
    return [part.partition("=")[0] for part in line.split("; ")[1:]]


@pytest.mark.parametrize(
    "cookie_data, named",
    [
        ({"priority": "High; SameSite=None"}, "priority"),
        ({"priority": "High\r\nSet-Cookie: x=1"}, "priority"),
        ({"path": "/a\nb"}, "path"),
        ({"path": "/caf\u00e9"}, "path"),
        ({"domain": "ex\u00e4mple.org"}, "domain"),
        ({"domain": "example.org; Secure"}, "domain"),
        ({"comment": "\u2603"}, "comment"),
        ({"expires": "Thu, 01 Jan 2099; SameSite=None"}, "expires"),
        ({"max_age": "10; Secure"}, "max_age"),
        ({"max_age": -1}, "Max-Age"),
        ({"secure": "yes"}, "secure"),
        ({"httponly": 0}, "httponly"),
        ({"partitioned": "true"}, "partitioned"),
        ({"priority": ["High"]}, "priority"),
        ({1: "x"}, "key 1"),
    ],
)
def test_injection_and_unsendable_values_are_refused_at_construction(
    cookie_data: dict[Any, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        settings(cookie_data=cookie_data)


@pytest.mark.parametrize("domain", ["ex\u00e4mple.org", "a b.org", "x;y", "evil.org\r\n"])
def test_the_domain_argument_is_validated(domain: str) -> None:
    with pytest.raises(ConfigurationError, match="domain"):
        settings(domain=domain)


def test_samesite_none_is_checked_on_the_final_attributes() -> None:
    with pytest.raises(ConfigurationError, match="secure=True"):
        settings(secure=True, samesite="None", cookie_data={"secure": False})
    with pytest.raises(ConfigurationError, match="secure=True"):
        settings(cookie_data={"samesite": "None"})
    line = render_set_cookies(
        "v", settings(cookie_data={"samesite": "None", "secure": True}), 60, set(), NOW
    )[0]
    assert "; Secure" in line and "; SameSite=None" in line


def test_max_age_and_expires_overrides_replace_not_repeat() -> None:
    line = render_set_cookies("v", settings(cookie_data={"max_age": 120}), 60, set(), NOW)[0]
    names = attributes(line)
    assert names.count("Max-Age") == 1 and names.count("Expires") == 1
    assert "; Max-Age=120" in line
    line = render_set_cookies(
        "v", settings(cookie_data={"Expires": "Thu, 01 Jan 2099 00:00:00 GMT"}), 60, set(), NOW
    )[0]
    assert attributes(line).count("Expires") == 1 and "Expires=Thu, 01 Jan 2099" in line
    line = render_set_cookies("v", settings(cookie_data={"expires": None}), 60, set(), NOW)[0]
    assert "Expires" not in line and "; Max-Age=60" in line


def test_overrides_never_turn_a_deletion_into_a_live_cookie() -> None:
    s = settings(cookie_data={"max_age": 10**6, "expires": "Thu, 01 Jan 2099 00:00:00 GMT"})
    (line,) = expire_cookies(["s.1"], s)
    assert "; Max-Age=0" in line and "Expires=Thu, 01 Jan 1970" in line
    assert attributes(line).count("Max-Age") == 1


def test_every_attribute_once_in_a_real_response() -> None:
    async def run() -> list[str]:
        manager = SessionManager.memory(cookie_data={"max_age": 300, "path": "/", "domain": None})
        async with client(manager) as c:
            return set_cookies(await c.get("/"))

    import asyncio

    (line,) = asyncio.run(run())
    names = attributes(line)
    assert sorted(names) == sorted(set(names)), line
    line.encode("latin-1")


# -- wrong types in the factories -----------------------------------------------------

FACTORY_CASES = [
    ("cookies", {"key": None}, "key=<NoneType>"),
    ("cookies", {"key": 1234}, "key=<int>"),
    ("cookies", {"key": ["good-secret", 5]}, "key=<list>"),
    ("cookies", {"key": "k", "cookie_data": [("path", "/")]}, "cookie_data"),
    ("cookies", {"key": "k", "domain": 5}, "domain"),
    ("cookies", {"key": "k", "secure": "false"}, "secure"),
    ("cookies", {"key": "k", "secure": None}, "secure"),
    ("cookies", {"key": "k", "expire": 60.5}, "expire"),
    ("cookies", {"key": "k", "expire": True}, "expire"),
    ("cookies", {"key": "k", "max_age": 1.5}, "max_age"),
    ("cookies", {"key": "k", "samesite": 1}, "samesite"),
    ("cookies", {"key": "k", "cookie_name": 7}, "cookie_name"),
    ("cookies", {"key": "k", "encryption_mode": None}, "encryption_mode"),
    ("cookies", {"key": "k", "compression_level": "9"}, "compression_level"),
    ("cookies", {"key": "k", "compression_level": 9.0}, "compression_level"),
    ("cookies", {"key": "k", "max_cookie_chunks": "3"}, "max_cookie_chunks"),
    ("cookies", {"key": "k", "accept_emmett_tokens": "no"}, "accept_emmett_tokens"),
    ("memory", {"expire": "3600"}, "expire"),
    ("memory", {"locking": "yes"}, "locking"),
    ("memory", {"cookie_data": "path=/"}, "cookie_data"),
    ("files", {"path": 5}, "path"),
    ("files", {"lock_timeout": "10"}, "lock_timeout"),
    ("files", {"gc_probability": None}, "gc_probability"),
    ("files", {"fsync": 1}, "fsync"),
    ("files", {"filename_template": None}, "filename_template"),
    ("redis", {"redis": "redis://127.0.0.1:1", "prefix": None}, "prefix"),
    ("redis", {"redis": "redis://127.0.0.1:1", "autopipeline": "on"}, "autopipeline"),
]


@pytest.mark.parametrize("factory, kw, named", FACTORY_CASES)
def test_wrong_types_are_configuration_errors_naming_the_argument(
    factory: str, kw: dict[str, Any], named: str, tmp_path: Path
) -> None:
    if factory == "files":
        kw = {"path": tmp_path, **kw}
    with pytest.raises(ConfigurationError, match=re.escape(named)) as caught:
        getattr(SessionManager, factory)(**kw)
    assert "good-secret" not in str(caught.value)  # a key list's secrets stay out of errors


@pytest.mark.parametrize("factory, kw, named", [c for c in FACTORY_CASES if c[0] != "redis"])
def test_the_emmett_adapter_checks_the_same(
    factory: str, kw: dict[str, Any], named: str, tmp_path: Path
) -> None:
    from asess.emmett import SessionManager as EmmettManager

    kw = {"cookie_name": "s", **kw} if "cookie_name" not in kw else kw
    if factory == "files":
        kw = {"path": tmp_path, **kw}
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        getattr(EmmettManager, factory)(**kw)
