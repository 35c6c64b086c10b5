"""Types an adapter adds to the JSON stores (``register_type``), and Emmett's translations there."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from emmett.language.helpers import Tstr

import asess.emmett  # noqa: F401  (registers Emmett's types before any test copies the registry)
from asess import _serialize
from asess._serialize import digest, dump_data, load_data, register_type


class Money:
    def __init__(self, amount: Any, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (other.amount, other.currency) == (
            self.amount,
            self.currency,
        )


def decode_money(data: Any) -> Money:
    amount, currency = data
    if not isinstance(currency, str):
        raise ValueError("currency must be a str")
    return Money(amount, currency)


@pytest.fixture(autouse=True)
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registrations made here stay in this test (Emmett's, made at import, are kept).
    monkeypatch.setattr(_serialize, "_EXTENSIONS", dict(_serialize._EXTENSIONS))
    monkeypatch.setattr(_serialize, "_UNTAG", dict(_serialize._UNTAG))


def register_money() -> None:
    register_type(Money, "test.money", lambda m: [m.amount, m.currency], decode_money)


def test_a_registered_type_round_trips_nested_with_tagged_contents() -> None:
    register_money()
    when = dt.date(2024, 2, 29)
    data = {"cart": [{"price": Money(when, "EUR")}]}
    raw, tagged = dump_data(data)
    assert tagged
    assert load_data(raw, tagged) == data
    assert digest(data) == digest({"cart": [{"price": Money(when, "EUR")}]})
    assert digest(data) != digest({"cart": [{"price": Money(when, "USD")}]})


def test_unregistered_types_still_raise_session_errors() -> None:
    with pytest.raises(
        _serialize.SessionError, match=r"cannot be stored .*Money.*keep to JSON types"
    ):
        dump_data({"price": Money(1, "EUR")})


def test_stored_data_the_decoder_refuses_is_malformed() -> None:
    register_money()
    raw = orjson.dumps({"price": {"\x00": ["test.money", [1, 2]]}})
    with pytest.raises(ValueError, match="bad tagged value"):
        load_data(raw, True)


def test_tags_are_not_shared() -> None:
    register_money()
    with pytest.raises(ValueError, match="taken"):
        register_type(dict, "test.money", list, dict)
    with pytest.raises(ValueError, match="taken"):
        register_type(Money, "dt", list, dict)  # a built-in tag
    register_money()  # the same type again: replaced, not refused


def test_emmett_translations_are_registered_and_checked_on_load() -> None:
    raw, tagged = dump_data({"flash": Tstr("hello", "it")})
    loaded = load_data(raw, tagged)["flash"]
    assert type(loaded) is Tstr and (loaded.text, loaded.lang) == ("hello", "it")
    for bad in ([1, None, [], {}], ["hi", 5, [], {}], ["hi", None, {}, {}]):
        forged = orjson.dumps({"flash": {"\x00": ["emmett.T", bad]}})
        with pytest.raises(ValueError, match="bad tagged value"):
            load_data(forged, True)
