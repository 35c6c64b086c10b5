"""Putting the lifecycle's Set-Cookie lines into an Emmett response.

Emmett writes ``response.cookies`` (a ``SimpleCookie``) as one Set-Cookie
header per morsel, from ``str(morsel)``. asess renders its cookie lines in one
place (``asess._cookies``, shared with the ASGI middleware), so each line goes
in as a morsel that outputs the line verbatim: the bytes on the wire are the
ones the middleware would send, chunk sizes included, while Emmett code still
finds the cookie under its name with its ``value``.
"""

from __future__ import annotations

from http.cookies import Morsel
from typing import Any


class SetCookieLine(Morsel[str]):
    """A morsel whose output is a Set-Cookie value rendered by asess."""

    def __init__(self, line: str) -> None:
        super().__init__()
        name, _, rest = line.partition("=")
        value = rest.partition(";")[0]
        self.set(name, value, value)
        self._line = line

    def OutputString(self, attrs: Any = None) -> str:
        return self._line


def add_set_cookies(cookies: Any, lines: list[str]) -> None:
    """Add asess's Set-Cookie ``lines`` to Emmett's ``response.cookies``."""
    for line in lines:
        morsel = SetCookieLine(line)
        cookies[morsel.key] = morsel
