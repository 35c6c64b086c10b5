"""Emmett's lazy translations (``T("...")``, a ``Tstr``) as session values.

Emmett's Auth flashes ``T("...")`` messages, and a ``Tstr`` is not a string:
it keeps its text, an optional fixed language and its format arguments, and
translates each time it is rendered. Emmett's own managers pickle it as
itself, so a flashed message is translated when the next page renders it, in
that request's language. asess keeps that: legacy cookies pickle the ``Tstr``
as Emmett does (the unpickler admits its class, rebuilt from its state), and
JSON stores tag it as ``[text, lang, args, kwargs]`` through
:func:`asess._serialize.register_type`, rebuilt as a ``Tstr`` on load. Its
arguments must be plain data on every backend, checked before each save.
"""

from __future__ import annotations

from typing import Any

from emmett.language.helpers import Tstr  # type: ignore[import-untyped]
from severus.datastructures import Tstr as BaseTstr

from .._codecs.unpickle import dumps_plain
from .._exceptions import SessionError
from .._serialize import register_type

#: Both classes a translation can be: Emmett's ``T()`` makes the first.
TSTR_TYPES: tuple[type, ...] = (Tstr, BaseTstr)
#: Where a pickle names them, for the legacy cookies' restricted unpickler.
PICKLED_NAMES: dict[tuple[str, str], type] = {
    ("emmett.language.helpers", "Tstr"): Tstr,
    ("severus.datastructures", "Tstr"): BaseTstr,
}


def _encode(value: Any) -> list[Any]:
    return [value.text, value.lang, list(value.args), dict(value.kwargs)]


def _decoder(kind: type) -> Any:
    def decode(data: Any) -> Any:
        text, lang, args, kwargs = data
        if not isinstance(text, str) or not (lang is None or isinstance(lang, str)):
            raise ValueError("a stored translation needs a str text and a str or null lang")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("a stored translation's arguments are malformed")
        return kind(text, lang, *args, **kwargs)

    return decode


register_type(Tstr, "emmett.T", _encode, _decoder(Tstr))
register_type(BaseTstr, "severus.T", _encode, _decoder(BaseTstr))


def check_storable(value: Any) -> None:
    """Raise ``SessionError`` unless the translation ``value`` can be stored.

    The same rule on every backend: the text is a str, the language a str or
    None, and the format arguments plain data (what a legacy cookie holds).
    """
    text, lang = getattr(value, "text", None), getattr(value, "lang", None)
    if not isinstance(text, str) or not (lang is None or isinstance(lang, str)):
        raise SessionError(
            f"a T() translation in the session has a {type(text).__name__} text or "
            f"{type(lang).__name__} language: build it as T('text', lang=None or 'xx')"
        )
    try:
        dumps_plain({"args": list(value.args), "kwargs": dict(value.kwargs)})
    except (TypeError, ValueError) as exc:
        raise SessionError(
            f"T({text!r}) in the session has a format argument that cannot be stored ({exc}): "
            "pass str(value), or plain data such as numbers and strings"
        ) from exc
