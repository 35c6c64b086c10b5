"""The ``modern`` cookie codec: records sealed with AES-256-GCM under per-token subkeys.

A token reads ``as1.`` followed by unpadded URL-safe base64 of
``kid(4) | salt(16) | ciphertext | tag(16)``. Each secret is stretched once,
when the codec is built, with HKDF-SHA256 into a 256-bit master key and a 4-byte
key id; the key id lets ``decode`` pick its key directly. Every token then gets
its own AES-256-GCM key, ``HKDF-Expand(master, info=salt)`` over a fresh 16-byte
random salt, used once with a fixed nonce. GCM's usual cap on random 96-bit
nonces (2^32 messages per key, NIST SP 800-38D) does not apply: a key repeats only if
two salts collide, with probability below q^2 / 2^129, about 2^-33 after
q = 2^48 tokens under one secret. AES-GCM-SIV with random nonces was measured
too: a little slower at 1 kB (7 vs 6 us per round trip), nine times slower at
16 kB (70 vs 8 us), and it needs OpenSSL 3.2. The associated data binds the
format version, the key id and the cookie name, so a token minted for one
cookie is refused under another. The sealed plaintext is a fixed binary header
(flags, created_at, issued_at, expires_at, lifetime) followed by the session
data as orjson, zlib-compressed when that is enabled and makes it smaller.
Secrets must be long and random: HKDF does not slow down guessing.
"""

from __future__ import annotations

import binascii
import hmac
import math
import os
import struct
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._exceptions import ConfigurationError, InvalidToken, SessionTooLarge
from .._keys import KeyRing, Secret
from .._record import Record
from .._serialize import ESCAPED, PLAIN, TAGGED, dump_data, load_data
from .base import TokenCodec

PREFIX = "as1."
MAX_TOKEN_CHARS = 64 * 1024
MAX_DATA_BYTES = 1024 * 1024  # decompressed size cap: a small token cannot inflate to gigabytes
# Decode cost grows with the token. Measured (CPython 3.11, shared 2-core box): 11 us
# for a 1.5k-char token, 40 us at 10k, 85 us at 20k when the data is plain JSON; data
# holding datetimes etc. costs about twice that (the serializer's restore walk) and
# crosses 50 us near 5k chars. A thread hop costs tens of us, so past 8 KiB decode
# goes to a thread. Compressed tokens inflate about 5x (a 3.1k-char token held 15 kB
# and cost 56-166 us), hence a quarter of the threshold when compression is on.
EXPENSIVE_TOKEN_CHARS = 8 * 1024

_KID_LEN = 4
_SALT_LEN = 16
_TAG_LEN = 16
_NONCE = bytes(12)  # every subkey seals exactly one message, so a fixed nonce is safe
_ISSUED_KEYS = 4096  # subkeys of recently sealed tokens kept per key (about 1 MB at most)
_HEADER = struct.Struct("<Bdddq")  # flags, created_at, issued_at, expires_at, lifetime
_MIN_RAW = _KID_LEN + _SALT_LEN + _TAG_LEN + _HEADER.size
_F_COMPRESSED = 0x01
_F_TAGGED = 0x02
# Dicts of the application's own with the marker key are escaped (serializer
# format 2): a separate flag, so asess 0.1 refuses these tokens instead of
# misreading them, and reads every other token as before.
_F_ESCAPED = 0x04
_F_TAGS = _F_TAGGED | _F_ESCAPED
_ENCODING_FLAGS = {PLAIN: 0, TAGGED: _F_TAGGED, ESCAPED: _F_TAGGED | _F_ESCAPED}
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STD = bytes.maketrans(b"-_", b"+/")
_TO_URL = bytes.maketrans(b"+/", b"-_")
_AAD_HEAD = PREFIX.encode("ascii")


def _b64encode(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URL).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict unpadded URL-safe base64: one byte string has exactly one spelling."""
    if not text.isascii():
        raise InvalidToken("bad base64")
    chars = text.encode("ascii")
    # a2b_base64 skips characters outside its alphabet, so refuse them here first.
    if chars.translate(None, _B64_ALPHABET) or len(chars) % 4 == 1:
        raise InvalidToken("bad base64")
    # A final partial group leaves low bits unused; only all-zero ones are canonical.
    rest = len(chars) % 4
    if rest and _B64_ALPHABET.index(chars[-1]) & (0x0F if rest == 2 else 0x03):
        raise InvalidToken("non-canonical base64")
    return binascii.a2b_base64(chars.translate(_TO_STD) + b"=" * (-len(chars) % 4))


class _Key:
    """One secret's derived material: its key id and the master key for subkeys."""

    __slots__ = ("current", "issued", "kid", "master")

    def __init__(self, secret: Secret, current: bool) -> None:
        self.master = _hkdf(secret, b"asess/modern/v1 aead", 32)
        self.kid = _hkdf(secret, b"asess/modern/v1 key-id", _KID_LEN)
        self.current = current
        # Subkeys of the tokens this process sealed last, by salt: the next
        # request of a browser brings back the token it was just given, and
        # opening it then skips the HMAC and the cipher setup (2-3 us). Only
        # our own salts go in, so tokens sent by anyone else cannot fill it.
        self.issued: dict[bytes, AESGCM] = {}

    def aead(self, salt: bytes) -> AESGCM:
        cached = self.issued.get(salt)
        if cached is not None:
            return cached
        # The master key is already uniform, so Expand alone (no Extract) makes the subkey.
        # HKDF-Expand to one SHA-256 block is exactly HMAC(master, info || 0x01)
        # (RFC 5869); the C HMAC gives the same bytes as HKDFExpand at a third the cost.
        return AESGCM(hmac.digest(self.master, salt + b"\x01", "sha256"))

    def seal_key(self, salt: bytes) -> AESGCM:
        """The subkey for a fresh ``salt``, remembered for when the token comes back."""
        aead = self.aead(salt)
        if len(self.issued) >= _ISSUED_KEYS:
            self.issued.clear()  # a burst of new browsers: start over rather than track age
        self.issued[salt] = aead
        return aead


def _hkdf(secret: Secret, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret.value)


class ModernCodec(TokenCodec):
    """Authenticated, encrypted cookie tokens; ``keys.current`` seals, every key opens."""

    def __init__(self, keys: KeyRing, cookie_name: str, compression_level: int = 0) -> None:
        if not 0 <= compression_level <= 9:
            raise ConfigurationError(
                f"compression_level={compression_level!r}: use 0 (off) or a zlib level 1-9"
            )
        self._level = compression_level
        self._expensive = EXPENSIVE_TOKEN_CHARS // 4 if compression_level else EXPENSIVE_TOKEN_CHARS
        self._cookie = cookie_name.encode("utf-8")
        self._current = _Key(keys.current, current=True)
        # Two secrets share a key id with probability 2^-32 per pair; keep both and try each.
        self._by_kid: dict[bytes, list[_Key]] = {}
        seen: set[Secret] = set()
        for i, secret in enumerate(keys):
            if secret in seen:
                continue
            seen.add(secret)
            key = self._current if i == 0 else _Key(secret, current=False)
            self._by_kid.setdefault(key.kid, []).append(key)

    def _aad(self, kid: bytes) -> bytes:
        return _AAD_HEAD + kid + self._cookie

    def encode(self, record: Record) -> str:
        if record.lifetime is not None and record.lifetime < 0:
            raise ValueError(f"record lifetime {record.lifetime} is negative")
        body, encoding = record.encoded or dump_data(record.data)
        flags = _ENCODING_FLAGS[encoding]
        # Never compress past what decode agrees to inflate.
        if self._level and len(body) <= MAX_DATA_BYTES:
            packed = zlib.compress(body, self._level)
            if len(packed) < len(body):
                body, flags = packed, flags | _F_COMPRESSED
        header = _HEADER.pack(
            flags,
            record.created_at,
            record.issued_at,
            math.nan if record.expires_at is None else record.expires_at,
            -1 if record.lifetime is None else record.lifetime,
        )
        key, salt = self._current, os.urandom(_SALT_LEN)
        sealed = key.seal_key(salt).encrypt(_NONCE, header + body, self._aad(key.kid))
        token = PREFIX + _b64encode(key.kid + salt + sealed)
        if len(token) > MAX_TOKEN_CHARS:
            raise SessionTooLarge(
                f"the session encodes to {len(token)} characters, over the "
                f"{MAX_TOKEN_CHARS} a token may hold; store less data or use a server-side store"
            )
        return token

    def decode(self, token: str, now: float) -> Record:
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("oversized token")
        if not token.startswith(PREFIX):
            raise InvalidToken("unknown version")
        raw = _b64decode(token[len(PREFIX) :])
        if len(raw) < _MIN_RAW:
            raise InvalidToken("truncated token")
        kid = raw[:_KID_LEN]
        salt = raw[_KID_LEN : _KID_LEN + _SALT_LEN]
        sealed = raw[_KID_LEN + _SALT_LEN :]
        candidates = self._by_kid.get(kid)
        if candidates is None:
            raise InvalidToken("unknown key id")
        aad = self._aad(kid)
        for key in candidates:
            try:
                plain = key.aead(salt).decrypt(_NONCE, sealed, aad)
            except InvalidTag:
                continue
            record = _parse(plain, now)
            record.reissue = not key.current
            return record
        raise InvalidToken("authentication failed")

    def is_expensive(self, token: str | None) -> bool:
        # Encoding is cheaper than decoding (28 us for a 20k-char token, 66 us with
        # compression) and its size is unknown until the data is serialized: inline.
        return token is not None and len(token) > self._expensive


def _parse(plain: bytes, now: float) -> Record:
    """Turn authenticated plaintext into a Record; only our own bugs make this fail."""
    flags, created, issued, expires, lifetime = _HEADER.unpack_from(plain)
    # Escaped data is always tagged too: an escape flag alone is no flag we write.
    if flags & ~(_F_COMPRESSED | _F_TAGGED | _F_ESCAPED) or flags & _F_TAGS == _F_ESCAPED:
        raise InvalidToken("unknown flags")
    if not (math.isfinite(created) and math.isfinite(issued)) or lifetime < -1:
        raise InvalidToken("bad header")
    expires_at = None if math.isnan(expires) else expires
    if expires_at is not None and expires_at <= now:
        raise InvalidToken("expired")
    body = plain[_HEADER.size :]
    if flags & _F_COMPRESSED:
        body = _inflate(body)
    encoding = ESCAPED if flags & _F_ESCAPED else TAGGED if flags & _F_TAGGED else PLAIN
    try:
        data = load_data(body, encoding)
    except ValueError as exc:  # the serializer's one error for anything undecodable
        raise InvalidToken(f"bad payload ({exc})") from None
    return Record(
        data=data,
        created_at=created,
        issued_at=issued,
        expires_at=expires_at,
        lifetime=None if lifetime == -1 else lifetime,
        # Authenticated, so written by our encoder: plain orjson text, which is
        # what the serializer writes again for the data it decodes to.
        body=body if encoding == PLAIN else None,
    )


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, MAX_DATA_BYTES)
    except zlib.error:
        raise InvalidToken("bad compressed data") from None
    if inflater.unconsumed_tail:
        raise InvalidToken("compressed data inflates past the size limit")
    if not inflater.eof or inflater.unused_data:
        raise InvalidToken("bad compressed data")
    return out
