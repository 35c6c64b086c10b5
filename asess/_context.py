"""``asess.session``: a context-local proxy to the current request's Session.

The middleware (or adapter) binds the request's Session to a ContextVar for the
duration of the request, so ``session.counter = (session.counter or 0) + 1``
works as Emmett's session API writes it, in any task the request spawns with
its context.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any

from ._exceptions import SessionError
from ._session import Session

_current: ContextVar[Session] = ContextVar("asess_session")


def bind(session: Session) -> Token[Session]:
    """Make ``session`` current; pass the returned token to :func:`unbind`."""
    return _current.set(session)


def unbind(token: Token[Session]) -> None:
    _current.reset(token)


def current_session() -> Session:
    """The Session of the request being handled.

    Raises:
        SessionError: called outside a request handled by asess.
    """
    try:
        return _current.get()
    except LookupError:
        raise SessionError(
            "no session here: asess.session works only inside a request handled by "
            "SessionMiddleware (or the Emmett pipe); elsewhere use the Session you were given"
        ) from None


class SessionProxy:
    """Forwards every attribute and item operation to :func:`current_session`."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(current_session(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(current_session(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(current_session(), name)

    def __getitem__(self, key: str) -> Any:
        return current_session()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        current_session()[key] = value

    def __delitem__(self, key: str) -> None:
        del current_session()[key]

    def __contains__(self, key: object) -> bool:
        return key in current_session()

    def __iter__(self) -> Iterator[str]:
        return iter(current_session())

    def __len__(self) -> int:
        return len(current_session())

    def __eq__(self, other: object) -> bool:
        return current_session() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        try:
            return repr(current_session())
        except SessionError:
            return "<asess.session: no request bound>"


session = SessionProxy()
