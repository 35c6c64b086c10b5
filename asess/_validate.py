"""Type checks for the factories' arguments: a wrong type is a ConfigurationError saying why.

Each factory (``SessionManager.cookies/files/redis/memory`` and the Emmett
adapter's) starts with ``check_arguments(locals())``: one table here, keyed by
parameter name, checks the types the factories share, so a ``None`` key, a
float ``expire`` or a string ``secure`` fails at construction with a message,
not later as a raw ``TypeError`` (or, worse, as a truthy string taken for
``True``). Values are checked for range where the stores do not already do it;
cookie attributes themselves are validated by :class:`~asess._cookies.CookieSettings`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ._exceptions import ConfigurationError
from ._keys import Secret

_KEY_HINT = (
    "pass a long random secret as str or bytes (`asess keygen` prints one), "
    "or a list of them to rotate keys"
)


def _key(value: Any) -> str | None:
    items = value if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(item, (str, bytes, Secret)) for item in items):
        return None
    return _KEY_HINT


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "use True or False"


def _seconds(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return None
    return "give whole seconds, > 0 (an int)"


def _optional_seconds(value: Any) -> str | None:
    return None if value is None else _seconds(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "give text, or None"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "give text"


def _int(value: Any) -> str | None:
    # 9.0 passes ``in range(10)`` and then fails inside zlib at the first save.
    return None if isinstance(value, int) and not isinstance(value, bool) else "give an int"


def _number(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    return "give a number"


def _mapping(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping):
        return None
    return "pass a dict of cookie attributes, e.g. {'path': '/app'}, or None"


def _path(value: Any) -> str | None:
    if value is None or isinstance(value, (str, os.PathLike)):
        return None
    return "give a directory as str or pathlib.Path"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "key": _key,
    "expire": _seconds,
    "max_age": _optional_seconds,
    "secure": _bool,
    "samesite": _optional_text,
    "domain": _optional_text,
    "cookie_name": _optional_text,
    "cookie_data": _mapping,
    "encryption_mode": _text,
    "compression_level": _int,
    "max_cookie_chunks": _int,
    "accept_emmett_tokens": _bool,
    "filename_template": _text,
    "path": _path,
    "prefix": _text,
    "locking": _bool,
    "lock_timeout": _number,
    "fsync": _bool,
    "gc_probability": _number,
    "autopipeline": _bool,
}


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """Check a factory's arguments (its ``locals()``) by name; others are ignored.

    Raises:
        ConfigurationError: naming the argument, its value and what to pass.
    """
    for name, value in arguments.items():
        check = _CHECKS.get(name)
        hint = check(value) if check is not None else None
        if hint is not None:
            # A key list may hold real secrets next to the bad item: show types only.
            shown = f"<{type(value).__name__}>" if name == "key" else repr(value)
            raise ConfigurationError(f"{name}={shown}: {hint}")
