"""What asess keeps in a legacy token's 32-byte salt, and the keyed tag that marks it as ours.

Emmett draws a token's salt at random and only feeds it to PBKDF2, and the
salt is covered by the MAC, so asess stores metadata there that Emmett never
looks at. Version 2 (written now): magic, version, flags, created, issued,
expires (0: none), lifetime, 8 random bytes and a 4-byte tag,
``HMAC-SHA256(tag key, first 28 bytes || cookie name)[:4]``. The tag key is
derived once per secret, with the same PBKDF2 (1000 rounds) that guards every
token, so the tag gives someone guessing the secret nothing cheaper than the
signature already does. The tag answers two questions before any per-token
key derivation: is this token asess's, and for which key? A forged or foreign
salt passes with probability 2^-32 per key, so garbage costs one HMAC per key
(about 1 us) instead of a PBKDF2 per key (about 0.3 ms). It also binds the
token to its cookie name: moved under another name, the tag no longer matches.
Version 1 (asess 0.1) had 12 random bytes and no tag: still read, never written.
Uniqueness of the salt is what keeps AES-CTR safe: 8 random bytes plus the
timestamps make two equal salts under one key need about 2^32 tokens issued
in the same second with the same times.
"""

from __future__ import annotations

import hmac
import secrets
import struct
from typing import NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from .._exceptions import InvalidToken
from .._record import Record

MAGIC = b"\xa5\x5e"
SIZE = 32
_V1, _V2 = 1, 2
_FLAG_LIFETIME = 0x01
_HEAD = struct.Struct(">2sBBIIII")  # magic, version, flags, created, issued, expires, lifetime
_RANDOM = 8
_TAG = 4
_TAGGED = _HEAD.size + _RANDOM  # the bytes the tag covers, before the cookie name
_TAG_LABEL = b"asess/legacy/v2 salt tag"
_PBKDF2_ROUNDS = 1000


class Times(NamedTuple):
    """The times an asess salt carries."""

    created: float
    issued: float
    expires: float | None
    lifetime: int | None


def tag_key(secret: bytes) -> bytes:
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=_TAG_LABEL, iterations=_PBKDF2_ROUNDS
    )
    return kdf.derive(secret)


class SaltTags:
    """Writes version 2 salts under the first key and tells whose a salt is."""

    __slots__ = ("_cookie", "_keys")

    def __init__(self, secrets_: tuple[bytes, ...], cookie_name: str) -> None:
        self._keys = tuple(tag_key(secret) for secret in secrets_)
        self._cookie = cookie_name.encode("utf-8")

    def _tag(self, index: int, head: bytes) -> bytes:
        return hmac.digest(self._keys[index], head + self._cookie, "sha256")[:_TAG]

    def new_salt(self, record: Record) -> bytes:
        lifetime, expires = record.lifetime, record.expires_at
        try:
            head = _HEAD.pack(
                MAGIC,
                _V2,
                _FLAG_LIFETIME if lifetime is not None else 0,
                int(record.created_at),
                int(record.issued_at),
                int(expires) if expires is not None else 0,
                lifetime if lifetime is not None else 0,
            ) + secrets.token_bytes(_RANDOM)
        except struct.error as exc:
            raise ValueError(
                "record times and lifetime must be whole seconds between 0 and 2**32 - 1"
            ) from exc
        return head + self._tag(0, head)

    def owner(self, salt: bytes) -> int | None:
        """The index of the key that tagged this version 2 salt for this cookie, else None.

        Raises:
            InvalidToken: a version 2 salt no key of ours tagged for this cookie
                (forged, another cookie's, or another key ring's).
        """
        if len(salt) != SIZE or salt[:2] != MAGIC or salt[2] != _V2:
            return None
        head, tag = salt[:_TAGGED], salt[_TAGGED:]
        for index in range(len(self._keys)):
            if hmac.compare_digest(self._tag(index, head), tag):
                return index
        raise InvalidToken("salt not tagged by our keys for this cookie")


def times(salt: bytes, now: float, *, tagged: bool) -> Times | None:
    """The times in an asess salt (version 2 once its tag checked, or 1); None for others.

    Raises:
        InvalidToken: the token has expired.
    """
    magic, version, flags, created, issued, expires, lifetime = _HEAD.unpack_from(salt)
    if magic != MAGIC or flags & ~_FLAG_LIFETIME or version != (_V2 if tagged else _V1):
        return None
    if expires and expires <= now:
        raise InvalidToken("expired")
    return Times(
        float(created),
        float(issued),
        float(expires) if expires else None,
        lifetime if flags & _FLAG_LIFETIME else None,
    )
