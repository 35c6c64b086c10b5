"""Stores' and modern tokens' encoding: values come back as themselves, bad input is ValueError."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from asess import KeyRing, Record, SessionManager
from asess._codecs.modern import ModernCodec
from asess._exceptions import InvalidToken
from asess._serialize import (
    digest,
    dump_data,
    dump_record,
    fingerprint,
    load_data,
    load_record,
)

from .helpers import client

NOW = 1_700_000_000.0

# Dicts an application may store from client JSON, each spelling a tag of 0.1's format.
LOOKALIKES: list[Any] = [
    {"\x00": ["b", "AAAA"]},  # read back as b"\0\0\0" by 0.1
    {"\x00": ["dec", "NaN"]},  # as Decimal("NaN")
    {"\x00": ["set", [1, 2]]},  # as {1, 2}
    {"\x00": ["td", [10**10, 0, 0]]},  # OverflowError on every load
    {"\x00": ["dec", "not a number"]},  # decimal.InvalidOperation on every load
    {"\x00": ["o", {"a": 1}]},  # the new escape's own spelling
    {"\x00": 1, "other": 2},
    {"\x00": {"\x00": ["dt", "2024-01-01"]}},
]


def _records(data: dict[str, Any]) -> dict[str, Any]:
    return load_record(dump_record(Record(data, NOW, NOW))).data


def _modern(data: dict[str, Any], level: int = 0) -> dict[str, Any]:
    codec = ModernCodec(KeyRing("k"), "s", level)
    return codec.decode(codec.encode(Record(data, NOW, NOW)), NOW).data


@pytest.mark.parametrize("lookalike", LOOKALIKES, ids=repr)
@pytest.mark.parametrize("typed", [None, dt.datetime(2024, 1, 1, 12)], ids=["plain", "tagged"])
@pytest.mark.parametrize("fmt", ["record", "modern", "modern-zlib"])
def test_dicts_with_the_marker_key_come_back_as_themselves(
    lookalike: Any, typed: Any, fmt: str
) -> None:
    data = {"prefs": lookalike, "nested": [lookalike, {"x": lookalike}], "when": typed}
    out = {"record": _records, "modern": _modern, "modern-zlib": lambda d: _modern(d, 6)}[fmt](data)
    assert out == data
    assert type(out["when"]) is type(typed)


def test_the_marker_key_at_the_top_level_round_trips() -> None:
    data = {"\x00": ["b", "AAAA"], "d": Decimal("1.10")}
    assert _records(data) == data and _modern(data) == data


def test_records_without_escapes_stay_readable_by_0_1() -> None:
    # 0.1 reads version 1 only: what needs no escape is still written as 1,
    # what does is written as 2, which 0.1 refuses instead of misreading.
    assert orjson.loads(dump_record(Record({"d": b"x"}, NOW, NOW)))["v"] == 1
    assert orjson.loads(dump_record(Record({"d": {"\x00": 1}}, NOW, NOW)))["v"] == 2
    assert dump_data({"a": 1})[1] == 0


def test_records_written_by_0_1_still_load() -> None:
    # Bytes exactly as asess 0.1 wrote them (a datetime, bytes and a set).
    raw = (
        b'{"v":1,"c":1.0,"i":2.0,"e":null,"l":null,"t":true,"d":{"when":{"\\u0000":'
        b'["dt","2024-01-01T12:00:00"]},"b":{"\\u0000":["b","eA=="]},"s":{"\\u0000":["set",[1]]}}}'
    )
    assert load_record(raw).data == {"when": dt.datetime(2024, 1, 1, 12), "b": b"x", "s": {1}}
    plain = b'{"v":1,"c":1.0,"i":2.0,"e":null,"l":null,"t":false,"d":{"\\u0000":["b","eA=="]}}'
    assert load_record(plain).data == {"\x00": ["b", "eA=="]}


BAD_TAGS = [
    {"\x00": ["td", [10**10, 0, 0]]},
    {"\x00": ["dec", "not a number"]},
    {"\x00": ["dec", 1.5]},
    {"\x00": ["dt", 12]},
    {"\x00": ["d", "2024-13-01"]},
    {"\x00": ["b", "***"]},
    {"\x00": ["set", [[1]]]},
    {"\x00": ["set", 1]},
    {"\x00": ["nope", 1]},
    {"\x00": [["dt"], 1]},
    {"\x00": "dt"},
    {"\x00": ["dt", "2024-01-01", 3]},
    {"\x00": ["o", {"no marker": 1}]},
    {"\x00": ["o", [1]]},
]


@pytest.mark.parametrize("bad", BAD_TAGS, ids=repr)
@pytest.mark.parametrize("version", [1, 2])
def test_undecodable_tags_are_value_errors_only(bad: Any, version: int) -> None:
    body = orjson.dumps({"x": bad})
    raw = b'{"v":%d,"c":1,"i":1,"e":null,"l":null,"t":true,"d":%s}' % (version, body)
    with pytest.raises(ValueError):
        load_record(raw)
    with pytest.raises(ValueError):
        load_data(body, 2 if version == 2 else 1)


def test_deeply_nested_hostile_record_is_a_value_error() -> None:
    body = b'{"x":' + b'{"\\u0000":["set",[' * 500 + b"1" + b"]]}" * 500 + b"}"
    with pytest.raises(ValueError):
        load_data(body, 1)


def test_the_escape_is_refused_in_version_1() -> None:
    head = b'{"v":1,"c":1,"i":1,"e":null,"l":null,"t":true,"d":'
    raw = head + b'{"x":{"\\u0000":["o",{"\\u0000":1}]}}}'
    with pytest.raises(ValueError):
        load_record(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b"null",
        b'{"v":true}',
        b'{"v":2.0}',
        b'{"v":1,"c":1,"i":1,"d":{},"t":3}',
        "\ud800",
    ],
)
def test_malformed_records_are_value_errors(raw: Any) -> None:
    with pytest.raises(ValueError):
        load_record(raw)


def test_modern_token_with_undecodable_data_is_an_invalid_token() -> None:
    codec = ModernCodec(KeyRing("k"), "s")
    token = codec.encode(Record({"x": 1}, NOW, NOW))
    # Seal a payload by hand whose tag cannot be restored.
    from asess._codecs import modern

    header = modern._HEADER.pack(modern._F_TAGGED, NOW, NOW, float("nan"), -1)
    plain = header + orjson.dumps({"x": {"\x00": ["td", [10**10, 0, 0]]}})
    key = codec._current
    salt = bytes(16)
    sealed = key.aead(salt).encrypt(modern._NONCE, plain, codec._aad(key.kid))
    forged = modern.PREFIX + modern._b64encode(key.kid + salt + sealed)
    assert codec.decode(token, NOW).data == {"x": 1}
    with pytest.raises(InvalidToken, match="bad payload"):
        codec.decode(forged, NOW)


def test_sets_holding_tuples_are_refused_at_save_time() -> None:
    from asess import SessionError

    with pytest.raises(SessionError, match="tuple"):
        dump_data({"s": {(1, 2)}})
    with pytest.raises(SessionError, match="frozenset"):
        dump_data({"s": {frozenset({1})}})


def test_digest_tells_bytes_from_their_lookalike() -> None:
    # The change check must see the difference, or the save is skipped.
    assert digest({"x": b"\x00"}) != digest({"x": {"\x00": ["b", "AA=="]}})
    assert digest({"x": {1}}) != digest({"x": {"\x00": ["set", [1]]}})


@pytest.mark.parametrize("backend", ["memory", "files"])
async def test_client_json_with_the_marker_key_keeps_the_session(
    backend: str, tmp_path: Path
) -> None:
    """The issue's reproduction: a session holding such a dict fails every later request."""
    manager = (
        SessionManager.memory() if backend == "memory" else SessionManager.files(path=tmp_path)
    )

    async def handler(s: Any, scope: dict[str, Any]) -> Any:
        if scope["path"] == "/store":
            s["prefs"] = {"\x00": ["td", [10**10, 0, 0]]}
            s["when"] = dt.datetime(2024, 1, 1)
        s["n"] = (s.get("n") or 0) + 1
        return s.get("prefs")

    async with client(manager, handler) as c:
        assert (await c.get("/store")).status_code == 200
        again = await c.get("/")
        assert again.status_code == 200
        assert again.text == str({"\x00": ["td", [10**10, 0, 0]]})


# -- fingerprints and the loaded bytes they reuse ---------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"user": 1, "cart": [{"sku": "A", "price": "19.90"}], "f": 0.1, "big": 2**63 - 1},
        {"nested": {"deep": [1, [2, [3]]]}, "text": 'quote " backslash \\ nul \x00 é ✓'},
        {"odd floats": [1e16, -0.0, 1.5e-300], "none": None, "t": True},
        {},
    ],
)
def test_a_plain_record_hands_back_its_data_bytes_as_the_fingerprint(data: dict) -> None:
    record = load_record(dump_record(Record(data, NOW, NOW, NOW + 60, 5)))
    assert record.body == digest(data) == dump_data(data)[0]
    # What orjson wrote is what it writes again for what it decoded.
    assert digest(record.data) == record.body


@pytest.mark.parametrize(
    "data", [{"when": dt.datetime(2024, 1, 1)}, {"s": {1, 2, 3}}, {"\x00": "lookalike"}]
)
def test_tagged_or_escaped_records_are_fingerprinted_by_encoding(data: dict) -> None:
    # A set's members may come back in another order: its stored bytes are no fingerprint.
    assert load_record(dump_record(Record(data, NOW, NOW))).body is None


def test_records_in_another_layout_are_fingerprinted_by_encoding() -> None:
    spaced = orjson.loads(dump_record(Record({"a": 1}, NOW, NOW)))
    import json

    assert load_record(json.dumps(spaced).encode()).body is None
    assert load_record(json.dumps(spaced)).body is None
    reordered = {"d": spaced.pop("d"), **spaced}
    assert load_record(orjson.dumps(reordered)).body is None


def test_fingerprint_kind_says_whether_the_bytes_can_be_stored() -> None:
    assert fingerprint({"a": 1}) == (b'{"a":1}', 0)
    raw, kind = fingerprint({1: "int key"})  # an old pickle's keys: comparable, not storable
    assert kind is None and raw == fingerprint({1: "int key"})[0]
    first, kind = fingerprint({"o": object()})
    assert kind is None and first != fingerprint({"o": object()})[0]


def test_a_record_written_with_its_encoding_reuses_it() -> None:
    data = {"a": [1, 2]}
    fresh = dump_record(Record(data, NOW, NOW))
    reused = dump_record(Record(data, NOW, NOW, encoded=fingerprint(data)))  # type: ignore[arg-type]
    assert reused == fresh
    # Decoders never set it: a decoded record whose data changes is encoded afresh.
    loaded = load_record(fresh)
    assert loaded.encoded is None
    loaded.data["a"].append(3)
    assert load_record(dump_record(loaded)).data == {"a": [1, 2, 3]}


def test_modern_tokens_hand_back_plain_data_bytes_only() -> None:
    codec = ModernCodec(KeyRing("k"), "s", 0)
    plain = codec.decode(codec.encode(Record({"a": 1}, NOW, NOW, NOW + 60)), NOW)
    assert plain.body == b'{"a":1}' and plain.encoded is None
    tagged = codec.decode(codec.encode(Record({"a": {1}}, NOW, NOW, NOW + 60)), NOW)
    assert tagged.body is None
    packed = ModernCodec(KeyRing("k"), "s", 9)
    data = {"a": "x" * 500}
    assert packed.decode(packed.encode(Record(data, NOW, NOW, NOW + 60)), NOW).body == digest(data)
