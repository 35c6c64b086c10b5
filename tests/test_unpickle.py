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


CALLABLE_PAYLOADS = [
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
]


@pytest.mark.parametrize("payload", CALLABLE_PAYLOADS)
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


MALFORMED_PAYLOADS = [b"", b"\x80\x04", b"garbage", b"\x80\x04}\x94(", b"\x80\x09."]


@pytest.mark.parametrize("payload", MALFORMED_PAYLOADS)
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


MEMO_BOMBS = [
    b"\x80\x02}r\xff\xff\xff\x7f.",  # LONG_BINPUT 2**31 - 1: a 32 GiB memo table
    b"(dp99999999999\n.",  # protocol 0 PUT with a huge index
]


@pytest.mark.parametrize("bomb", MEMO_BOMBS)
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


# -- nesting the C unpickler would hash before any check of ours ---------------------

MILLION = 1_000_000


def _deep_tuple_key(depth: int) -> bytes:
    # {((((),),)...): 1}: EMPTY_TUPLE, then TUPLE1 ``depth`` times, as a dict key.
    return b"\x80\x02})" + b"\x85" * depth + b"K\x01s."


def _deep_tuple_in_set(depth: int) -> bytes:
    # {"s": {((((),),)...)}}: the same tuple as a set member (protocol 4 ADDITEMS).
    return b"\x80\x04}\x8c\x01s\x8f()" + b"\x85" * depth + b"\x90s."


def _deep_tuple_key_protocol_0(depth: int) -> bytes:
    # MARK ... TUPLE at every level, the way protocol 0 spells tuples.
    return b"(dp0\n" + b"(" * depth + b"t" * depth + b"I1\ns."


def _deep_frozensets(depth: int) -> bytes:
    return b"\x80\x04}\x8c\x01f" + b"(" * depth + b"\x91" * depth + b"s."


def _lists_linked_after_sharing(count: int) -> bytes:
    """``count`` empty lists, memoized, then each appended to the one before, first to last.

    Every list is in its parent before it gets its own child, so a model that
    only updated heights at the time of each append would see depth 2.
    """
    out = [b"\x80\x04"] + [b"]\x94"] * count
    for i in range(count - 1):
        out.append(b"j" + struct.pack("<I", i) + b"j" + struct.pack("<I", i + 1) + b"a0")
    out.append(b"}\x8c\x01lj" + struct.pack("<I", 0) + b"s.")
    return b"".join(out)


DEEP_PAYLOADS = {
    "tuple-key-1e6": _deep_tuple_key(MILLION),
    "tuple-in-set-1e6": _deep_tuple_in_set(MILLION),
    "tuple-key-protocol-0-1e5": _deep_tuple_key_protocol_0(100_000),
    "frozensets-1e5": _deep_frozensets(100_000),
    "lists-linked-after-sharing": _lists_linked_after_sharing(300),
}


@pytest.mark.parametrize("name", sorted(DEEP_PAYLOADS))
def test_deep_nesting_is_refused_by_the_opcode_scan(name: str) -> None:
    from asess._codecs.opscan import scan

    payload = DEEP_PAYLOADS[name]
    # The scan alone refuses it: nothing reaches the C unpickler.
    with pytest.raises(pickle.UnpicklingError, match=r"nested|refers to itself"):
        scan(payload, MAX_DEPTH)
    with pytest.raises(pickle.UnpicklingError, match=r"nested|refers to itself"):
        restricted_loads(payload)


def _nest(kind: str, depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"list": lambda v: [v], "tuple": lambda v: (v,), "dict": lambda v: {"k": v}}.get(
            kind, lambda v: frozenset({v})
        )(value)
    return value


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("kind", ["list", "tuple", "dict", "frozenset"])
def test_the_scan_counts_nesting_exactly(kind: str, protocol: int) -> None:
    from asess._codecs.opscan import scan

    # One container short of the limit below the top-level dict loads; one more does not.
    fits = pickle.dumps({"v": _nest(kind, MAX_DEPTH - 1)}, protocol=protocol)
    scan(fits, MAX_DEPTH)
    assert restricted_loads(fits)["v"] == _nest(kind, MAX_DEPTH - 1)
    if kind in ("tuple", "frozenset"):  # hashable: also as a dict key
        scan(pickle.dumps({_nest(kind, MAX_DEPTH - 1): 1}, protocol=protocol), MAX_DEPTH)
    too_deep = pickle.dumps({"v": _nest(kind, MAX_DEPTH)}, protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match="nested"):
        scan(too_deep, MAX_DEPTH)


def test_shared_values_are_still_admitted() -> None:
    shared = [1, {"a": (2, 3)}]
    loaded = restricted_loads(pickle.dumps({"x": shared, "y": shared, "z": [shared, shared]}))
    assert loaded["x"] is loaded["y"] and loaded["z"] == [shared, shared]


def test_changing_an_immutable_value_is_refused() -> None:
    from asess._codecs.opscan import scan

    # BUILD on a global (protocol 0): would set a slot on the class stand-in.
    raw = b"(dp0\nS'x'\nc__builtin__\nobject\n(dS'name'\nS'x'\nsbs."
    with pytest.raises(pickle.UnpicklingError, match="immutable"):
        scan(raw, MAX_DEPTH)
