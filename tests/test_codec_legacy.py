"""The Emmett-format cookie codec: Emmett's vectors, interop with emmett-core, tampering."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import os
import pickle
import threading
import types
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from emmett_core import _emmett_core
from emmett_core.cryptography import symmetric as emmett_crypto
from emmett_core.datastructures import sdict
from emmett_core.sessions import CookieSessionPipe

from asess._codecs import legacy
from asess._codecs.b64 import b64decode, b64encode
from asess._codecs.legacy import MAX_PAYLOAD, MAX_TOKEN_LENGTH, LegacyCodec
from asess._exceptions import ConfigurationError, InvalidToken, SessionError
from asess._keys import KeyRing
from asess._record import Record

VECTORS_PATH = Path(
    os.environ.get("ASESS_SPEC_DIR", "/work/shared/spec"), "emmett-cookie-vectors.json"
)
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())["vectors"]
LEGACY_VECTORS = [v for v in VECTORS if "secure_dumps" in v["writer"]]
SALTED_VECTORS = [v for v in VECTORS if "secure_dumps" not in v["writer"]]

KEY = "a-long-random-session-key-used-by-these-tests"
NOW = 1_700_000_000.0
DATA: dict[str, Any] = {
    "user_id": 42,
    "name": "bob",
    "tags": ["a", "b"],
    "nested": {"x": 1, "y": [True, None]},
    "when": __import__("datetime").datetime(2024, 5, 1, 12, 30),
}


def record(data: dict[str, Any] | None = None, **times: Any) -> Record:
    fields: dict[str, Any] = {"created_at": NOW - 60, "issued_at": NOW, "expires_at": NOW + 3600}
    fields.update(times)
    return Record(dict(DATA if data is None else data), **fields)


def codec(key: str | list[str] = KEY, level: int = 0, **kwargs: Any) -> LegacyCodec:
    return LegacyCodec(KeyRing(key), level, **kwargs)


def vector_id(vector: dict[str, Any]) -> str:
    writer = vector["writer"].split(" (")[0].replace(" ", "-")
    return f"{writer}-{len(vector['key'])}ch-z{vector['compression_level']}-{len(vector['data'])}"


# -- helpers that write Emmett's formats with Emmett's own primitives ----------


def emmett_token(payload: bytes, key: str, salt: bytes) -> str:
    """emmett-core's ``encrypt_b64`` with a chosen salt (it always draws a random one)."""
    material = _emmett_core.pbkdf2_sha256(key.encode(), salt, 1000, 80)
    ciphertext = _emmett_core.aes256_ctr128(payload, material[:32], material[64:])
    signature = hmac.digest(material[32:64], ciphertext, "sha256")
    return ":".join(base64.urlsafe_b64encode(v).decode() for v in (salt, signature, ciphertext))


def _cfb64(key: str, data: bytes, *, decrypt: bool) -> bytes:
    # Segment by segment, as pyaes' AESModeOfOperationCFB(segment_size=8) runs.
    aes_key = key.encode()[:32].ljust(32, b".")
    ecb = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()
    register, out = aes_key[:16], b""
    for i in range(0, len(data), 8):
        segment = data[i : i + 8]
        result = bytes(a ^ b for a, b in zip(segment, ecb.update(register)[:8], strict=True))
        out += result
        register = register[8:] + (segment if decrypt else result)
    return out


def legacy_token(payload: bytes, key: str) -> str:
    """Emmett 2.4's ``secure_dumps`` over an already pickled (and compressed) payload."""
    body = base64.urlsafe_b64encode(
        _cfb64(key, payload + b"." * (-len(payload) % 32), decrypt=False)
    )
    mac_key = hashlib.sha1(key.encode()).hexdigest().encode()
    return hmac.new(mac_key, body, "md5").hexdigest() + ":" + body.decode()


def emmett_pipe(key: str, level: int = 0) -> CookieSessionPipe:
    return CookieSessionPipe(  # type: ignore[no-untyped-call]
        types.SimpleNamespace(), key, cookie_name="session", compression_level=level
    )


def hostile_pickle(func: Any, *args: Any) -> bytes:
    class Hostile:
        def __reduce__(self) -> tuple[Any, ...]:
            return func, args

    return pickle.dumps({"x": Hostile()})


def test_helpers_write_exactly_what_emmett_writes() -> None:
    # Legacy tokens have no randomness: re-encrypting a vector's plaintext must
    # give back the vector byte for byte.
    for vector in LEGACY_VECTORS:
        body = vector["token"].split(":")[1]
        plaintext = _cfb64(vector["key"], base64.urlsafe_b64decode(body), decrypt=True)
        if vector["compression_level"]:
            inflater = zlib.decompressobj()
            inflater.decompress(plaintext)
            size = len(plaintext) - len(inflater.unused_data)
        else:
            stream = io.BytesIO(plaintext)
            pickle.load(stream)
            size = stream.tell()
        assert 0 < len(plaintext) - size < 32 and plaintext[size:].strip(b".") == b""
        assert legacy_token(plaintext[:size], vector["key"]) == vector["token"]
    token = emmett_token(b"payload", KEY, os.urandom(32))
    assert emmett_crypto.decrypt_b64(token, KEY) == b"payload"


# -- Emmett's vectors -----------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=vector_id)
@pytest.mark.parametrize("level", [0, 9])
def test_every_vector_decodes(vector: dict[str, Any], level: int) -> None:
    # Whatever this codec's compression_level, both forms are read.
    result = codec(vector["key"], level).decode(vector["token"], NOW)
    assert result.data == vector["data"]
    assert type(result.data) is dict
    # Emmett wrote these: no times in them, and they must be rewritten as ours.
    assert result.reissue is True
    assert (result.created_at, result.issued_at, result.expires_at) == (NOW, NOW, None)
    assert result.lifetime is None


@pytest.mark.parametrize("vector", VECTORS, ids=vector_id)
def test_vector_sdicts_go_through_mapping_factory(vector: dict[str, Any]) -> None:
    result = codec(vector["key"], mapping_factory=sdict).decode(vector["token"], NOW)
    if "nested" in vector["data"]:
        assert type(result.data["nested"]) is sdict
        assert result.data["nested"].x == 1


@pytest.mark.parametrize("vector", VECTORS, ids=vector_id)
def test_vectors_decode_with_the_key_anywhere_in_the_ring(vector: dict[str, Any]) -> None:
    ring = ["first-unrelated-key", vector["key"], "third-unrelated-key"]
    assert codec(ring).decode(vector["token"], NOW).data == vector["data"]
    with pytest.raises(InvalidToken):
        codec(["first-unrelated-key", "third-unrelated-key"]).decode(vector["token"], NOW)


# -- round trip -------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 1, 9])
def test_round_trip(level: int) -> None:
    c = codec(level=level)
    original = record(lifetime=600)
    token = c.encode(original)
    assert token.count(":") == 2
    result = c.decode(token, NOW)
    assert result == original
    assert result.reissue is False
    # A second codec (cold cache, same key) reads it too.
    assert codec(level=level).decode(token, NOW) == original


def test_round_trip_without_lifetime_or_expiry() -> None:
    original = record(lifetime=None, expires_at=None)
    result = codec().decode(codec().encode(original), NOW + 10**8)
    assert result == original
    assert result.lifetime is None and result.expires_at is None


def test_times_are_whole_seconds() -> None:
    c = codec()
    result = c.decode(c.encode(record(created_at=NOW + 0.9, issued_at=NOW + 1.5)), NOW)
    assert (result.created_at, result.issued_at) == (NOW, NOW + 1)


def test_tokens_differ_each_time() -> None:
    c = codec()
    tokens = {c.encode(record()) for _ in range(20)}
    assert len(tokens) == 20
    salts = {b64decode(t.split(":")[0]) for t in tokens}
    assert len(salts) == 20


def test_mapping_factory_round_trip_keeps_sdicts() -> None:
    c = codec(mapping_factory=sdict)
    token = c.encode(record({"cart": sdict(items=sdict(apple=2))}))
    result = c.decode(token, NOW)
    assert type(result.data) is dict
    assert type(result.data["cart"]) is sdict and type(result.data["cart"]["items"]) is sdict


def test_encode_refuses_non_plain_data_and_bad_times() -> None:
    # A SessionError naming the type and saying what to store instead.
    with pytest.raises(SessionError, match=r"object values are not plain data.*store its id"):
        codec().encode(record({"f": object()}))
    for bad in ({"created_at": -1.0}, {"expires_at": 2.0**32}, {"lifetime": -5}):
        with pytest.raises(ValueError, match="whole seconds"):
            codec().encode(record(**bad))


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="compression_level"):
        codec(level=10)
    with pytest.raises(ConfigurationError, match="cache_size"):
        codec(cache_size=-1)


# -- interop with the real emmett-core --------------------------------------------


@pytest.mark.parametrize("level", [0, 9])
def test_emmett_reads_asess_tokens(level: int) -> None:
    token = codec(level=level).encode(record())
    raw = emmett_crypto.decrypt_b64(token, KEY)
    assert pickle.loads(zlib.decompress(raw) if level else raw) == DATA
    # And through Emmett's own cookie pipe, as a running Emmett app would.
    session = emmett_pipe(KEY, level)._decrypt_data(token)
    assert dict(session) == DATA
    assert session.nested == {"x": 1, "y": [True, None]}


def test_emmett_reads_sdicts_written_by_asess() -> None:
    token = codec(mapping_factory=sdict).encode(record({"cart": sdict(n=1)}))
    session = emmett_pipe(KEY)._decrypt_data(token)
    assert type(session["cart"]) is sdict and session["cart"]["n"] == 1


@pytest.mark.parametrize("level", [0, 9])
def test_asess_reads_emmett_tokens(level: int) -> None:
    pipe = emmett_pipe(KEY, level)
    pipe.current.session = sdict(DATA, cart=sdict(items=[sdict(sku="x")]))
    token = pipe._encrypt_data()
    result = codec(level=level, mapping_factory=sdict).decode(token, NOW)
    assert result.data == {**DATA, "cart": {"items": [{"sku": "x"}]}}
    assert type(result.data["cart"]["items"][0]) is sdict
    assert result.reissue is True and result.expires_at is None


def test_salt_that_only_looks_like_ours_is_read_as_emmett() -> None:
    payload = pickle.dumps({"a": 1})
    # Magic right, version unknown: an Emmett random salt that happens to match.
    token = emmett_token(payload, KEY, b"\xa5\x5e\x07" + os.urandom(29))
    result = codec().decode(token, NOW)
    assert result.data == {"a": 1} and result.reissue and result.expires_at is None
    # Magic and version right, but unknown flag bits.
    token = emmett_token(payload, KEY, b"\xa5\x5e\x01\x02" + bytes(16) + os.urandom(12))
    assert codec().decode(token, NOW).reissue


# -- key rotation -------------------------------------------------------------------


def test_key_rotation() -> None:
    old_token = codec("old-key").encode(record())
    rotated = codec(["new-key", "old-key"])
    result = rotated.decode(old_token, NOW)
    assert result.data == DATA and result.reissue is True
    new_token = rotated.encode(record())
    assert rotated.decode(new_token, NOW).reissue is False
    assert codec(["new-key", "old-key"]).decode(new_token, NOW).reissue is False  # cold cache
    assert emmett_crypto.decrypt_b64(new_token, "new-key")  # the first key encrypts
    with pytest.raises(InvalidToken):
        codec("old-key").decode(new_token, NOW)
    with pytest.raises(InvalidToken):
        codec("new-key").decode(old_token, NOW)


# -- tampering ----------------------------------------------------------------------


def flipped_characters(token: str) -> Iterator[str]:
    for i, char in enumerate(token):
        yield token[:i] + ("B" if char == "A" else "A") + token[i + 1 :]


def flipped_bytes(token: str) -> Iterator[str]:
    # Flip bits in the decoded bytes and re-encode canonically, so each variant
    # gets past base64 and must be caught by the MAC.
    parts = token.split(":")
    for p, part in enumerate(parts):
        if p == 0 and len(parts) == 2:
            raw = binascii.unhexlify(part)
            encode: Any = lambda b: binascii.hexlify(b).decode()  # noqa: E731
        else:
            raw, encode = base64.urlsafe_b64decode(part), b64encode
        for i in range(len(raw)):
            for mask in (0x01, 0x80):
                changed = raw[:i] + bytes([raw[i] ^ mask]) + raw[i + 1 :]
                yield ":".join([*parts[:p], encode(changed), *parts[p + 1 :]])


def fresh_salted_token(level: int) -> tuple[LegacyCodec, str]:
    c = codec(level=level)
    return c, c.encode(record())


@pytest.mark.parametrize("level", [0, 9])
def test_every_flipped_character_is_refused_salted(level: int) -> None:
    c, token = fresh_salted_token(level)
    for variant in flipped_characters(token):
        with pytest.raises(InvalidToken):
            c.decode(variant, NOW)
    assert c.decode(token, NOW).data == DATA


@pytest.mark.parametrize("level", [0, 9])
def test_every_flipped_byte_is_refused_salted(level: int) -> None:
    c, token = fresh_salted_token(level)
    count = 0
    for variant in flipped_bytes(token):
        count += 1
        with pytest.raises(InvalidToken):
            c.decode(variant, NOW)
    assert count == 2 * len(b"".join(b64decode(p) for p in token.split(":")))


@pytest.mark.parametrize("vector", LEGACY_VECTORS[:2] + LEGACY_VECTORS[4:6], ids=vector_id)
def test_every_flipped_character_and_byte_is_refused_legacy(vector: dict[str, Any]) -> None:
    c = codec(vector["key"])
    for variant in [*flipped_characters(vector["token"]), *flipped_bytes(vector["token"])]:
        with pytest.raises(InvalidToken):
            c.decode(variant, NOW)


@pytest.mark.parametrize("vector", SALTED_VECTORS[::4], ids=vector_id)
def test_every_flipped_byte_is_refused_emmett_salted(vector: dict[str, Any]) -> None:
    c = codec(vector["key"])
    for variant in flipped_bytes(vector["token"]):
        with pytest.raises(InvalidToken):
            c.decode(variant, NOW)


@pytest.mark.parametrize("which", ["salted", "legacy"])
def test_truncated_and_extended_tokens_are_refused(which: str) -> None:
    if which == "salted":
        c, token = fresh_salted_token(0)
    else:
        c, token = codec(LEGACY_VECTORS[0]["key"]), LEGACY_VECTORS[0]["token"]
    for end in range(len(token)):
        with pytest.raises(InvalidToken):
            c.decode(token[:end], NOW)
    for suffix in ("A", "AAAA", "====", ":", ":AAAA", "\x00", " "):
        with pytest.raises(InvalidToken):
            c.decode(token + suffix, NOW)
        with pytest.raises(InvalidToken):
            c.decode(suffix + token, NOW)
    assert c.decode(token, NOW).data


def test_non_canonical_base64_is_refused() -> None:
    c, token = fresh_salted_token(0)
    salt, signature, ciphertext = token.split(":")
    assert salt.endswith("=") and not salt.endswith("==")  # 32 bytes: 2 spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(salt[-2])
    respelt = [salt[:-2] + alphabet[last ^ bits] + "=" for bits in (1, 2, 3)]
    variants = [
        *(f"{s}:{signature}:{ciphertext}" for s in respelt),
        f"{salt.rstrip('=')}:{signature}:{ciphertext}",  # padding dropped
        f"{salt}=:{signature}:{ciphertext}",  # padding added
        token.replace("-", "+").replace("_", "/"),  # standard alphabet
        f"{salt[:4]}\n{salt[4:]}:{signature}:{ciphertext}",  # whitespace
    ]
    for variant in variants:
        assert variant != token
        with pytest.raises(InvalidToken, match="base64"):
            c.decode(variant, NOW)
    # The respelt salts are the same bytes to a lenient decoder: a token that
    # base64.urlsafe_b64decode would accept as the original is still refused.
    for s in respelt:
        assert base64.urlsafe_b64decode(s) == base64.urlsafe_b64decode(salt)


@pytest.mark.parametrize(
    "token",
    ["", ":", "::", ":::", "a:b:c", "é:é:é", "x" * 100, "0" * 32 + ":", ":".join(["AAAA"] * 5),
     "0" * 32 + ":AAAA", "0" * 31 + "G:" + "A" * 44, "0" * 32 + ":" + "A" * 43 + "="],
)  # fmt: skip
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        codec().decode(token, NOW)


def test_oversized_token_text_is_refused() -> None:
    c, token = fresh_salted_token(0)
    salt, signature, _ = token.split(":")
    huge = f"{salt}:{signature}:{'A' * MAX_TOKEN_LENGTH}"
    with pytest.raises(InvalidToken, match="longer"):
        c.decode(huge, NOW)
    assert c.is_expensive(huge) is False


# -- expiry ---------------------------------------------------------------------


def test_expiry_is_enforced_from_the_token() -> None:
    c = codec()
    token = c.encode(record(expires_at=NOW + 100))
    assert c.decode(token, NOW + 99).expires_at == NOW + 100
    with pytest.raises(InvalidToken, match="expired"):
        c.decode(token, NOW + 100)
    with pytest.raises(InvalidToken, match="expired"):
        codec().decode(token, NOW + 10**6)  # cold cache too


def test_emmett_still_reads_an_expired_token() -> None:
    # Expiry lives in the authenticated salt, invisible to Emmett: it is
    # asess that refuses the token, not the format.
    token = codec().encode(record(expires_at=NOW - 1))
    assert pickle.loads(emmett_crypto.decrypt_b64(token, KEY)) == DATA


# -- hostile payloads, validly encrypted and signed --------------------------------


HOSTILE: dict[str, tuple[bytes, str]] = {
    "os.system": (hostile_pickle(os.system, "true"), "system is not plain data"),
    "eval": (hostile_pickle(eval, "1"), "eval is not plain data"),
    "getattr": (hostile_pickle(getattr, dict, "fromkeys"), "getattr is not plain data"),
    "reconstructor": (
        b"ccopy_reg\n_reconstructor\n(cdatetime\ndatetime\nc__builtin__\nobject\nNtR.",
        "only admitted for sdict and UUID",
    ),
    "persistent-id": (b"Pfoo\n.", "persistent ids"),
    "list": (pickle.dumps([1, 2]), "not a dict"),
    "int-keys": (pickle.dumps({1: "a"}), "non-text keys"),
    "garbage": (b"\x80\x04garbage", "refused pickle"),
}


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("level", [0, 9])
@pytest.mark.parametrize("form", ["salted", "legacy"])
def test_hostile_payloads_are_refused(name: str, level: int, form: str) -> None:
    payload, reason = HOSTILE[name]
    if level:
        payload = zlib.compress(payload, level)
    if form == "salted":
        token = emmett_crypto.encrypt_b64(payload, KEY)
    else:
        token = legacy_token(payload, KEY)
    # The token is genuine: it is the payload that gets refused.
    with pytest.raises(InvalidToken, match=reason):
        codec(level=level).decode(token, NOW)


@pytest.mark.parametrize("form", ["salted", "legacy"])
def test_zlib_bomb_is_refused(form: str) -> None:
    bomb = zlib.compress(pickle.dumps({"x": "x" * (MAX_PAYLOAD + 1)}), 9)
    assert len(bomb) < 4096
    big_but_fine = zlib.compress(pickle.dumps({"x": "x" * (MAX_PAYLOAD // 2)}), 9)
    seal = emmett_crypto.encrypt_b64 if form == "salted" else legacy_token
    with pytest.raises(InvalidToken, match="inflates"):
        codec(level=9).decode(seal(bomb, KEY), NOW)
    assert len(codec(level=9).decode(seal(big_but_fine, KEY), NOW).data["x"]) == MAX_PAYLOAD // 2


def test_broken_zlib_streams_are_refused() -> None:
    stream = zlib.compress(pickle.dumps({"a": 1}), 9)
    for payload in (stream[:-4], stream + b"junk", stream[:2] + b"\xff" * 20):
        with pytest.raises(InvalidToken):
            codec().decode(emmett_crypto.encrypt_b64(payload, KEY), NOW)


# -- derived-key cache ----------------------------------------------------------------


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Salts passed to PBKDF2 (the real one still runs)."""
    seen: list[bytes] = []
    real = legacy._derive

    def counting(index: int, secret: bytes, salt: bytes) -> Any:
        seen.append(salt)
        return real(index, secret, salt)

    monkeypatch.setattr(legacy, "_derive", counting)
    return seen


def test_just_issued_tokens_skip_key_derivation(derivations: list[bytes]) -> None:
    c = codec()
    assert c.is_expensive(None) is True
    token = c.encode(record())
    assert len(derivations) == 1
    assert c.is_expensive(token) is False
    assert c.decode(token, NOW).data == DATA
    assert len(derivations) == 1


def test_a_cold_token_is_expensive_once(derivations: list[bytes]) -> None:
    token = codec().encode(record())
    c = codec(["other-key", KEY])
    assert c.is_expensive(token) is True
    assert c.decode(token, NOW).reissue is True
    assert len(derivations) == 1 + 1  # encode, then only the key the salt's tag names
    assert c.is_expensive(token) is False
    c.decode(token, NOW)
    assert len(derivations) == 2
    # A token without asess's tag (Emmett's) still costs one try per key, once.
    emmett = emmett_crypto.encrypt_b64(pickle.dumps({"a": 1}), KEY)
    assert c.is_expensive(emmett) is True
    assert c.decode(emmett, NOW).data == {"a": 1}
    assert len(derivations) == 2 + 2
    c.decode(emmett, NOW)
    assert len(derivations) == 4


def test_tampered_token_with_a_cached_salt_runs_no_derivation(derivations: list[bytes]) -> None:
    c = codec([KEY, "old-1", "old-2"])
    token = c.encode(record())
    salt, signature, ciphertext = token.split(":")
    raw = bytearray(b64decode(ciphertext))
    raw[0] ^= 1
    with pytest.raises(InvalidToken):
        c.decode(f"{salt}:{signature}:{b64encode(bytes(raw))}", NOW)
    assert len(derivations) == 1


def _reseal(token: str, payload: bytes, key: str = KEY) -> str:
    """Another payload, validly sealed under the salt of ``token``."""
    salt = b64decode(token.split(":")[0])
    derived = legacy._derive(0, key.encode(), salt)
    ciphertext = legacy._ctr(derived.aes_key, derived.nonce, payload)
    signature = hmac.digest(derived.mac_key, ciphertext, "sha256")
    return ":".join(b64encode(part) for part in (salt, signature, ciphertext))


@pytest.mark.parametrize("vetted_by", ["encode", "decode"])
def test_another_payload_under_a_vetted_salt_is_scanned(vetted_by: str) -> None:
    # The salt's keys are cached and its first payload known good; a second
    # ciphertext under it (a key holder's) must not inherit that: LONG_BINPUT
    # 2**20 would make the C unpickler zero an 8 MiB memo table (2**28: 4 GiB).
    writer = codec()
    token = writer.encode(record())
    c = writer if vetted_by == "encode" else codec()
    assert c.decode(token, NOW).data == DATA
    bomb = _reseal(token, b"\x80\x02}r\x00\x00\x10\x00.")
    with pytest.raises(InvalidToken, match="indexes past"):
        c.decode(bomb, NOW)
    assert c.decode(token, NOW).data == DATA  # the vetted token itself still reads


def test_failed_tokens_are_not_cached() -> None:
    c = codec()
    # Untagged (Emmett's), so only PBKDF2 can refuse it: still expensive after.
    token = emmett_crypto.encrypt_b64(pickle.dumps({"a": 1}), "another-key")
    with pytest.raises(InvalidToken):
        c.decode(token, NOW)
    assert c.is_expensive(token) is True
    # asess's own, under another key: its tag refuses it without a derivation.
    tagged = codec("another-key").encode(record())
    assert c.is_expensive(tagged) is False
    with pytest.raises(InvalidToken, match="tagged"):
        c.decode(tagged, NOW)


def test_legacy_and_malformed_tokens_are_cheap() -> None:
    c = codec(LEGACY_VECTORS[0]["key"])
    assert c.is_expensive(LEGACY_VECTORS[0]["token"]) is False
    assert c.is_expensive("no colon at all") is False
    assert c.is_expensive("!!!:a:b") is False


def test_cache_is_bounded_lru() -> None:
    c = codec(cache_size=2)
    first, second = c.encode(record()), c.encode(record())
    c.decode(first, NOW)  # first is now the most recent
    third = c.encode(record())
    assert [c.is_expensive(t) for t in (first, second, third)] == [False, True, False]
    assert c.decode(second, NOW).data == DATA  # evicted, still decodes


def test_cache_can_be_disabled() -> None:
    c = codec(cache_size=0)
    token = c.encode(record())
    assert c.is_expensive(token) is True
    assert c.decode(token, NOW).data == DATA


def test_threads_share_the_cache_safely() -> None:
    c = codec(cache_size=4)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                data = {"thread": n, "i": i}
                assert c.decode(c.encode(record(data)), NOW).data == data
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(c._cache) <= 4


# -- base64 --------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(0, 40))
def test_b64_round_trip(size: int) -> None:
    raw = os.urandom(size)
    text = b64encode(raw)
    assert text == base64.urlsafe_b64encode(raw).decode()
    assert b64decode(text) == raw


@pytest.mark.parametrize(
    "text",
    [
        "A",
        "AA",
        "AAA",
        "AB==",
        "AAB=",
        "A===",
        "AA=A",
        "+/==",
        "AA==\n",
        " AAA",
        "é===",
        "AAA=AAAA",
    ],
)
def test_b64_refuses_non_canonical_text(text: str) -> None:
    with pytest.raises(ValueError):
        b64decode(text)


def test_decode_raises_nothing_but_invalid_token() -> None:
    c = codec(mapping_factory=lambda d: 1 / 0)  # even a broken factory gives a bad token
    token = emmett_crypto.encrypt_b64(pickle.dumps({"a": sdict()}), KEY)
    with pytest.raises(InvalidToken, match="ZeroDivisionError"):
        c.decode(token, NOW)
