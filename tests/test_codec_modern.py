"""ModernCodec: round trips, tamper resistance, key rotation, expiry and strict parsing."""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import struct
import zlib
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asess._codecs import modern
from asess._codecs.modern import ModernCodec
from asess._exceptions import ConfigurationError, InvalidToken, SessionTooLarge
from asess._keys import KeyRing, Secret
from asess._record import Record

NOW = 1_750_000_000.0
KEY = "current-secret-0123456789abcdef0123456789"
OLD = "old-secret-fedcba9876543210fedcba98765432"
COOKIE = "sess"
TOKEN_RE = re.compile(r"as1\.[A-Za-z0-9_-]+")


def record(data: dict[str, Any] | None = None, **times: Any) -> Record:
    fields: dict[str, Any] = {
        "created_at": NOW - 100.25,
        "issued_at": NOW - 10.5,
        "expires_at": NOW + 3600.0,
        "lifetime": 3600,
    }
    fields.update(times)
    return Record(data={"user": 7} if data is None else data, **fields)


def codec(keys: Any = KEY, cookie: str = COOKIE, level: int = 0) -> ModernCodec:
    return ModernCodec(KeyRing(keys), cookie, compression_level=level)


def raw_of(token: str) -> bytes:
    body = token[len(modern.PREFIX) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def token_of(raw: bytes) -> str:
    return modern.PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def open_token(token: str, secret: str = KEY, cookie: str = COOKIE) -> bytes:
    """Decrypt a token independently of ModernCodec.decode: the sealed plaintext."""
    raw = raw_of(token)
    key = modern._Key(Secret(secret), current=True)
    assert raw[:4] == key.kid
    aad = modern.PREFIX.encode() + key.kid + cookie.encode()
    return key.aead(raw[4:20]).decrypt(modern._NONCE, raw[20:], aad)


def seal(plain: bytes, secret: str = KEY, cookie: str = COOKIE) -> str:
    """An authentic token around arbitrary plaintext, to probe the payload parser."""
    key = modern._Key(Secret(secret), current=True)
    salt = bytes(range(16))
    aad = modern.PREFIX.encode() + key.kid + cookie.encode()
    return token_of(key.kid + salt + key.aead(salt).encrypt(modern._NONCE, plain, aad))


def header(
    flags: int = 0,
    created: float = NOW,
    issued: float = NOW,
    expires: float = NOW + 60,
    lifetime: int = -1,
) -> bytes:
    return struct.pack("<Bdddq", flags, created, issued, expires, lifetime)


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"user": 7, "name": "Zoë", "emoji": "🍪✓", "日本": ["語", None, True, 1.5]},
        {"big": 2**62, "neg": -1, "nested": {"a": [{"b": {"c": []}}]}},
        {
            "when": dt.datetime(2026, 5, 9, 7, 35, 25, 123456, tzinfo=dt.timezone.utc),
            "naive": dt.datetime(2020, 1, 2, 3, 4, 5),
            "day": dt.date(2024, 2, 29),
            "price": Decimal("19.990"),
            "tags": {"a", "b", "c"},
            "blob": b"\x00\xff binary",
            "span": dt.timedelta(days=1, seconds=2, microseconds=3),
        },
    ],
    ids=["empty", "unicode", "numbers", "tagged-types"],
)
@pytest.mark.parametrize("level", [0, 6])
def test_round_trip_preserves_data_and_times(data: dict[str, Any], level: int) -> None:
    c = codec(level=level)
    rec = record(data)
    token = c.encode(rec)
    assert TOKEN_RE.fullmatch(token)
    back = c.decode(token, NOW)
    assert back == rec
    assert back.data == data
    assert type(back.data.get("price", Decimal(0))) is Decimal
    assert back.reissue is False


def test_round_trip_optional_times() -> None:
    c = codec()
    rec = record(expires_at=None, lifetime=None)
    back = c.decode(c.encode(rec), NOW + 10**9)  # no expiry in the token: never refused
    assert back.expires_at is None and back.lifetime is None
    zero = record(lifetime=0)
    assert c.decode(c.encode(zero), NOW).lifetime == 0


def test_decode_needs_only_the_secret_not_the_instance() -> None:
    token = codec().encode(record())
    assert codec().decode(token, NOW) == record()


def test_tokens_are_unique_per_encode() -> None:
    c, rec = codec(), record({"same": "data"})
    tokens = [c.encode(rec) for _ in range(64)]
    assert len(set(tokens)) == len(tokens)
    assert len({raw_of(t)[4:20] for t in tokens}) == len(tokens)  # fresh salt each time
    assert len({raw_of(t)[:4] for t in tokens}) == 1  # one key id per secret
    assert all(c.decode(t, NOW) == rec for t in tokens)


def test_negative_lifetime_is_refused_at_encode() -> None:
    with pytest.raises(ValueError, match="negative"):
        codec().encode(record(lifetime=-5))


# -- compression ----------------------------------------------------------------------------


def test_compression_flag_and_size() -> None:
    data = {"cart": [{"sku": f"SKU-{i:04d}", "qty": 1} for i in range(80)]}
    plain_token = codec(level=0).encode(record(data))
    packed_token = codec(level=9).encode(record(data))
    assert open_token(plain_token)[0] & 0x01 == 0
    assert open_token(packed_token)[0] & 0x01 == 1
    assert len(packed_token) < len(plain_token) / 3
    assert codec(level=9).decode(packed_token, NOW).data == data
    # Flags travel in the token, so any codec for the key reads either form.
    assert codec(level=0).decode(packed_token, NOW).data == data


def test_compression_is_skipped_when_it_does_not_shrink() -> None:
    token = codec(level=9).encode(record({"k": "x7Qz"}))
    assert open_token(token)[0] & 0x01 == 0


@pytest.mark.parametrize("level", [-1, 10])
def test_bad_compression_level_is_a_configuration_error(level: int) -> None:
    with pytest.raises(ConfigurationError, match="compression_level"):
        codec(level=level)


def test_zlib_bomb_is_refused() -> None:
    bomb = zlib.compress(b'{"a":"' + b"A" * (modern.MAX_DATA_BYTES + 10) + b'"}', 9)
    token = seal(header(flags=0x01) + bomb)
    assert len(token) < 8 * 1024
    with pytest.raises(InvalidToken, match="size limit"):
        codec().decode(token, NOW)


def test_compressed_data_at_the_limit_is_accepted() -> None:
    body = b'{"a":"' + b"A" * (modern.MAX_DATA_BYTES - 8) + b'"}'
    assert len(body) == modern.MAX_DATA_BYTES
    token = seal(header(flags=0x01) + zlib.compress(body, 9))
    assert len(codec().decode(token, NOW).data["a"]) == modern.MAX_DATA_BYTES - 8


@pytest.mark.parametrize(
    "body",
    [
        b"not zlib at all",
        zlib.compress(b'{"a":1}')[:-3],  # truncated stream
        zlib.compress(b'{"a":1}') + b"trailing",
    ],
    ids=["garbage", "truncated", "trailing"],
)
def test_bad_compressed_data_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidToken, match="compressed"):
        codec().decode(seal(header(flags=0x01) + body), NOW)


# -- tampering ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid() -> tuple[ModernCodec, str]:
    c = ModernCodec(KeyRing(KEY), COOKIE)
    return c, c.encode(record({"user": 7, "flash": "hi"}))


def test_every_byte_flipped_is_refused(valid: tuple[ModernCodec, str]) -> None:
    c, token = valid
    raw = raw_of(token)
    for i in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(raw)
            bad[i] ^= mask
            with pytest.raises(InvalidToken):
                c.decode(token_of(bytes(bad)), NOW)


def test_every_bit_of_sampled_bytes_flipped_is_refused(valid: tuple[ModernCodec, str]) -> None:
    c, token = valid
    raw = raw_of(token)
    # key id, salt, first ciphertext byte (flags), a data byte, and the tag's last byte
    for i in (0, 3, 4, 19, 20, 21 + 33, len(raw) - 1):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            with pytest.raises(InvalidToken):
                c.decode(token_of(bytes(bad)), NOW)


def test_every_character_replaced_is_refused(valid: tuple[ModernCodec, str]) -> None:
    c, token = valid
    for i in range(len(token)):
        for repl in ("A", "_", "."):
            if token[i] != repl:
                with pytest.raises(InvalidToken):
                    c.decode(token[:i] + repl + token[i + 1 :], NOW)


def test_truncation_and_extension_are_refused(valid: tuple[ModernCodec, str]) -> None:
    c, token = valid
    for n in range(len(token)):
        with pytest.raises(InvalidToken):
            c.decode(token[:n], NOW)
    for extra in ("A", "AA", "AAA", "AAAA", "=", ".", " ", "\n"):
        with pytest.raises(InvalidToken):
            c.decode(token + extra, NOW)
    raw = raw_of(token)
    for extra_bytes in (b"\x00", b"\x00" * 16, raw[-16:]):
        with pytest.raises(InvalidToken, match="authentication"):
            c.decode(token_of(raw + extra_bytes), NOW)


def test_other_cookie_name_is_refused(valid: tuple[ModernCodec, str]) -> None:
    _, token = valid
    for other in ("sess2", "Sess", "ses", ""):
        with pytest.raises(InvalidToken, match="authentication"):
            codec(cookie=other).decode(token, NOW)


def test_wrong_key_is_refused(valid: tuple[ModernCodec, str]) -> None:
    _, token = valid
    with pytest.raises(InvalidToken, match="unknown key id"):
        codec(keys="another-secret-entirely-0123456789abcd").decode(token, NOW)


def test_swapped_key_id_is_refused(valid: tuple[ModernCodec, str]) -> None:
    _, token = valid
    both = codec(keys=[KEY, OLD])
    old_kid = raw_of(codec(keys=OLD).encode(record()))[:4]
    with pytest.raises(InvalidToken, match="authentication"):
        both.decode(token_of(old_kid + raw_of(token)[4:]), NOW)


@pytest.mark.parametrize("prefix", ["", "as0.", "as2.", "AS1.", "as1", "xas1."])
def test_unknown_version_is_refused(valid: tuple[ModernCodec, str], prefix: str) -> None:
    c, token = valid
    with pytest.raises(InvalidToken, match="version"):
        c.decode(prefix + token[len(modern.PREFIX) :], NOW)


# -- base64 strictness ----------------------------------------------------------------------


def _token_with_tail(rest: int) -> tuple[ModernCodec, str]:
    """A valid token whose base64 body length is 2 or 3 mod 4 (unused low bits)."""
    c = codec()
    for n in range(8):
        token = c.encode(record({"pad": "x" * n}))
        if len(token[len(modern.PREFIX) :]) % 4 == rest:
            return c, token
    raise AssertionError("no token of that length")


@pytest.mark.parametrize("rest", [2, 3])
def test_non_canonical_base64_is_refused(rest: int) -> None:
    c, token = _token_with_tail(rest)
    assert c.decode(token, NOW).data["pad"] is not None
    alphabet = modern._B64_ALPHABET.decode()
    last = alphabet.index(token[-1])
    unused = 0x0F if rest == 2 else 0x03
    for low in range(1, unused + 1):
        twin = token[:-1] + alphabet[last | low]
        assert raw_of(twin) == raw_of(token)  # a lenient decoder sees the same bytes
        with pytest.raises(InvalidToken, match="non-canonical"):
            c.decode(twin, NOW)


def test_padding_and_foreign_characters_are_refused(valid: tuple[ModernCodec, str]) -> None:
    c, token = valid
    candidates = [
        token + "=",
        token + "==",
        token[:10] + "+" + token[11:],
        token[:10] + "/" + token[11:],
        token[:10] + "\n" + token[10:],
        token[:10] + " " + token[10:],
        token[:10] + "é" + token[10:],
        token[:10] + "\x00" + token[10:],
        token[:10] + "." + token[10:],
    ]
    for bad in candidates:
        with pytest.raises(InvalidToken, match="base64"):
            c.decode(bad, NOW)


# -- size -----------------------------------------------------------------------------------


def test_oversized_token_is_refused_before_any_work(valid: tuple[ModernCodec, str]) -> None:
    c, token = valid
    huge = token + "A" * (modern.MAX_TOKEN_CHARS - len(token) + 1)
    with pytest.raises(InvalidToken, match="oversized"):
        c.decode(huge, NOW)


def test_large_token_under_the_limit_round_trips() -> None:
    c = codec()
    rec = record({"blob": "x" * 40_000})
    token = c.encode(rec)
    assert 40_000 < len(token) <= modern.MAX_TOKEN_CHARS
    assert c.decode(token, NOW) == rec


def test_encode_refuses_a_token_decode_would_refuse() -> None:
    with pytest.raises(SessionTooLarge, match="server-side store"):
        codec().encode(record({"blob": "x" * modern.MAX_TOKEN_CHARS}))


def test_is_expensive_follows_token_size() -> None:
    plain, packed = codec(), codec(level=6)
    small = plain.encode(record())
    assert plain.is_expensive(None) is False
    assert plain.is_expensive(small) is False
    assert plain.is_expensive("x" * (modern.EXPENSIVE_TOKEN_CHARS + 1)) is True
    assert plain.is_expensive("x" * modern.EXPENSIVE_TOKEN_CHARS) is False
    # Compressed tokens expand on decode, so they count as expensive sooner.
    mid = "x" * (modern.EXPENSIVE_TOKEN_CHARS // 2)
    assert plain.is_expensive(mid) is False
    assert packed.is_expensive(mid) is True


# -- rotation -------------------------------------------------------------------------------


def test_rotation_old_key_decodes_and_asks_for_reissue() -> None:
    old_token = codec(keys=OLD).encode(record())
    rotated = codec(keys=[KEY, OLD])
    back = rotated.decode(old_token, NOW)
    assert back == record()
    assert back.reissue is True
    fresh = rotated.encode(back)
    assert raw_of(fresh)[:4] == raw_of(codec().encode(record()))[:4]
    again = rotated.decode(fresh, NOW)
    assert again == record() and again.reissue is False


def test_rotation_dropped_key_is_refused() -> None:
    old_token = codec(keys=OLD).encode(record())
    with pytest.raises(InvalidToken, match="unknown key id"):
        codec(keys=[KEY, "a-third-secret-0123456789abcdef01234"]).decode(old_token, NOW)


def test_duplicate_secrets_in_the_ring_keep_the_first_as_current() -> None:
    c = codec(keys=[KEY, KEY, OLD])
    assert c.decode(c.encode(record()), NOW).reissue is False


def test_key_id_collision_tries_each_key(monkeypatch: pytest.MonkeyPatch) -> None:
    real = modern._hkdf

    def colliding(secret: Secret, info: bytes, length: int) -> bytes:
        return b"KKKK" if info.endswith(b"key-id") else real(secret, info, length)

    monkeypatch.setattr(modern, "_hkdf", colliding)
    old_token = codec(keys=OLD).encode(record())
    rotated = codec(keys=[KEY, OLD])
    back = rotated.decode(old_token, NOW)
    assert back == record() and back.reissue is True
    assert rotated.decode(rotated.encode(record()), NOW).reissue is False
    with pytest.raises(InvalidToken, match="authentication"):
        codec(keys="unrelated-secret-0123456789abcdef0123").decode(old_token, NOW)


# -- expiry ---------------------------------------------------------------------------------


def test_expired_token_is_refused() -> None:
    c = codec()
    token = c.encode(record(expires_at=NOW))
    with pytest.raises(InvalidToken, match="expired"):
        c.decode(token, NOW)
    with pytest.raises(InvalidToken, match="expired"):
        c.decode(token, NOW + 1)


def test_not_yet_expired_token_is_accepted() -> None:
    c = codec()
    token = c.encode(record(expires_at=NOW + 0.001))
    assert c.decode(token, NOW).expires_at == NOW + 0.001
    assert c.decode(token, NOW - 3600).expires_at == NOW + 0.001


# -- authentic but malformed payloads -------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "reason"),
    [
        (header() + b"not json", "bad payload"),
        (header() + b"[1, 2]", "bad payload"),
        (header() + b'"text"', "bad payload"),
        (header() + b"", "bad payload"),
        (header(flags=0x04) + b"{}", "unknown flags"),
        (header(flags=0x02) + b'{"x": {"\\u0000": ["nope", 1]}}', "bad payload"),
        (header(flags=0x02) + b'{"x": {"\\u0000": ["dec", "abc"]}}', "bad payload"),
        (header(flags=0x02) + b'{"x": {"\\u0000": ["dt", 5]}}', "bad payload"),
        (header(flags=0x02) + b'{"x": {"\\u0000": "short"}}', "bad payload"),
        (header(created=math.nan) + b"{}", "bad header"),
        (header(issued=math.inf) + b"{}", "bad header"),
        (header(lifetime=-2) + b"{}", "bad header"),
    ],
)
def test_authentic_malformed_payload_is_refused(plain: bytes, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        codec().decode(seal(plain), NOW)


def test_authentic_minimal_payload_decodes() -> None:
    back = codec().decode(seal(header(expires=math.nan, lifetime=7) + b"{}"), NOW)
    assert back == Record(data={}, created_at=NOW, issued_at=NOW, expires_at=None, lifetime=7)


# -- fuzz -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_invalid_token(text: str) -> None:
    c = codec()
    for candidate in (text, modern.PREFIX + text):
        with pytest.raises(InvalidToken):
            c.decode(candidate, NOW)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_tokens_raise_only_invalid_token(data: st.DataObject) -> None:
    c = codec()
    raw = bytearray(raw_of(c.encode(record({"user": 7, "cart": [1, 2, 3]}))))
    positions = st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4, unique=True)
    for i in data.draw(positions):
        raw[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InvalidToken):
        c.decode(token_of(bytes(raw)), NOW)


def test_subkey_is_hkdf_expand_of_the_master_key() -> None:
    """The codec's HMAC shortcut yields exactly RFC 5869 HKDF-Expand subkeys."""
    import os

    from cryptography.hazmat.primitives import hashes as _hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    from asess._codecs.modern import _Key
    from asess._keys import Secret

    key = _Key(Secret("subkey-check"), current=True)
    salt, nonce = os.urandom(16), bytes(12)
    subkey = HKDFExpand(algorithm=_hashes.SHA256(), length=32, info=salt).derive(key.master)
    sealed = key.aead(salt).encrypt(nonce, b"payload", b"aad")
    assert sealed == AESGCM(subkey).encrypt(nonce, b"payload", b"aad")


def test_tokens_open_alike_whether_their_subkey_was_remembered_or_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(modern, "_ISSUED_KEYS", 3)
    issuer, other = ModernCodec(KeyRing(KEY), "s"), ModernCodec(KeyRing(KEY), "s")
    tokens = [
        issuer.encode(Record({"n": n}, NOW, NOW, NOW + 60)) for n in range(5)
    ]  # the cache starts over past 3: some subkeys remembered, some not
    assert 0 < len(issuer._current.issued) <= 3
    for n, token in enumerate(tokens):
        assert issuer.decode(token, NOW).data == {"n": n}  # remembered or derived
        assert other.decode(token, NOW).data == {"n": n}  # a process that never saw it
    tampered = tokens[-1][:-2] + ("A" if tokens[-1][-2] != "A" else "B") + tokens[-1][-1]
    with pytest.raises(InvalidToken):
        issuer.decode(tampered, NOW)
    before = dict(issuer._current.issued)
    with pytest.raises(InvalidToken):
        issuer.decode(other.encode(Record({}, NOW, NOW, NOW + 60))[:-4] + "AAAA", NOW)
    assert issuer._current.issued == before  # tokens from elsewhere never go in
