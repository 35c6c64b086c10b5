"""Emmett's data types across asess stores: sdicts, CSRF storage, flashes, rows, times.

Emmett code expects nested mappings in a session to be ``sdict`` (attribute
access, ``None`` for a missing key); Emmett's forms keep their CSRF tokens in
``session._csrf``, a ``CSRFStorage`` (an ordered dict with methods); Emmett's
Auth keeps the logged-in user's ORM ``Row`` in ``session.auth.user``. JSON
stores (files, Redis, modern cookies) bring every mapping back as a dict, so
loaded data is walked once: its dicts become ``sdict`` and ``_csrf`` a
``CSRFStorage`` again. Rows are not plain data: before a session is stored,
each row is replaced by an ``sdict`` of its field values (dates, numbers and
text stay as they are), the same for every backend, so Emmett reads them back
from a legacy cookie as well as asess does from any store. Legacy cookies
carry ``CSRFStorage`` as itself, and those written by Emmett may hold pickled
rows: :class:`EmmettClasses` admits both to the unpickler, and translations
(see :mod:`._translations`). Flashes come back as ``(category, message)``
tuples, and datetimes of other classes (pendulum's, from Emmett's ``now()``)
are stored as stdlib ones with a fixed offset, which every store can hold.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from emmett.security import CSRFStorage  # type: ignore[import-untyped]
from emmett_core.datastructures import sdict

from ._translations import PICKLED_NAMES, TSTR_TYPES, check_storable

logger = logging.getLogger("asess.emmett")

_ROW_MODULES = ("emmett.orm.objects", "emmett.orm.models")
#: Where Emmett's forms keep their CSRF tokens, in a CSRFStorage.
CSRF_KEY = "_csrf"
#: Where Emmett's flash() keeps its (category, message) tuples.
FLASHES_KEY = "_flashes"
_warned: set[type] = set()


def _row_base() -> type | None:
    """pydal's ``Row``, the base of every Emmett ORM row, once the ORM is imported."""
    module = sys.modules.get("pydal.objects")
    row = getattr(module, "Row", None) if module is not None else None
    return row if isinstance(row, type) else None


def to_emmett(data: dict[str, Any]) -> sdict[str, Any]:
    """Loaded ``data`` as Emmett code expects it (see the module doc).

    Containers are rebuilt, never mutated, so the caller's data is untouched.
    """
    converted: sdict[str, Any] = _convert(data, _row_base())
    csrf = converted.get(CSRF_KEY)
    if isinstance(csrf, dict) and not isinstance(csrf, CSRFStorage):
        converted[CSRF_KEY] = CSRFStorage(csrf)
    flashes = converted.get(FLASHES_KEY)
    if isinstance(flashes, list):
        # flash() appends (category, message) tuples; JSON brought them back as lists.
        converted[FLASHES_KEY] = [
            tuple(f) if isinstance(f, list) and len(f) == 2 else f for f in flashes
        ]
    return converted


def prepare_for_store(data: dict[str, Any]) -> bool:
    """Make ``data`` storable the same way on every backend, in place.

    ORM rows become ``sdict`` copies, datetimes of other classes (pendulum's,
    from Emmett's ``now()``) or with other time zones become stdlib datetimes
    with a fixed offset, and translations (``T()``) are checked. Returns
    whether anything was replaced; data needing no change is only read.

    Raises:
        SessionError: a translation whose arguments cannot be stored.
    """
    row = _row_base()
    changed = False
    # dict's own methods: looking for rows is not the application using the
    # session, and must not count as such.
    for key, value in list(dict.items(data)):
        if _needs_change(value, row, 0):
            dict.__setitem__(data, key, _convert(value, row))
            changed = True
    return changed


#: The former name, for callers that only thought of rows.
flatten_rows = prepare_for_store


def _needs_change(value: Any, row: type | None, depth: int) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return False
    if kind in TSTR_TYPES:
        check_storable(value)
        return False
    if _foreign_time(value) is not None:
        return True
    if row is not None and isinstance(value, row):
        return True
    if depth > 64:
        return False
    if kind is dict or kind is sdict:
        return any([_needs_change(v, row, depth + 1) for v in value.values()])
    if isinstance(value, (list, tuple)):
        # Every item is looked at (no short cut), so each translation is checked.
        return any([_needs_change(v, row, depth + 1) for v in value])
    return False


_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})


def _foreign_time(value: Any) -> Any:
    """``value`` as a stdlib date/time, or None when it already is one (or no time)."""
    if isinstance(value, dt.datetime):
        zone = value.tzinfo
        fixed = zone is None or type(zone) is dt.timezone
        if type(value) is dt.datetime and fixed:
            return None
        offset = value.utcoffset()
        return dt.datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=None if offset is None else dt.timezone(offset),
            fold=value.fold,
        )
    if isinstance(value, dt.date):
        return None if type(value) is dt.date else dt.date(value.year, value.month, value.day)
    if isinstance(value, dt.time):
        zone = value.tzinfo
        if type(value) is dt.time and (zone is None or type(zone) is dt.timezone):
            return None
        offset = value.utcoffset()
        return dt.time(
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=None if offset is None else dt.timezone(offset),
            fold=value.fold,
        )
    if isinstance(value, dt.timedelta) and type(value) is not dt.timedelta:
        return dt.timedelta(value.days, value.seconds, value.microseconds)
    return None


def _convert(value: Any, row: type | None) -> Any:
    # Only plain mappings become sdicts: other dict types (CSRFStorage...)
    # came back from a pickle as themselves and stay so.
    if type(value) is dict or type(value) is sdict:
        return sdict({k: _convert(v, row) for k, v in value.items()})
    if isinstance(value, list):
        return [_convert(v, row) for v in value]
    if isinstance(value, tuple):
        return tuple(_convert(v, row) for v in value)
    if row is not None and isinstance(value, row):
        return _row_fields(value, row)
    time = _foreign_time(value)
    return value if time is None else time


def _row_fields(value: Any, row: type) -> sdict[str, Any]:
    kind = type(value)
    if kind not in _warned:
        _warned.add(kind)
        logger.warning(
            "a %s is stored in the session as an sdict of its field values: "
            "its methods and relations are not kept, and it reads back as an sdict",
            kind.__name__,
        )
    fields: sdict[str, Any] = sdict()
    for key, item in value.items():
        if isinstance(item, row):
            fields[key] = _row_fields(item, row)
        elif isinstance(item, bool) or item is None:
            fields[key] = item
        elif isinstance(item, (int, str, float)):
            # Reference fields are int/str subclasses bound to the database:
            # keep the plain value they stand for.
            fields[key] = _base_value(item)
        elif not callable(item):
            fields[key] = _convert(item, row)
    return fields


def _base_value(item: int | str | float) -> int | str | float:
    for base in (bool, int, float, str):
        if isinstance(item, base):
            return base(item)
    return item


class EmmettClasses(Mapping[tuple[str, str], type]):
    """Emmett's classes a legacy token may name, for the restricted unpickler.

    ``CSRFStorage``, and the ORM row classes: Emmett creates one per model
    (``UserRow``...) when the models are defined, which may be after the
    session pipe is built, so the mapping is looked up again whenever the
    ORM's modules gain names. (A model redefined under the same name keeps
    its first row class here; rows are flattened either way.)
    Instances are rebuilt from their pickled state without running any other
    code; rows are flattened before the session is stored again.
    """

    def __init__(self) -> None:
        self._seen: tuple[int, ...] = ()
        self._found: dict[tuple[str, str], type] = {}

    def _classes(self) -> dict[tuple[str, str], type]:
        # The codec reads the mapping several times per token: rescan only
        # when a module that defines row classes has gained or lost names.
        modules = [sys.modules.get(name) for name in _ROW_MODULES]
        seen = tuple(-1 if m is None else len(vars(m)) for m in modules)
        if seen != self._seen:
            self._found = self._scan(modules)
            self._seen = seen
        return self._found

    @staticmethod
    def _scan(modules: list[Any]) -> dict[tuple[str, str], type]:
        found: dict[tuple[str, str], type] = {("emmett.security", "CSRFStorage"): CSRFStorage}
        found.update(PICKLED_NAMES)
        row = _row_base()
        if row is None:
            return found
        for module in modules:
            for name, obj in vars(module).items() if module is not None else ():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, row)
                    and obj.__module__ == module.__name__
                ):
                    found[(module.__name__, name)] = obj
        return found

    def __getitem__(self, key: tuple[str, str]) -> type:
        return self._classes()[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._classes())

    def __len__(self) -> int:
        return len(self._classes())
