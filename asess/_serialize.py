"""Session data <-> bytes for server-side stores, modern tokens and digests: orjson, never pickle.

JSON covers most session data. A few more types that sessions commonly hold
(datetimes, ``Decimal``, ``set``, ``bytes``...) are written as tagged objects
``{"\\u0000": [tag, value]}`` and restored on load. A dict of the application's
own that has the key ``"\\u0000"`` (say, client JSON stored as is) would read
as a tag, so it is escaped as ``{"\\u0000": ["o", dict]}`` and comes back as
itself. The escape is format version 2; data that needs none is written as
version 1, which asess 0.1 reads the same way, so rolling upgrades keep
sessions, and 0.1 refuses a version 2 record instead of misreading it.
Decoding is total: anything that does not decode raises ``ValueError``, which
every store turns into "no session". The restore walk only runs when the
encoder tagged something, so plain sessions decode at orjson speed. UUIDs and
tuples follow orjson: they come back as str and list. Framework adapters add
their own types with :func:`register_type` (Emmett's lazy translations), so
framework specifics stay in the adapter.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from ._exceptions import SessionError
from ._record import Record

#: The record version written when nothing needed escaping (asess 0.1 reads it).
FORMAT_VERSION = 1
#: The record version written when a dict of the application's had the marker key.
ESCAPED_VERSION = 2
#: What :func:`dump_data` reports: nothing tagged, typed values only, escaped dicts too.
PLAIN, TAGGED, ESCAPED = 0, 1, 2

_TAG = "\x00"
_ESCAPE = "o"
# How orjson spells the marker key, and so how often the encoded text holds it.
# A lone backslash is looked for first: JSON text only has one where a string
# needed an escape, and a one-byte search (memchr) takes 0.17 us on 1 kB where
# the whole key takes 0.5 us, a third of orjson's own time.
_BACKSLASH = b"\\"
_TAG_KEY = b'"\\u0000":'
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME
# What the constructors in the restore walk raise on bad input (DecimalException
# and OverflowError are ArithmeticErrors; a hostile record can nest 1024 deep).
_RESTORE_ERRORS = (ValueError, TypeError, LookupError, ArithmeticError, RecursionError)
#: Types added by :func:`register_type`: exact type -> (tag, encoder), and tag -> decoder.
_EXTENSIONS: dict[type, tuple[str, Callable[[Any], Any]]] = {}
_EXTENSION_DECODERS: dict[str, Callable[[Any], Any]] = {}


class _Tagger:
    """orjson ``default`` hook that counts the tagged objects it writes."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, value: Any) -> Any:
        self.count += 1
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
            # Tuples and frozensets would come back as lists and sets, which a
            # set cannot hold: refuse them now rather than fail every later load.
            for member in value:
                if isinstance(member, (tuple, frozenset)):
                    kind = type(member).__name__
                    raise TypeError(f"a set holding a {kind}, which would load back unhashable")
            return {_TAG: ["set", list(value)]}
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {_TAG: ["b", base64.b64encode(bytes(value)).decode("ascii")]}
        extension = _EXTENSIONS.get(type(value))
        if extension is not None:
            return {_TAG: [extension[0], extension[1](value)]}
        raise TypeError(f"{type(value).__name__} values cannot be stored in a session")


def _escape(value: Any) -> Any:
    """A copy of ``value`` with every dict holding the marker key wrapped as an escape."""
    if isinstance(value, dict):
        copy = {k: _escape(v) for k, v in value.items()}
        return {_TAG: [_ESCAPE, copy]} if _TAG in value else copy
    if isinstance(value, (list, tuple)):
        return [_escape(v) for v in value]
    return value


def _encode(data: dict[str, Any], option: int) -> tuple[bytes, int]:
    tagger = _Tagger()
    raw = orjson.dumps(data, default=tagger, option=option)
    if not tagger.count:
        if _BACKSLASH not in raw or _TAG_KEY not in raw:
            return raw, PLAIN
    elif raw.count(_TAG_KEY) == tagger.count:
        return raw, TAGGED  # every marker key in the text is one the tagger wrote
    tagger.count = 0
    return orjson.dumps(_escape(data), default=tagger, option=option), ESCAPED


def dump_data(data: dict[str, Any]) -> tuple[bytes, int]:
    """Encode session data; returns the JSON bytes and PLAIN, TAGGED or ESCAPED.

    Raises:
        SessionError: a value has a type sessions cannot store.
    """
    try:
        return _encode(data, _OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        # orjson's own message names the type it gave up on; the hook's says why.
        reason = exc.__cause__ if isinstance(exc.__cause__, TypeError) else exc
        raise SessionError(
            f"the session holds data that cannot be stored ({reason}); keep to JSON "
            "types, datetimes, Decimal, bytes and sets of plain values"
        ) from exc


def _text(v: Any) -> str:
    if type(v) is not str:
        raise TypeError("tagged value is not text")
    return v


def _td(v: Any) -> dt.timedelta:
    if type(v) is not list or len(v) != 3 or any(type(n) is not int for n in v):
        raise TypeError("timedelta is not three integers")
    return dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])


def _set(v: Any, escapes: bool) -> set[Any]:
    if type(v) is not list:
        raise TypeError("set members are not a list")
    return {_restore(m, escapes) for m in v}


def _bytes(v: Any) -> bytes:
    try:
        return base64.b64decode(_text(v), validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


_UNTAG: dict[str, Callable[[Any], Any]] = {
    "dt": lambda v: dt.datetime.fromisoformat(_text(v)),
    "d": lambda v: dt.date.fromisoformat(_text(v)),
    "t": lambda v: dt.time.fromisoformat(_text(v)),
    "td": _td,
    "dec": lambda v: Decimal(_text(v)),
    "b": _bytes,
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
    builtin = tag in _UNTAG or tag in ("set", _ESCAPE)
    taken = [k for k, (t, _) in _EXTENSIONS.items() if t == tag and k is not kind]
    if builtin or taken:
        raise ValueError(f"the session type tag {tag!r} is taken: choose another")
    _EXTENSIONS[kind] = (tag, encode)
    _EXTENSION_DECODERS[tag] = decode


def _restore(value: Any, escapes: bool) -> Any:
    if type(value) is dict:
        if _TAG not in value:
            return {k: _restore(v, escapes) for k, v in value.items()}
        tagged = value[_TAG]
        if len(value) != 1 or type(tagged) is not list or len(tagged) != 2:
            raise ValueError("malformed tagged value")
        tag, inner = tagged
        if tag == "set":
            return _set(inner, escapes)
        if tag == _ESCAPE and escapes:
            if type(inner) is not dict or _TAG not in inner:
                raise ValueError("malformed escaped dict")
            return {k: _restore(v, escapes) for k, v in inner.items()}
        untag = _UNTAG.get(tag) if type(tag) is str else None
        if untag is not None:
            return untag(inner)
        decode = _EXTENSION_DECODERS.get(tag) if type(tag) is str else None
        if decode is None:
            raise ValueError(f"unknown tag {tag!r}")
        return decode(_restore(inner, escapes))
    if type(value) is list:
        return [_restore(v, escapes) for v in value]
    return value


def _restored(data: dict[str, Any], encoding: int) -> dict[str, Any]:
    if encoding == PLAIN:
        return data
    try:
        restored: dict[str, Any] = _restore(data, escapes=encoding == ESCAPED)
    except _RESTORE_ERRORS as exc:
        raise ValueError(f"bad tagged value ({type(exc).__name__}: {exc})") from None
    return restored


def load_data(raw: bytes | str, encoding: int) -> dict[str, Any]:
    """Decode what :func:`dump_data` wrote. Raises ValueError, only, on any bad input."""
    data = orjson.loads(raw)
    if type(data) is not dict:
        raise ValueError("session data is not a JSON object")
    return _restored(data, encoding)


def fingerprint(data: dict[str, Any]) -> tuple[bytes, int | None]:
    """The data's encoding, to tell whether anything changed, and its kind when storable.

    The fingerprint is the encoded text itself: comparing two of about a
    kilobyte costs less than hashing one, and when the data is to be saved
    the same bytes are written (the kind, PLAIN, TAGGED or ESCAPED, says how),
    so a changed session is encoded once per save, not once to compare and
    again to write. It uses the stores' own escaping, so no two different
    sessions share one. Data with non-str keys (an old pickle) is fingerprinted
    with them written as text and kind ``None``: comparable, but not storable
    as is, so the writer's own encoder reports the problem at save time. Data
    that cannot be encoded at all gets a random fingerprint, so it always
    counts as changed.
    """
    try:
        return _encode(data, _OPTIONS)
    except TypeError:
        pass
    try:
        raw, _ = _encode(data, _OPTIONS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return b"\x00" + os.urandom(16), None  # no JSON text starts with a NUL
    return raw, None


def digest(data: dict[str, Any]) -> bytes:
    """The fingerprint of :func:`fingerprint`, alone: equal exactly when the encodings are."""
    return fingerprint(data)[0]


def _head(
    version: int, created: Any, issued: Any, expires: Any, lifetime: Any, tagged: Any
) -> bytes:
    """The record text before the data: ``{"v":..,"t":..,"d":``."""
    head = orjson.dumps(
        {"v": version, "c": created, "i": issued, "e": expires, "l": lifetime, "t": tagged}
    )
    return head[:-1] + b',"d":'


def dump_record(record: Record) -> bytes:
    """Encode a whole record (data plus expiry times) for a server-side store."""
    body, encoding = record.encoded or dump_data(record.data)
    version = ESCAPED_VERSION if encoding == ESCAPED else FORMAT_VERSION
    head = _head(
        version,
        record.created_at,
        record.issued_at,
        record.expires_at,
        record.lifetime,
        encoding != PLAIN,
    )
    # The data is spliced in as already-encoded JSON so it is serialized once.
    return head + body + b"}"


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def load_record(raw: bytes | str) -> Record:
    """Decode what :func:`dump_record` wrote. Raises ValueError, only, on any bad input.

    Version 1 records (asess 0.1, and ours without escapes) read as 0.1 read
    them: a marker-key dict is a tag, and one that is not a valid tag makes the
    record undecodable.
    """
    try:
        obj = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    version = obj.get("v") if type(obj) is dict else None
    if type(version) is not int or version not in (FORMAT_VERSION, ESCAPED_VERSION):
        raise ValueError("not an asess record of a known version")
    data = obj.get("d")
    created, issued, lifetime = obj.get("c"), obj.get("i"), obj.get("l")
    expires = obj.get("e")
    if type(data) is not dict:
        raise ValueError("record data is not an object")
    if not _number(created) or not _number(issued):
        raise ValueError("record times are missing")
    if expires is not None and not _number(expires):
        raise ValueError("record expiry is not a number")
    if lifetime is not None and (type(lifetime) is not int or lifetime < 0):
        raise ValueError("record lifetime is not a non-negative integer")
    tagged = obj.get("t")
    if tagged not in (True, False, None):
        raise ValueError("record tag flag is not a boolean")
    encoding = PLAIN if not tagged else ESCAPED if version == ESCAPED_VERSION else TAGGED
    return Record(
        data=_restored(data, encoding),
        created_at=float(created),
        issued_at=float(issued),
        expires_at=None if expires is None else float(expires),
        lifetime=lifetime,
        body=_own_body(raw, obj) if encoding == PLAIN else None,
    )


def _own_body(raw: bytes | str, obj: dict[str, Any]) -> bytes | None:
    """The data's bytes in ``raw`` when the record is laid out as :func:`dump_record` writes.

    Plain JSON that orjson wrote is what orjson writes again for the data it
    decodes to, so those bytes are the loaded data's fingerprint. Records laid
    out any other way (another writer, other spacing) give None, and their
    data is fingerprinted by encoding it.
    """
    if type(raw) is not bytes or raw[-1:] != b"}":
        return None
    head = _head(obj["v"], obj["c"], obj["i"], obj.get("e"), obj.get("l"), obj.get("t"))
    if not raw.startswith(head):
        return None
    return raw[len(head) : -1]
