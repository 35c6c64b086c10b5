"""Pickle restricted to plain data, for reading and writing Emmett's cookie payloads.

Emmett stores a pickled ``sdict`` in its session cookies, so reading them means
unpickling. The unpickler here resolves no global except the handful of
constructors that plain-data pickles reference (``datetime``, ``Decimal``,
``UUID``, sets, ``bytearray``, ``complex``, Emmett's ``sdict``) and, for
protocols 0-2, guarded stand-ins for the helpers those pickles call
(``copyreg._reconstructor``, ``_codecs.encode``). Foreign bytes first go
through an opcode scan (:mod:`.opscan`) that refuses memo bombs and nesting
deeper than ``MAX_DEPTH`` before the C unpickler builds or hashes anything.
Every loaded value is then
walked once: types are checked, datetimes re-validated, cycles and deep nesting
refused, and each ``sdict`` handed to ``mapping_factory``. :func:`dumps_plain`
writes the same subset, with the pickle protocol Emmett itself writes.
"""

from __future__ import annotations

import datetime as dt
import io
import pickle
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from .opscan import scan

#: Where Emmett's ``sdict`` (and its auto-growing variant) has been importable from.
SDICT_PATHS: frozenset[tuple[str, str]] = frozenset(
    {
        ("emmett_core.datastructures", "sdict"),
        ("emmett_core.datastructures", "gsdict"),
        ("emmett.datastructures", "sdict"),
        ("weppy.datastructures", "sdict"),
    }
)
#: Protocol of the pickles Emmett writes on Python 3.8+ (``pickle.DEFAULT_PROTOCOL``).
PICKLE_PROTOCOL = 4
#: Longest admitted chain of nested containers.
MAX_DEPTH = 100

_NoneType = type(None)
_LEAF_TYPES: frozenset[type] = frozenset(
    {
        str,
        bytes,
        bytearray,
        int,
        float,
        complex,
        bool,
        _NoneType,
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        dt.timezone,
        Decimal,
        uuid.UUID,
    }
)


class _Sdict(dict[Any, Any]):
    """What an ``sdict`` loads as, until the walk hands it to ``mapping_factory``."""

    __slots__ = ()


class _Base:
    """A base class named in a protocol 0/1 pickle: only ``_reconstructor`` accepts it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_OBJECT_BASE = _Base("object")
_DICT_BASE = _Base("dict")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Protocols 0/1 build dict subclasses and slotted objects through
    # copyreg._reconstructor(cls, base, state); only the two shapes that plain
    # data produces are rebuilt, without calling anything else.
    if cls is _Sdict and base is _DICT_BASE and type(state) is dict:
        return _Sdict(state)
    if cls is uuid.UUID and base is _OBJECT_BASE and state is None:
        return object.__new__(uuid.UUID)
    raise pickle.UnpicklingError("copyreg._reconstructor is only admitted for sdict and UUID")


def _latin1(text: Any, encoding: Any) -> bytes:
    # Protocols 0-2 spell bytes as _codecs.encode(text, "latin1").
    if type(text) is str and encoding in ("latin1", "latin-1"):
        return text.encode("latin-1")
    raise pickle.UnpicklingError("_codecs.encode is only admitted for latin-1 text")


def _empty_bytes() -> bytes:
    # Protocols 0-2 spell b"" as bytes(); bytes(n) would allocate n bytes.
    return b""


def _bytearray(source: Any = b"") -> bytearray:
    # bytearray(n) would allocate n bytes: only copying bytes is admitted.
    if type(source) is bytes:
        return bytearray(source)
    raise pickle.UnpicklingError("bytearray is only admitted from bytes")


def _safe_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("datetime", "datetime"): dt.datetime,
        ("datetime", "date"): dt.date,
        ("datetime", "time"): dt.time,
        ("datetime", "timedelta"): dt.timedelta,
        ("datetime", "timezone"): dt.timezone,
        ("decimal", "Decimal"): Decimal,
        ("uuid", "UUID"): uuid.UUID,
        ("_codecs", "encode"): _latin1,
    }
    builtins: dict[str, Any] = {
        "set": set,
        "frozenset": frozenset,
        "complex": complex,
        "bytearray": _bytearray,
        "bytes": _empty_bytes,
        "object": _OBJECT_BASE,
        "dict": _DICT_BASE,
    }
    # fix_imports is off, so protocol 0-2 pickles arrive with Python 2 names.
    for module in ("builtins", "__builtin__"):
        table.update({(module, name): value for name, value in builtins.items()})
    for module in ("copyreg", "copy_reg"):
        table[(module, "_reconstructor")] = _reconstructor
    table.update(dict.fromkeys(SDICT_PATHS, _Sdict))
    return table


_SAFE_GLOBALS = _safe_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, allowed: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(io.BytesIO(data), fix_imports=False)
        self._allowed = allowed

    def find_class(self, module_name: str, global_name: str, /) -> Any:
        try:
            return self._allowed[(module_name, global_name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{module_name}.{global_name} is not plain data and cannot be unpickled"
            ) from None

    def persistent_load(self, pid: Any, /) -> Any:
        raise pickle.UnpicklingError("persistent ids cannot be unpickled")


def _check_datetime(value: Any) -> None:
    # The pickle-state constructors of datetime, date and time skip most range
    # checks, so each value is rebuilt from its fields, which checks them all.
    tz = value.tzinfo if isinstance(value, (dt.datetime, dt.time)) else None
    if tz is not None and type(tz) is not dt.timezone:
        raise pickle.UnpicklingError(f"{type(tz).__name__} time zones are not plain data")
    if type(value) is dt.datetime:
        dt.datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tz,
            fold=value.fold,
        )
    elif type(value) is dt.date:
        dt.date(value.year, value.month, value.day)
    else:
        dt.time(value.hour, value.minute, value.second, value.microsecond, tz, fold=value.fold)


def _check_uuid(value: Any) -> None:
    # A UUID is built by BUILD -> __setstate__, which takes any object as "int".
    number = getattr(value, "int", None)
    if type(number) is not int or not 0 <= number < 1 << 128:
        raise pickle.UnpicklingError("malformed UUID")


_LEAF_CHECKS: dict[type, Callable[[Any], None]] = {
    dt.datetime: _check_datetime,
    dt.date: _check_datetime,
    dt.time: _check_datetime,
    uuid.UUID: _check_uuid,
}
_SIMPLE_LEAVES = _LEAF_TYPES - _LEAF_CHECKS.keys()


class _Walk:
    """One depth-first pass over loaded or to-be-dumped data.

    Shared containers are visited once (a pickle can reference one object from
    many places, so a naive walk could be made exponential) and their height
    remembered, so the longest path is bounded even through shared nodes.
    """

    __slots__ = ("_active", "_dumping", "_extra", "_factory", "_memo")

    def __init__(
        self,
        *,
        dumping: bool,
        factory: Callable[[dict[Any, Any]], Any] = dict,
        extra: frozenset[type] = frozenset(),
    ) -> None:
        self._dumping = dumping
        self._factory = factory
        self._extra = extra
        self._memo: dict[int, tuple[Any, Any, int]] = {}
        self._active: set[int] = set()

    def _fail(self, message: str, *, type_error: bool = False) -> Exception:
        if not self._dumping:
            return pickle.UnpicklingError(message)
        return TypeError(message) if type_error else ValueError(message)

    def visit(self, obj: Any, depth: int = 0) -> tuple[Any, int]:
        """Return ``(obj or its replacement, height of obj)``."""
        kind = type(obj)
        if kind in _LEAF_TYPES:
            check = _LEAF_CHECKS.get(kind)
            if check is not None:
                try:
                    check(obj)
                except (ValueError, TypeError, OverflowError) as exc:
                    raise self._fail(f"malformed {kind.__name__}: {exc}") from exc
                except pickle.UnpicklingError as exc:
                    raise self._fail(str(exc), type_error=True) from exc
            return obj, 0
        if kind in self._extra:
            return obj, 0
        if depth >= MAX_DEPTH:
            raise self._fail(f"data nested more than {MAX_DEPTH} levels deep")
        key = id(obj)
        seen = self._memo.get(key)
        if seen is not None:
            if depth + seen[2] > MAX_DEPTH:
                raise self._fail(f"data nested more than {MAX_DEPTH} levels deep")
            return seen[1], seen[2]
        if key in self._active:
            raise self._fail("data refers to itself")
        self._active.add(key)
        result, height = self._container(obj, kind, depth)
        self._active.discard(key)
        # Holding ``obj`` in the memo keeps its id from being reused meanwhile.
        self._memo[key] = (obj, result, height)
        return result, height

    def _container(self, obj: Any, kind: type, depth: int) -> tuple[Any, int]:
        # Leaves that need no check are skipped inline: most of a session is
        # strings and numbers, and a call per value would double the cost.
        simple, visit, child = _SIMPLE_LEAVES, self.visit, depth + 1
        height = 0
        changed: list[tuple[Any, Any]] = []
        if kind is dict or kind is _Sdict or (self._dumping and _is_sdict(kind)):
            if kind is _Sdict and self._dumping:
                raise self._fail("internal sdict stand-in", type_error=True)
            for k, v in obj.items():
                if type(k) not in simple:
                    height = max(height, visit(k, child)[1])
                if type(v) not in simple:
                    new, h = visit(v, child)
                    height = max(height, h)
                    if new is not v:
                        changed.append((k, new))
            for k, new in changed:
                obj[k] = new
            if kind is _Sdict:
                return self._factory(dict(obj)), height + 1
            return obj, height + 1
        if kind is list or kind is tuple:
            for i, item in enumerate(obj):
                if type(item) not in simple:
                    new, h = visit(item, child)
                    height = max(height, h)
                    if new is not item:
                        changed.append((i, new))
            if changed:
                items = obj if kind is list else list(obj)
                for i, new in changed:
                    items[i] = new
                obj = items if kind is list else tuple(items)
            return obj, height + 1
        if kind is set or kind is frozenset:
            # Members are hashable, so they hold no dicts and never change.
            for item in obj:
                if type(item) not in simple:
                    height = max(height, visit(item, child)[1])
            return obj, height + 1
        raise self._fail(f"{kind.__qualname__} values are not plain data", type_error=True)


def _is_sdict(kind: type) -> bool:
    return (kind.__module__, kind.__qualname__) in SDICT_PATHS


def _scan(data: bytes) -> None:
    # Memo bombs, buffer tricks and nesting that would crash the C unpickler
    # are refused here, before it builds or hashes anything (see opscan).
    scan(data, MAX_DEPTH)


def restricted_loads(
    data: bytes,
    *,
    mapping_factory: Callable[[dict[Any, Any]], Any] | None = None,
    extra_classes: Mapping[tuple[str, str], Any] | None = None,
    scan: bool = True,
) -> Any:
    """Unpickle ``data`` if it holds plain data only.

    Args:
        data: a pickle, any protocol.
        mapping_factory: called with a plain dict for every Emmett ``sdict``
            (default: keep the plain dict).
        extra_classes: more ``(module, name) -> object`` globals to admit; the
            instances of those that are classes pass the type check as opaque
            values.
        scan: check the opcodes first (memo indexes, frames, buffers, nesting
            depth), which bounds memory and C recursion on any input. Only
            skip it for bytes this process pickled itself with
            :func:`dumps_plain` (0.2 ms for a 700-byte pickle on a busy 2-core
            box, half of it pickletools' own parse).

    Raises:
        pickle.UnpicklingError: a global outside the admitted set, a persistent
            id, malformed or truncated data, cycles or nesting deeper than
            ``MAX_DEPTH``.
    """
    if scan:
        _scan(data)
    allowed: Mapping[tuple[str, str], Any] = _SAFE_GLOBALS
    extra: frozenset[type] = frozenset()
    if extra_classes:
        allowed = {**_SAFE_GLOBALS, **extra_classes}
        extra = frozenset(v for v in extra_classes.values() if isinstance(v, type))
    try:
        loaded = _RestrictedUnpickler(data, allowed).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # every malformed pickle raises something different
        raise pickle.UnpicklingError(f"malformed pickle ({type(exc).__name__}: {exc})") from exc
    walk = _Walk(dumping=False, factory=mapping_factory or dict, extra=extra)
    return walk.visit(loaded)[0]


def dumps_plain(data: dict[str, Any], *, extra_classes: Iterable[type] = ()) -> bytes:
    """Pickle ``data`` as Emmett does, refusing anything but plain data.

    Admitted: dict, list, tuple, set, frozenset, str, bytes, bytearray, int,
    float, complex, bool, None, datetime/date/time (naive or with a fixed
    ``datetime.timezone``), timedelta, timezone, Decimal, UUID, and Emmett's
    ``sdict``, which stays an ``sdict`` for Emmett to read back. Subclasses of
    the others (``OrderedDict``, enums...) are refused, except instances of
    ``extra_classes``: the classes a reader admits through
    :func:`restricted_loads`, written as themselves.

    Raises:
        TypeError: a value of another type.
        ValueError: cyclic data or nesting deeper than ``MAX_DEPTH``.
    """
    if not isinstance(data, dict):
        raise TypeError(f"session data must be a dict, not {type(data).__name__}")
    _Walk(dumping=True, extra=frozenset(extra_classes)).visit(data)
    return pickle.dumps(data, protocol=PICKLE_PROTOCOL)
