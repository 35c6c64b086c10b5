"""Session ids for server-side stores: 256 random bits, and a strict shape check.

A cookie value that is not exactly the shape :func:`new_session_id` produces is
never passed to a store, so no client-chosen string reaches a file path or a
Redis key.
"""

from __future__ import annotations

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
