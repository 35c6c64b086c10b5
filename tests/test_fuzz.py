"""Property-based fuzzing of every decoder: arbitrary input gives a session or a fresh one.

The default run is bounded for CI; ``make fuzz`` sets ASESS_FUZZ_EXAMPLES=100000
and prints how many examples each decoder took.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asess import KeyRing, Record, SessionManager
from asess._backends.files_format import encode_header, split_file
from asess._backends.files_ops import read_live, replace_existing
from asess._codecs import legacy
from asess._codecs.b64 import b64encode
from asess._codecs.legacy import LegacyCodec
from asess._codecs.modern import ModernCodec
from asess._codecs.unpickle import restricted_loads
from asess._cookies import CookieSettings, join_chunks, parse_cookie_header
from asess._exceptions import InvalidToken, SessionTooLarge
from asess._ids import new_session_id
from asess._serialize import dump_record, load_record

EXAMPLES = int(os.environ.get("ASESS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
COUNTS: Counter[str] = Counter()
KEYS = KeyRing("fuzz-key")
COOKIE = CookieSettings.build(
    name="s", secure=False, samesite="Lax", domain=None, cookie_data=None, max_chunks=3
)
token_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="ABCDEFabcdef0123456789-_=:.", max_size=400),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    if COUNTS:
        print("\nfuzz examples per decoder:")
        for name, count in sorted(COUNTS.items()):
            print(f"  {name:<30} {count}")


@FUZZ
@given(st.text(max_size=2000))
def test_cookie_header_parser(header):
    COUNTS["cookie header parser"] += 1
    found = parse_cookie_header(header, COOKIE.chunk_names())
    assert set(found) <= set(COOKIE.chunk_names())
    assert all(isinstance(v, str) for v in found.values())


@FUZZ
@given(st.dictionaries(st.sampled_from(["s", "s.1", "s.2", "s.3", "x"]), st.text(max_size=50)))
def test_chunk_reassembly(found):
    COUNTS["chunk reassembly"] += 1
    joined = join_chunks(found, COOKIE)
    if "s" not in found:
        assert joined is None
    else:
        assert joined is not None and joined.startswith(found["s"])
        assert len(joined) <= sum(len(v) for v in found.values())


@FUZZ
@given(token_text)
def test_modern_token_decoder(token):
    COUNTS["modern token"] += 1
    codec = ModernCodec(KEYS, "s")
    try:
        record = codec.decode(token, time.time())
    except InvalidToken:
        return
    assert isinstance(record.data, dict)


@FUZZ
@given(token_text)
def test_legacy_token_decoder(token):
    COUNTS["legacy token"] += 1
    codec = LegacyCodec(KEYS)
    try:
        record = codec.decode(token, time.time())
    except InvalidToken:
        return
    assert isinstance(record.data, dict)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=200).map(lambda b: b"\x80\x04\x95" + b),
        st.builds(
            lambda b: pickle.dumps({"k": [1, "x"]}, protocol=4)[:-3] + b, st.binary(max_size=20)
        ),
    )
)
def test_restricted_unpickler(raw):
    COUNTS["restricted unpickler"] += 1
    try:
        value = restricted_loads(raw)
    except (pickle.UnpicklingError, ValueError, EOFError, TypeError):
        return
    plain = (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, complex)
    moments = (dt.datetime, dt.date, dt.time, dt.timedelta, dt.tzinfo, Decimal, UUID)
    assert value is None or isinstance(value, plain + moments)


# Found by ``make fuzz``: a BYTEARRAY8 inside a FRAME that runs past the data
# makes CPython's C unpickler (3.11, file-based, as Unpickler subclasses are)
# free a bytearray it still exports, printing "SystemError: deallocated
# bytearray object has exported buffers". It needs a validly signed payload;
# the unpickler now refuses protocol 5's buffer opcodes before loading.
TRUNCATED_BYTEARRAY_IN_FRAME = (
    b"\x80\x00\x95\x12\x00\x00\x00\x00\x00\x00\x00}J\x00\x00\x00\x00(]\x94J"
    b"\x00\x00\x00\x00\x94\x96\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01"
)


def test_truncated_bytearray_in_a_frame_is_refused_cleanly():
    # In a fresh interpreter: only the first such load in a process prints.
    code = (
        "import sys; from asess._codecs.unpickle import restricted_loads\n"
        "try:\n    restricted_loads(bytes.fromhex(sys.argv[1]))\n"
        "except __import__('pickle').UnpicklingError:\n    print('refused')\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", code, TRUNCATED_BYTEARRAY_IN_FRAME.hex()],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
        check=False,
    )
    assert done.stdout == "refused\n"
    assert "exported buffers" not in done.stderr, done.stderr


@FUZZ
@given(st.binary(max_size=500))
def test_record_reader(raw):
    COUNTS["server record reader"] += 1
    try:
        record = load_record(raw)
    except ValueError:
        return
    assert isinstance(record.data, dict)


def test_megabyte_cookie_header_is_refused_cheaply():
    # A well-formed cookie inside an oversized header is not even looked at.
    header = "s=" + "A" * (1 << 20)
    assert parse_cookie_header(header, COOKIE.chunk_names()) == {}
    assert parse_cookie_header(header[:1000], COOKIE.chunk_names()) == {"s": "A" * 998}


@FUZZ
@given(st.lists(st.text(max_size=200), max_size=4))
@pytest.mark.parametrize("mode", ["legacy", "modern"])
def test_nothing_escapes_the_lifecycle(mode, values):
    """Any Cookie header gives a loaded session (fresh or decoded), never an exception."""
    import asyncio

    COUNTS[f"lifecycle ({mode})"] += 1
    manager = SessionManager.cookies("fuzz-key", cookie_name="s", encryption_mode=mode)
    header = "; ".join(f"s{'.' + str(i) if i else ''}={v}" for i, v in enumerate(values))

    async def run() -> list[str]:
        lifecycle = manager.lifecycle(header)
        async with lifecycle as session:
            assert session.loaded
            session["seen"] = True
            return await lifecycle.commit()

    lines = asyncio.run(run())
    assert lines and lines[0].startswith("s=")
    assert all(len(line) <= 4096 for line in lines)


# -- the legacy codec past its MAC, the file store's reader ---------------------------

plain_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    """Overwrite, cut or insert bytes at the given (position, byte) edits."""
    out = bytearray(data)
    for position, byte in edits:
        where = position % (len(out) + 1)
        if byte < 128 and out:
            out[where % len(out)] = byte
        elif byte < 192:
            del out[where:]
        else:
            out.insert(where, byte & 0x7F)
    return bytes(out)


mutated_pickles = st.builds(
    lambda data, edits, proto: _mutate(pickle.dumps({"k": data}, protocol=proto), edits),
    plain_data,
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4),
    st.integers(0, pickle.HIGHEST_PROTOCOL),
)
payloads = st.one_of(
    st.binary(max_size=300),
    mutated_pickles,
    mutated_pickles.map(zlib.compress),
    st.binary(max_size=100).map(lambda b: zlib.compress(b)[: len(b) // 2 + 2]),
)
# Structured enough to get past the splitting and base64 checks to the MAC.
shaped_tokens = st.one_of(
    st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
    .flatmap(lambda sig: st.binary(min_size=1, max_size=200).map(lambda ct: (*sig, ct)))
    .map(lambda parts: ":".join(b64encode(p) for p in parts)),
    st.tuples(st.text("0123456789abcdef", min_size=32, max_size=32), st.binary(max_size=128)).map(
        lambda t: f"{t[0]}:{b64encode(t[1])}"
    ),
)


def _seal(payload: bytes) -> str:
    """A token exactly as LegacyCodec writes one, around any payload bytes."""
    now = time.time()
    salt = LegacyCodec(KEYS)._salt(Record({}, created_at=now, issued_at=now, expires_at=now + 60))
    secret = next(iter(KEYS)).value
    derived = legacy._derive(0, secret, salt)
    ciphertext = legacy._ctr(derived.aes_key, derived.nonce, payload)
    signature = hmac.digest(derived.mac_key, ciphertext, "sha256")
    return f"{b64encode(salt)}:{b64encode(signature)}:{b64encode(ciphertext)}"


@FUZZ
@given(shaped_tokens)
def test_legacy_token_decoder_shaped(token):
    COUNTS["legacy token (shaped)"] += 1
    with pytest.raises(InvalidToken):
        LegacyCodec(KEYS).decode(token, time.time())  # a random MAC never verifies


@FUZZ
@given(payloads)
def test_legacy_token_decoder_sealed(payload):
    """A genuine signature around any bytes: a dict of plain data, or InvalidToken."""
    COUNTS["legacy token (sealed)"] += 1
    try:
        record = LegacyCodec(KEYS).decode(_seal(payload), time.time())
    except InvalidToken:
        return
    COUNTS["legacy token (sealed) decoded"] += 1  # shows the fuzzer gets past the pickle
    assert type(record.data) is dict and all(type(k) is str for k in record.data)


@FUZZ
@given(mutated_pickles)
def test_restricted_unpickler_mutated(raw):
    COUNTS["unpickler (mutated pickles)"] += 1
    try:
        restricted_loads(raw)
    except pickle.UnpicklingError:
        return  # the one error it promises


file_headers = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda life, ttl: encode_header(life, ttl),
        st.none() | st.integers(1, 10**6),
        st.integers(0, 10**6),
    ),
)
file_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda data, edits: _mutate(dump_record(Record({"k": data}, 1.0, 1.0)), edits),
        plain_data,
        st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3),
    ),
)


@pytest.fixture(scope="module")
def file_dir():
    with tempfile.TemporaryDirectory() as directory:
        yield directory


NEW_FILE = encode_header(None, 60) + b"new"


def _live_body(raw: bytes) -> bytes | None:
    """What a reader must make of ``raw`` at its own mtime: the payload when live, else None."""
    try:
        header, body = split_file(raw)
    except ValueError:
        return None
    return body if header.seconds(None) > 0 else None


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.builds(bytes.__add__, file_headers, file_bodies)))
def test_file_format_reader(file_dir, raw):
    """What a session file holds gives its payload or no session; reader and updater never raise."""
    COUNTS["file format reader"] += 1
    name = f"emt_{new_session_id()}.sess"
    path = os.path.join(file_dir, name)
    with open(path, "wb") as f:
        f.write(raw)
    now = 1_800_000_000.0
    os.utime(path, (now, now))
    expected = _live_body(raw)
    try:
        assert read_live(file_dir, name, now) == expected
        if expected is None and os.path.exists(path):  # unreadable, so kept: never revived
            assert replace_existing(file_dir, name, NEW_FILE, now, False) is False
            assert Path(path).read_bytes() == raw
        elif expected is not None:  # live: an update replaces it
            assert replace_existing(file_dir, name, NEW_FILE, now, False) is True
            assert read_live(file_dir, name, now) == b"new"
    finally:
        if os.path.exists(path):
            os.unlink(path)
    if expected is not None:
        COUNTS["file format reader, live"] += 1


# -- the typed JSON encoding: exact round trips, total decoding -----------------------

# Keys and strings that collide with the encoding's marker are drawn often.
marker_text = st.sampled_from(["\x00", "", "o", "set", "\x00\x00"]) | st.text(max_size=6)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | marker_text
)
# Whole-second offsets: Python 3.11's fromisoformat drops sub-second ones (no real zone has them).
zones = st.none() | st.integers(-86399, 86399).map(lambda s: dt.timezone(dt.timedelta(seconds=s)))
# Time zones come back as fixed offsets and fold as 0 (ISO 8601 spells neither).
typed_leaves = st.one_of(
    st.datetimes(timezones=zones).map(lambda d: d.replace(fold=0)),
    st.dates(),
    st.times(timezones=zones).map(lambda t: t.replace(fold=0)),
    st.timedeltas(),
    st.decimals(),
    st.binary(max_size=12),
)
hashable_leaves = json_leaves | typed_leaves.filter(lambda v: not _snan(v))
session_values = st.recursive(
    json_leaves | typed_leaves | st.sets(hashable_leaves, max_size=4),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(marker_text, inner, max_size=4),
        # Dicts spelling a tag, an escape, or something close to one.
        st.builds(
            lambda tag, value: {"\x00": [tag, value]},
            st.sampled_from(["dt", "d", "t", "td", "dec", "set", "b", "o", "x"]),
            inner,
        ),
    ),
    max_leaves=16,
)


def _snan(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_snan()


def _exact(value: object) -> object:
    """A comparable form that tells apart what == does not (1/True/1.0, -0.0, NaN, offsets)."""
    if isinstance(value, dict):
        return ("dict", tuple((k, _exact(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(_exact(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, frozenset(_exact(v) for v in value))
    if isinstance(value, (float, Decimal, dt.datetime, dt.time)):
        return (type(value).__name__, repr(value), getattr(value, "utcoffset", lambda: 0)())
    return (type(value).__name__, value)


ROUND_TRIP_CODECS = {
    "record": lambda data: load_record(dump_record(Record(data, 1.0, 2.0))).data,
    "modern": lambda data: _modern_round_trip(data, 0),
    "modern-zlib": lambda data: _modern_round_trip(data, 6),
}


def _modern_round_trip(data: dict[str, object], level: int) -> dict[str, object]:
    codec = ModernCodec(KEYS, "s", level)
    return codec.decode(codec.encode(Record(data, 1.0, 2.0)), 3.0).data


@FUZZ
@given(st.dictionaries(marker_text, session_values, max_size=5))
@pytest.mark.parametrize("fmt", sorted(ROUND_TRIP_CODECS))
def test_every_value_round_trips_as_itself(fmt, data):
    """JSON trees, marker-key dicts and every typed value come back exactly, on every format."""
    COUNTS[f"typed round trip ({fmt})"] += 1
    try:
        out = ROUND_TRIP_CODECS[fmt](data)
    except SessionTooLarge:
        return
    assert _exact(out) == _exact(data)


TAG_NAMES = ["dt", "d", "t", "td", "dec", "set", "b", "o"]
tag_shaped_json = st.recursive(
    json_leaves | st.integers(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(marker_text, inner, max_size=3),
        st.builds(lambda t, v: {"\x00": [t, v]}, st.sampled_from(TAG_NAMES) | marker_text, inner),
        st.builds(lambda v: {"\x00": v}, inner),
    ),
    max_leaves=10,
)


@FUZZ
@given(
    st.sampled_from([1, 2, 3]),
    st.booleans(),
    st.dictionaries(marker_text, tag_shaped_json, max_size=3),
)
def test_record_decoding_is_total(version, tagged, data):
    """Any JSON record, however its tags are spelt, is a Record or a ValueError."""
    COUNTS["record decoding (tag-shaped)"] += 1
    body = json.dumps(data).encode()  # not orjson: it refuses the integers past 64 bits
    flag = b"true" if tagged else b"false"
    head = b'{"v":%d,"c":1,"i":1,"e":null,"l":null,"t":%s,"d":' % (version, flag)
    try:
        record = load_record(head + body + b"}")
    except ValueError:
        return
    assert type(record.data) is dict


# -- nesting: the opcode scan's depth is the data's depth, at every protocol ----------


def _depth(value: object) -> int:
    """Containers on the longest path, as the restricted unpickler's walk counts them."""
    if isinstance(value, dict):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in value.items()), default=0)
    if isinstance(value, (list, tuple, set, frozenset)):
        return 1 + max(map(_depth, value), default=0)
    return 0


nests = st.recursive(
    st.integers(0, 3) | st.text(max_size=2),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=40,
)
# Long single chains reach past the limit, where the interesting cases are, and
# put tuples and frozensets where they get hashed (dict keys, set members).
chains = st.builds(
    lambda kinds, leaf: _chain(kinds, leaf),
    st.lists(
        st.sampled_from(["list", "tuple", "frozenset", "dict", "key"]), min_size=90, max_size=110
    ),
    st.integers(0, 9),
)


def _chain(kinds: list[str], leaf: object) -> object:
    value, hashable = leaf, True
    for kind in kinds:
        if kind == "list":
            value, hashable = [value], False
        elif kind == "dict":
            value, hashable = {"k": value}, False
        elif kind == "tuple" or not hashable:
            value = (value,)  # a tuple of a list or dict stays unhashable
        elif kind == "key":
            value, hashable = {value: 1}, False
        else:
            value = frozenset({value})
    return value


@FUZZ
@given(st.one_of(nests, chains), st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_opcode_scan_measures_nesting_exactly(value, protocol):
    """The scan refuses exactly the pickles whose data nests deeper than MAX_DEPTH."""
    from asess._codecs.opscan import scan
    from asess._codecs.unpickle import MAX_DEPTH

    COUNTS["opcode scan depth"] += 1
    try:
        raw = pickle.dumps({"v": value}, protocol=protocol)
    except (RecursionError, TypeError):
        return  # unhashable chain members, or deeper than pickle goes
    deep = _depth({"v": value}) > MAX_DEPTH
    try:
        scan(raw, MAX_DEPTH)
    except pickle.UnpicklingError as exc:
        assert deep, exc
        COUNTS["opcode scan depth, refused"] += 1
        return
    assert not deep
    assert restricted_loads(raw) == {"v": value}


# -- the derived-key cache: a vetted salt vouches for one ciphertext only -------------

WARM = LegacyCodec(KEYS)
WARM_TOKEN = WARM.encode(Record({"a": 1}, time.time(), time.time(), time.time() + 10**6))


def _outcome(codec: LegacyCodec, token: str) -> object:
    try:
        return repr(codec.decode(token, time.time()).data)  # repr: NaN equals itself
    except InvalidToken as exc:
        return f"refused: {exc}"


def _small_memo_bombs() -> list[bytes]:
    # Memo bombs that stay cheap if the scan were skipped (8 MiB tables at most).
    return [b"\x80\x02}r\x00\x00\x10\x00.", b"(dp1000000\n."]


@FUZZ
@given(st.one_of(payloads, st.sampled_from(_small_memo_bombs())))
def test_a_cached_salt_skips_nothing_for_other_payloads(payload):
    """Under a salt this codec issued and vetted, any other payload reads as on a cold codec."""
    COUNTS["legacy token (cached salt)"] += 1
    salt = legacy.b64decode(WARM_TOKEN.split(":")[0])
    derived = legacy._derive(0, next(iter(KEYS)).value, salt)
    ciphertext = legacy._ctr(derived.aes_key, derived.nonce, payload)
    signature = hmac.digest(derived.mac_key, ciphertext, "sha256")
    token = ":".join(b64encode(p) for p in (salt, signature, ciphertext))
    assert WARM.decode(WARM_TOKEN, time.time()).data == {"a": 1}  # the salt is vetted
    assert _outcome(WARM, token) == _outcome(LegacyCodec(KEYS), token)
