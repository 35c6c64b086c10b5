"""The restricted unpickler admits plain data and Emmett's sdict, and nothing callable."""

from __future__ import annotations

import builtins
import codecs
import copyreg
import datetime as dt
import os
import pickle
import struct
import uuid
from collections import OrderedDict
from decimal import Decimal
from enum import IntEnum
from typing import Any

import pytest
from emmett_core.datastructures import gsdict, sdict

from asess._codecs.unpickle import MAX_DEPTH, PICKLE_PROTOCOL, dumps_plain, restricted_loads

UTC2 = dt.timezone(dt.timedelta(hours=2), "X")

PLAIN: dict[str, Any] = {
    "str": "héllo",
    "bytes": b"\x00\xff",
    "empty_bytes": b"",
    "bytearray": bytearray(b"ab"),
    "int": 2**70,
    "float": 1.5,
    "complex": 1 + 2j,
    "bools": [True, False, None],
    "tuple": (1, ("a", b"b")),
    "set": {1, "a", (2, 3)},
    "frozenset": frozenset({1, 2}),
    "datetime": dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
    "aware": dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc),
    "named_tz": dt.datetime(2024, 1, 1, 12, tzinfo=UTC2, fold=1),
    "date": dt.date(1999, 12, 31),
    "time": dt.time(1, 2, 3, 4, tzinfo=UTC2),
    "timedelta": dt.timedelta(days=-3, seconds=5, microseconds=7),
    "timezone": UTC2,
    "decimal": Decimal("-1.50E+3"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "nested": {"x": [1, {"y": {}}], 1: "int key"},
}


class Hostile:
    """Pickles as an arbitrary call, the way an attacker would write one."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def hostile(func: Any, *args: Any, protocol: int = PICKLE_PROTOCOL) -> bytes:
    return pickle.dumps({"x": Hostile(func, *args)}, protocol=protocol)


# -- what is admitted ---------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips_at_every_protocol(protocol: int) -> None:
    loaded = restricted_loads(pickle.dumps(PLAIN, protocol=protocol))
    assert loaded == PLAIN
    assert {k: type(v) for k, v in loaded.items()} == {k: type(v) for k, v in PLAIN.items()}
    # datetime pickles keep ``fold`` from protocol 4 on.
    assert loaded["named_tz"].fold == (protocol >= 4)
    assert loaded["timezone"].tzname(None) == "X"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_sdict_becomes_a_plain_dict_by_default(protocol: int) -> None:
    data = sdict(a=1, inner=sdict(b=[sdict(c=2)]), grow=gsdict(d=3))
    loaded = restricted_loads(pickle.dumps(data, protocol=protocol))
    assert loaded == {"a": 1, "inner": {"b": [{"c": 2}]}, "grow": {"d": 3}}
    assert type(loaded) is dict
    assert type(loaded["inner"]) is dict
    assert type(loaded["inner"]["b"][0]) is dict


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_mapping_factory_receives_every_sdict(protocol: int) -> None:
    shared = sdict(s=1)
    data = {
        "plain": {"p": 1},
        "a": shared,
        "b": [shared],
        "t": (shared, 2),
        "deep": sdict(x=shared),
    }
    loaded = restricted_loads(pickle.dumps(data, protocol=protocol), mapping_factory=sdict)
    assert loaded == {"plain": {"p": 1}, "a": {"s": 1}, "b": [{"s": 1}], "t": ({"s": 1}, 2),
                      "deep": {"x": {"s": 1}}}  # fmt: skip
    assert type(loaded["plain"]) is dict  # plain dicts stay plain
    assert type(loaded["a"]) is sdict
    assert type(loaded["t"]) is tuple and type(loaded["t"][0]) is sdict
    # One object in the pickle stays one object after mapping.
    assert loaded["a"] is loaded["b"][0] is loaded["t"][0] is loaded["deep"]["x"]


def test_emmett_2_4_module_path_is_admitted() -> None:
    # The pickle Emmett 2.4 wrote: the class lived in emmett.datastructures.
    raw = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x15emmett.datastructures\x94"
    raw += b"\x8c\x05sdict\x94\x93\x94)\x81\x94."
    assert restricted_loads(raw, mapping_factory=sdict) == sdict()
    assert type(restricted_loads(raw, mapping_factory=sdict)) is sdict


def test_extra_classes_admits_more_globals() -> None:
    raw = pickle.dumps({"x": OrderedDict(a=1)})
    with pytest.raises(pickle.UnpicklingError, match=r"collections\.OrderedDict"):
        restricted_loads(raw)
    loaded = restricted_loads(raw, extra_classes={("collections", "OrderedDict"): OrderedDict})
    assert loaded == {"x": OrderedDict(a=1)}
    assert type(loaded["x"]) is OrderedDict


def test_shared_references_are_walked_once() -> None:
    # Each level holds the one below twice: 2**90 paths, 90 distinct lists.
    node: list[Any] = []
    for _ in range(90):
        node = [node, node]
    loaded = restricted_loads(pickle.dumps({"n": node}))
    assert loaded["n"][0] is loaded["n"][1]


def test_nesting_up_to_the_limit_is_admitted() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH - 1):  # plus the top-level dict
        value = [value]
    assert restricted_loads(pickle.dumps({"v": value}))["v"] == value


# -- what is refused ----------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(hostile(os.system, "true"), id="os.system"),
        pytest.param(hostile(builtins.eval, "1 + 1"), id="eval"),
        pytest.param(hostile(builtins.exec, "x = 1"), id="exec"),
        pytest.param(hostile(builtins.getattr, dt.datetime, "now"), id="getattr"),
        pytest.param(hostile(builtins.__import__, "os"), id="__import__"),
        pytest.param(
            hostile(getattr(copyreg, "_reconstructor"), OrderedDict, dict, {}), id="reconstructor"
        ),
        pytest.param(hostile(codecs.encode, b"x" * 10, "zlib"), id="codecs.encode-zlib"),
        pytest.param(hostile(codecs.encode, "x", "rot13"), id="codecs.encode-rot13"),
        pytest.param(hostile(bytearray, 10**12), id="bytearray(n)"),
        pytest.param(hostile(bytes, 10**12), id="bytes(n)"),
        pytest.param(hostile(dict, [("a", 1)]), id="call-dict"),
        pytest.param(hostile(object), id="call-object"),
        pytest.param(pickle.dumps({"cls": dt.datetime}), id="class-as-value"),
        pytest.param(pickle.dumps({"f": os.getcwd}), id="function-as-value"),
        pytest.param(pickle.dumps({"e": OrderedDict()}), id="other-dict-class"),
        pytest.param(b"Pfoo\n.", id="persistent-id"),
        pytest.param(b"\x80\x02\x82\x01.", id="extension-code"),
    ],
)
def test_refuses_everything_callable(payload: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(payload)


def test_reconstructor_is_only_admitted_for_sdict_and_uuid() -> None:
    # copyreg._reconstructor(datetime.datetime, object, None), protocol 0.
    raw = b"ccopy_reg\n_reconstructor\n(cdatetime\ndatetime\nc__builtin__\nobject\nNtR."
    with pytest.raises(pickle.UnpicklingError, match="only admitted for sdict and UUID"):
        restricted_loads(raw)
    # copyreg._reconstructor(sdict, dict, <not a dict>)
    raw = (
        b"ccopy_reg\n_reconstructor\n(cemmett_core.datastructures\nsdict\n"
        b"c__builtin__\ndict\nI1\ntR."
    )
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(raw)


def test_refuses_a_malformed_uuid() -> None:
    # uuid.UUID.__new__ then __setstate__({"int": "nope"})
    raw = b"\x80\x04cuuid\nUUID\n)\x81}\x8c\x03int\x8c\x04nopesb."
    with pytest.raises(pickle.UnpicklingError, match="UUID"):
        restricted_loads(raw)


def test_refuses_out_of_range_datetime_fields() -> None:
    # The pickle-state constructor checks the month only: day 40, hour 99.
    state = struct.pack(">HBBBBB", 2024, 1, 40, 99, 0, 0) + b"\x00\x00\x00"
    raw = pickle.dumps({"d": Hostile(dt.datetime, state)})
    with pytest.raises(pickle.UnpicklingError, match="malformed datetime"):
        restricted_loads(raw)


def test_refuses_cycles() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(pickle.UnpicklingError, match="refers to itself"):
        restricted_loads(pickle.dumps({"l": loop}))


def test_refuses_deep_nesting() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    with pytest.raises(pickle.UnpicklingError, match="nested"):
        restricted_loads(pickle.dumps({"v": value}))


def test_refuses_a_deep_path_through_a_shared_node() -> None:
    # The shared chain is first met near the top (fine), then again 60 levels down.
    chain: Any = 1
    for _ in range(60):
        chain = [chain]
    deep: Any = chain
    for _ in range(60):
        deep = [deep]
    with pytest.raises(pickle.UnpicklingError, match="nested"):
        restricted_loads(pickle.dumps({"a": chain, "b": deep}))


@pytest.mark.parametrize("payload", [b"", b"\x80\x04", b"garbage", b"\x80\x04}\x94(", b"\x80\x09."])
def test_refuses_malformed_pickles(payload: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(payload)


def test_refuses_every_truncation_of_a_valid_pickle() -> None:
    raw = pickle.dumps(PLAIN)
    for end in range(len(raw) - 1):
        with pytest.raises(pickle.UnpicklingError):
            restricted_loads(raw[:end])


# -- dumps_plain --------------------------------------------------------------


def test_dumps_plain_is_read_back_by_plain_pickle() -> None:
    raw = dumps_plain(PLAIN)
    assert raw[:2] == bytes([0x80, PICKLE_PROTOCOL])
    assert pickle.loads(raw) == PLAIN
    assert restricted_loads(raw) == PLAIN


def test_dumps_plain_keeps_emmett_sdicts() -> None:
    data = {"a": sdict(b=sdict(c=1))}
    loaded = pickle.loads(dumps_plain(data))
    assert type(loaded["a"]) is sdict and type(loaded["a"]["b"]) is sdict
    assert loaded["a"]["b"]["c"] == 1


class Colour(IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(OrderedDict(a=1), id="OrderedDict"),
        pytest.param(Colour.RED, id="IntEnum"),
        pytest.param(object(), id="object"),
        pytest.param([1, {"x": {2, object()}}], id="nested-object"),
        pytest.param(dt.datetime, id="class"),
        pytest.param(print, id="function"),
        pytest.param(memoryview(b"x"), id="memoryview"),
    ],
)
def test_dumps_plain_refuses_other_types(value: Any) -> None:
    with pytest.raises(TypeError):
        dumps_plain({"v": value})


def test_dumps_plain_refuses_other_time_zones() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        zone = zoneinfo.ZoneInfo("Europe/Rome")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    with pytest.raises(TypeError, match="ZoneInfo"):
        dumps_plain({"v": dt.datetime(2024, 1, 1, tzinfo=zone)})


def test_dumps_plain_refuses_non_dicts_cycles_and_deep_nesting() -> None:
    with pytest.raises(TypeError):
        dumps_plain([1, 2])  # type: ignore[arg-type]
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="refers to itself"):
        dumps_plain(loop)
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    with pytest.raises(ValueError, match="nested"):
        dumps_plain({"v": value})


def test_dumps_plain_does_not_change_its_input() -> None:
    data = {"a": [sdict(x=1)], "b": (1, {"c": 2})}
    before = pickle.dumps(data)
    dumps_plain(data)
    assert pickle.dumps(data) == before


def test_out_of_band_buffers_and_overlong_frames_are_refused() -> None:
    import pickle

    from asess._codecs.unpickle import restricted_loads

    buffered = pickle.dumps(
        pickle.PickleBuffer(bytearray(b"abc")), protocol=5, buffer_callback=list().append
    )
    with pytest.raises(pickle.UnpicklingError, match="NEXT_BUFFER"):
        restricted_loads(buffered)
    framed = pickle.dumps({"k": bytearray(b"x" * 10)}, protocol=5)
    assert restricted_loads(framed) == {"k": bytearray(b"x" * 10)}
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(framed[:-4])


@pytest.mark.parametrize(
    "bomb",
    [
        b"\x80\x02}r\xff\xff\xff\x7f.",  # LONG_BINPUT 2**31 - 1: a 32 GiB memo table
        b"(dp99999999999\n.",  # protocol 0 PUT with a huge index
    ],
)
def test_memo_index_bombs_are_refused_before_unpickling(bomb: bytes) -> None:
    import pickle

    from asess._codecs.unpickle import restricted_loads

    with pytest.raises(pickle.UnpicklingError, match="indexes past"):
        restricted_loads(bomb)


def test_legacy_codec_scans_foreign_payloads_but_not_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from asess._codecs import unpickle
    from asess._codecs.legacy import LegacyCodec
    from asess._keys import KeyRing
    from asess._record import Record

    scans: list[int] = []
    real_scan = unpickle._scan
    monkeypatch.setattr(unpickle, "_scan", lambda data: (scans.append(1), real_scan(data)))
    now = time.time()
    writer = LegacyCodec(KeyRing("k"))
    token = writer.encode(Record({"a": 1}, now, now, now + 60))
    assert writer.decode(token, now).data == {"a": 1}
    assert scans == []  # pickled by this codec: already known good
    reader = LegacyCodec(KeyRing("k"))
    assert reader.decode(token, now).data == {"a": 1}
    assert scans == [1]  # another process's token: scanned once
    assert reader.decode(token, now).data == {"a": 1}
    assert scans == [1]
