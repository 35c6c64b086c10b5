"""Property-based fuzzing of every decoder: arbitrary input gives a session or a fresh one.

The default run is bounded for CI; ``make fuzz`` sets ASESS_FUZZ_EXAMPLES=100000
and prints how many examples each decoder took.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import time
from collections import Counter
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asess import KeyRing, SessionManager
from asess._codecs.legacy import LegacyCodec
from asess._codecs.modern import ModernCodec
from asess._codecs.unpickle import restricted_loads
from asess._cookies import CookieSettings, join_chunks, parse_cookie_header
from asess._exceptions import InvalidToken
from asess._serialize import load_record

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
            print(f"  {name:<28} {count}")


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
