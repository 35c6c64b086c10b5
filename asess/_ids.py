"""Session ids for server-side stores: 256 random bits, and a strict shape check.

A cookie value that is not exactly the shape :func:`new_session_id` produces is
never passed to a store, so no client-chosen string reaches a file path or a
Redis key.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

_ID_BYTES = 32  # 256 bits
_ID_LENGTH = 43  # len(urlsafe_b64encode(32 bytes)) without padding
_ID_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{_ID_LENGTH}}}", re.ASCII)


def new_session_id() -> str:
    """A fresh URL-safe id carrying 256 bits from :mod:`secrets`."""
    return secrets.token_urlsafe(_ID_BYTES)


def is_session_id(value: str) -> bool:
    """True only for strings shaped exactly like :func:`new_session_id` output."""
    return len(value) == _ID_LENGTH and _ID_SHAPE.fullmatch(value) is not None


def handle_of(sid: str) -> str:
    """The public handle of session ``sid``: stable, short, and no way back to the id.

    A keyed-less BLAKE2b digest (128 bits, its own personalization) of an id
    that carries 256 random bits: showing handles in a page or a log gives
    nobody a session, and every process derives the same handle.
    """
    digest = hashlib.blake2b(sid.encode(), digest_size=16, person=b"asess-handle").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def derived_id(kind: bytes, name: str) -> str:
    """A session-id-shaped key for asess's own records (``kind`` names their purpose)."""
    digest = hashlib.blake2b(name.encode(), digest_size=32, person=kind[:16]).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
