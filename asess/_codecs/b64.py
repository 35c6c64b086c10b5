"""Strict URL-safe base64 (RFC 4648 section 5, with ``=`` padding).

Every byte string has exactly one encoding here. Decoding refuses anything
else (other alphabets, missing or extra padding, non-zero trailing bits,
whitespace), so a token can only be read back from the exact text that was
written: a rewritten encoding of the same bytes counts as tampering.
"""

from __future__ import annotations

import base64
import binascii


def b64encode(data: bytes) -> str:
    """Return the canonical URL-safe base64 text of ``data``."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Return the bytes encoded by ``text``.

    Raises:
        ValueError: ``text`` is not the canonical URL-safe encoding of any bytes.
    """
    if len(text) % 4:
        raise ValueError("base64 text length is not a multiple of 4")
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("invalid base64 text") from exc
    # The stdlib decoder skips stray characters and ignores trailing bits;
    # encoding again and comparing rejects every variant but the canonical one.
    if b64encode(raw) != text:
        raise ValueError("non-canonical base64 text")
    return raw
