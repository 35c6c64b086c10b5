"""Typed access to a request's session from framework handlers.

Starlette annotates ``request.session`` as ``dict[str, Any]``, so a type
checker rejects ``request.session.regenerate()`` although the object is an
asess :class:`Session`. :func:`get_session` returns the same object typed as
``Session`` (and says clearly when no asess middleware put one there);
:mod:`asess.fastapi` wraps it as a FastAPI dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ._exceptions import SessionError
from ._session import Session


class HasScope(Protocol):
    """Anything with an ASGI scope: Starlette's ``Request``, ``WebSocket``, ``HTTPConnection``."""

    @property
    def scope(self) -> Mapping[str, Any]: ...


def get_session(request: HasScope | Mapping[str, Any]) -> Session:
    """The request's asess session, typed: ``get_session(request).regenerate()``.

    Args:
        request: a Starlette/FastAPI ``Request`` or ``WebSocket``, or an ASGI scope.

    Raises:
        SessionError: the request went through no :class:`asess.SessionMiddleware`
            (or another session middleware put its own object there).
    """
    scope = request.scope if hasattr(request, "scope") else request
    found = scope.get("session")
    if isinstance(found, Session):
        return found
    where = "nothing" if found is None else f"a {type(found).__name__}"
    raise SessionError(
        f"no asess session on this request (scope['session'] holds {where}): wrap the app "
        "in asess.SessionMiddleware, and only once, with no other session middleware"
    )
