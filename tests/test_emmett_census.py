"""Every kind of value Emmett and its tools put in a session, stored and read back on each backend.

One Emmett app per backend writes a value in one request and reads it in the
next, through Emmett's test client. What comes back is what Emmett code can
use the same way: the README's "Emmett's data types" table, case by case.
Legacy cookies pickle, so tuples, UUIDs and frozensets stay themselves there;
the JSON stores (modern cookies, files, Redis) bring those back as lists,
strings and sets. Values no store can hold raise ``SessionError`` naming them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from emmett import Form, T, now, session
from emmett.helpers import flash, get_flashed_messages
from emmett.language.helpers import Tstr
from emmett.orm import Database, Field, Model
from emmett.security import CSRFStorage
from emmett_core.datastructures import sdict

from asess import SessionError
from tests.emmett_helpers import new_app, pipe_factory

BACKENDS = ["cookies-legacy", "cookies-modern", "files", "redis"]
UTC = dt.timezone.utc
PHRASE = "the weather is fine"
TRANSLATIONS = {"it": "il tempo è bello", "de": "das Wetter ist schön"}


class Thing(Model):
    name = Field()
    made = Field.datetime()
    ready = Field.bool()
    count = Field.int()


def rome() -> dt.tzinfo:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        return zoneinfo.ZoneInfo("Europe/Rome")  # type: ignore[no-any-return]
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")


class Site:
    """The app of one backend: ``/write/<case>`` stores, ``/read/<case>`` reads back."""

    def __init__(self, root: Path, make_pipe: Any, backend: str) -> None:
        self.backend = backend
        (root / "languages").mkdir(parents=True, exist_ok=True)
        for lang, text in TRANSLATIONS.items():
            (root / "languages" / f"{lang}.json").write_text(json.dumps({PHRASE: text}))
        app = new_app(root)
        app.config.db.uri = "sqlite://census.db"
        app.language_default = "it"
        db = Database(app, auto_migrate=True)
        db.define_models(Thing)
        app.pipeline = [make_pipe(), db.pipe]
        self.app = app
        self.to_write: Any = None
        self.read: Any = None
        self.error: str | None = None

        @app.route("/write")
        async def write() -> str:
            value = self.to_write() if callable(self.to_write) else self.to_write
            session.value = value
            return "ok"

        @app.route("/save_bad")
        async def save_bad() -> str:
            session.value = self.to_write()
            try:
                await session.save()
            except SessionError as exc:
                self.error = str(exc)
            del session.value
            return "done"

        @app.route("/read")
        async def read() -> str:
            self.read = session.value
            return "ok"

        @app.route("/flash")
        async def flash_some() -> str:
            flash("saved")
            flash(T(PHRASE), "auth")
            return "ok"

        @app.route("/flashes")
        async def flashes() -> str:
            self.read = get_flashed_messages(with_categories=True)
            return "ok"

        @app.route("/form", methods=["get", "post"])
        async def form() -> str:
            form = await Form({"name": Field()})
            if form.accepted:
                return f"accepted {form.params.name}"
            return str(form)

        @app.route("/row")
        async def row() -> str:
            made = dt.datetime(2024, 5, 1, 8, 0)
            ident = Thing.create(name="box", made=made, ready=True, count=3).id
            session.value = Thing.get(ident)
            return "ok"

    def round_trip(self, value: Any) -> Any:
        """Store ``value`` (or what calling it gives, inside the request) and read it back."""
        browser = self.app.test_client()
        self.to_write = value
        assert browser.get("/write").data == "ok"
        assert browser.get("/read").data == "ok"
        return self.read

    @property
    def pickles(self) -> bool:
        return self.backend == "cookies-legacy"


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp(request.param)
    built = Site(root, pipe_factory(request.param, request), request.param)
    yield built
    built.app.language_default = "it"


def same_type_and_value(expected: Any) -> Callable[[Site, Any], None]:
    def check(site: Site, got: Any) -> None:
        assert type(got) is type(expected) and got == expected

    return check


# Values every backend brings back as themselves.
KEPT: dict[str, Any] = {
    "str": "Grüße ✓ <b>",
    "int": -(2**63),
    "float": 1.5,
    "bool": True,
    "none": None,
    "list": [1, "a", None, [2.5]],
    "bytes": b"\x00\xff",
    "datetime": dt.datetime(2024, 2, 29, 12, 30, 15, 123456),
    "datetime_utc": dt.datetime(2024, 2, 29, 12, 30, tzinfo=UTC),
    "datetime_offset": dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    "date": dt.date(2024, 2, 29),
    "time": dt.time(23, 59, 1),
    "timedelta": dt.timedelta(days=2, seconds=5, microseconds=7),
    "decimal": Decimal("12.3400"),
    "set": {1, "two"},
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_plain_values_come_back_as_themselves(site: Site, case: str) -> None:
    same_type_and_value(KEPT[case])(site, site.round_trip(KEPT[case]))


def test_nested_mappings_come_back_as_sdicts(site: Site) -> None:
    got = site.round_trip({"cart": {"lines": {"apple": 2}}, "tags": [{"k": "v"}]})
    assert type(got) is sdict and type(got.cart) is sdict and type(got.cart.lines) is sdict
    assert got.cart.lines.apple == 2 and got.cart.missing is None
    assert type(got.tags[0]) is sdict and got.tags[0].k == "v"
    assert site.round_trip(sdict(a=sdict(b=1))) == {"a": {"b": 1}}


def test_tuples_uuids_and_frozensets(site: Site) -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    got = site.round_trip({"pair": (1, "a"), "id": ident, "frozen": frozenset({3})})
    if site.pickles:
        assert got == {"pair": (1, "a"), "id": ident, "frozen": frozenset({3})}
        assert type(got.frozen) is frozenset
    else:
        # JSON has no tuples or UUIDs: lists and strings, as orjson writes them.
        assert got == {"pair": [1, "a"], "id": str(ident), "frozen": {3}}
        assert type(got.frozen) is set


def test_integers_past_64_bits_only_in_legacy_cookies(site: Site) -> None:
    if site.pickles:
        assert site.round_trip(2**70) == 2**70
        return
    site.error = None
    site.to_write = lambda: 2**70
    assert site.app.test_client().get("/save_bad").data == "done"
    assert site.error is not None and "64-bit" in site.error


def test_pendulum_now_comes_back_as_the_same_instant(site: Site) -> None:
    written: list[Any] = []

    def emmett_now() -> Any:
        written.append(now())  # pendulum's DateTime, as Emmett's now() gives
        return written[-1]

    got = site.round_trip(emmett_now)
    assert type(written[0]).__module__.startswith("pendulum")
    assert type(got) is dt.datetime and got == written[0] and got.utcoffset() == dt.timedelta(0)


def test_named_time_zones_come_back_as_fixed_offsets(site: Site) -> None:
    when = dt.datetime(2024, 1, 15, 9, 0, tzinfo=rome())
    got = site.round_trip(when)
    assert type(got) is dt.datetime and got == when
    assert got.tzinfo == dt.timezone(dt.timedelta(hours=1))


def test_flashes_come_back_as_category_message_tuples(site: Site) -> None:
    browser = site.app.test_client()
    assert browser.get("/flash").data == "ok"
    assert browser.get("/flashes").data == "ok"
    (first, second) = site.read
    assert first == ("message", "saved") and type(first) is tuple
    assert type(second) is tuple and second[0] == "auth" and type(second[1]) is Tstr
    # Read once: flash() messages are gone after that.
    assert browser.get("/flashes").data == "ok" and site.read == []


def test_a_translation_renders_in_the_readers_language(site: Site) -> None:
    """As with Emmett's managers: stored as T(), translated when rendered."""
    got = site.round_trip(lambda: T(PHRASE))
    assert type(got) is Tstr and got.text == PHRASE and got.lang is None
    assert str(got) == TRANSLATIONS["it"]
    site.app.language_default = "de"
    try:
        assert str(got) == TRANSLATIONS["de"]
    finally:
        site.app.language_default = "it"


def test_a_translation_keeps_its_language_and_arguments(site: Site) -> None:
    got = site.round_trip(lambda: T("Hello {0}", lang="de") % ("x",))
    assert type(got) is Tstr and (got.lang, got.args) == ("de", ("x",))
    assert str(got) == "Hello x"
    named = site.round_trip(lambda: T("Hello {name}") % {"name": "Ann"})
    assert named.kwargs == {"name": "Ann"} and str(named) == "Hello Ann"


def test_csrf_storage_comes_back_as_itself_and_its_form_is_accepted(site: Site) -> None:
    browser = site.app.test_client()
    page = browser.get("/form")
    tokens = page.context.session._csrf
    assert type(tokens) is CSRFStorage and len(tokens) == 1
    found = re.search(r'name="_csrf_token" type="hidden" value="([^"]+)"', page.data)
    assert found is not None and found.group(1) in tokens
    answer = browser.post("/form", data={"name": "ann", "_csrf_token": found.group(1)})
    assert answer.data == "accepted ann"
    # The token is spent: the same submission again is refused.
    again = browser.post("/form", data={"name": "ann", "_csrf_token": found.group(1)})
    assert again.data != "accepted ann"


def test_orm_rows_come_back_as_sdicts_of_their_fields(site: Site) -> None:
    browser = site.app.test_client()
    assert browser.get("/row").data == "ok"
    assert browser.get("/read").data == "ok"
    got = site.read
    assert type(got) is sdict
    assert (got.name, got.made, got.ready, got.count) == (
        "box",
        dt.datetime(2024, 5, 1, 8, 0),
        True,
        3,
    )
    assert type(got.id) is int and type(got.made) is dt.datetime


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param(object, "object", id="object"),
        pytest.param(lambda: {"deep": [Path("/tmp")]}, "PosixPath", id="nested-path"),
        pytest.param(lambda: T("Hi {0}") % (object(),), "T('Hi {0}')", id="translation-arg"),
    ],
)
def test_what_no_store_can_hold_raises_session_error_naming_it(
    site: Site, value: Any, named: str
) -> None:
    site.error = None
    site.to_write = value
    assert site.app.test_client().get("/save_bad").data == "done"
    assert site.error is not None and named in site.error
    assert "store" in site.error  # and says what to store instead
