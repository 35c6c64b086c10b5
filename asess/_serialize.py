"""Session data <-> bytes for server-side stores and digests: orjson, never pickle.

JSON covers most session data. A few more types that sessions commonly hold
(datetimes, ``Decimal``, ``set``, ``bytes``...) are written as tagged objects
``{"\\u0000": [tag, value]}`` and restored on load. The walk that restores them
only runs when the encoder actually tagged something, so plain sessions decode
at orjson speed. UUIDs and tuples follow orjson: they come back as str and list.
Framework adapters add their own types with :func:`register_type` (Emmett's
lazy translations), so framework specifics stay in the adapter.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from ._exceptions import SessionError
from ._record import Record

FORMAT_VERSION = 1
_TAG = "\x00"
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME
#: Types added by :func:`register_type`: exact type -> (tag, encoder).
_EXTENSIONS: dict[type, tuple[str, Callable[[Any], Any]]] = {}


class _Tagger:
    """orjson ``default`` hook that remembers whether it tagged anything."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = False

    def __call__(self, value: Any) -> Any:
        self.used = True
        if isinstance(value, dt.datetime):
            return {_TAG: ["dt", value.isoformat()]}
        if isinstance(value, dt.date):
            return {_TAG: ["d", value.isoformat()]}
        if isinstance(value, dt.time):
            return {_TAG: ["t", value.isoformat()]}
        if isinstance(value, dt.timedelta):
            return {_TAG: ["td", [value.days, value.seconds, value.microseconds]]}
        if isinstance(value, Decimal):
            return {_TAG: ["dec", str(value)]}
        if isinstance(value, (set, frozenset)):
            return {_TAG: ["set", list(value)]}
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {_TAG: ["b", base64.b64encode(bytes(value)).decode("ascii")]}
        extension = _EXTENSIONS.get(type(value))
        if extension is not None:
            return {_TAG: [extension[0], extension[1](value)]}
        raise TypeError(f"{type(value).__name__} values cannot be stored in a session")


def _td(v: Any) -> dt.timedelta:
    return dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])


_UNTAG: dict[str, Callable[[Any], Any]] = {
    "dt": dt.datetime.fromisoformat,
    "d": dt.date.fromisoformat,
    "t": dt.time.fromisoformat,
    "td": _td,
    "dec": Decimal,
    "set": lambda v: set(_restore(v)),
    "b": lambda v: base64.b64decode(v, validate=True),
}


def register_type(
    kind: type, tag: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]
) -> None:
    """Let sessions hold values of exactly ``kind``, tagged as ``tag``.

    ``encode`` turns a value into storable data (itself encoded in turn, so it
    may hold datetimes or other registered types); ``decode`` receives that
    data restored and rebuilds the value, raising ``ValueError`` or
    ``TypeError`` on data it does not accept. Registering again for the same
    type and tag replaces the functions.

    Raises:
        ValueError: ``tag`` is taken by another type or by a built-in tag.
    """
    builtin = tag in _UNTAG and all(tag != t for t, _ in _EXTENSIONS.values())
    taken = [k for k, (t, _) in _EXTENSIONS.items() if t == tag and k is not kind]
    if builtin or taken:
        raise ValueError(f"the session type tag {tag!r} is taken: choose another")
    _EXTENSIONS[kind] = (tag, encode)
    _UNTAG[tag] = lambda v: decode(_restore(v))


def _restore(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _TAG in value:
            tag, inner = value[_TAG]
            return _UNTAG[tag](inner)
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def dump_data(data: dict[str, Any]) -> tuple[bytes, bool]:
    """Encode session data; returns the JSON bytes and whether any value was tagged.

    Raises:
        SessionError: a value has a type sessions cannot store.
    """
    tagger = _Tagger()
    try:
        return orjson.dumps(data, default=tagger, option=_OPTIONS), tagger.used
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise SessionError(
            f"the session holds data that cannot be stored ({exc}); "
            "keep to JSON types, datetimes, Decimal, set and bytes"
        ) from exc


def load_data(raw: bytes | str, tagged: bool) -> dict[str, Any]:
    """Decode what :func:`dump_data` wrote. Raises ValueError on malformed input."""
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("session data is not a JSON object")
    if tagged:
        try:
            restored: dict[str, Any] = _restore(data)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"bad tagged value: {exc}") from exc
        return restored
    return data


def digest(data: dict[str, Any]) -> bytes:
    """A fingerprint of the data, to tell at save time whether anything changed.

    Data that cannot be encoded (non-str keys from an old pickle, exotic types)
    gets a unique fingerprint, so it always counts as changed and the store's
    own encoder reports the problem at save time, not at load.
    """
    try:
        raw = orjson.dumps(data, default=_Tagger(), option=_OPTIONS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return os.urandom(16)
    return hashlib.blake2b(raw, digest_size=16).digest()


def dump_record(record: Record) -> bytes:
    """Encode a whole record (data plus expiry times) for a server-side store."""
    body, tagged = dump_data(record.data)
    head = orjson.dumps(
        {
            "v": FORMAT_VERSION,
            "c": record.created_at,
            "i": record.issued_at,
            "e": record.expires_at,
            "l": record.lifetime,
            "t": tagged,
        }
    )
    # The data is spliced in as already-encoded JSON so it is serialized once.
    return head[:-1] + b',"d":' + body + b"}"


def load_record(raw: bytes | str) -> Record:
    """Decode what :func:`dump_record` wrote. Raises ValueError on malformed input."""
    obj = orjson.loads(raw)
    if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
        raise ValueError("not an asess record of a known version")
    data = obj.get("d")
    created, issued, lifetime = obj.get("c"), obj.get("i"), obj.get("l")
    expires = obj.get("e")
    if not isinstance(data, dict):
        raise ValueError("record data is not an object")
    if not isinstance(created, (int, float)) or not isinstance(issued, (int, float)):
        raise ValueError("record times are missing")
    if expires is not None and not isinstance(expires, (int, float)):
        raise ValueError("record expiry is not a number")
    if lifetime is not None and (not isinstance(lifetime, int) or lifetime < 0):
        raise ValueError("record lifetime is not a non-negative integer")
    if obj.get("t"):
        try:
            data = _restore(data)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"bad tagged value: {exc}") from exc
    return Record(
        data=data,
        created_at=float(created),
        issued_at=float(issued),
        expires_at=None if expires is None else float(expires),
        lifetime=lifetime,
    )
