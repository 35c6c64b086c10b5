"""FastAPI dependency for the typed session: ``async def handler(session: SessionDep)``.

``SessionDep`` is ``Annotated[Session, Depends(session_dependency)]``, so a
handler's parameter is typed as :class:`asess.Session` (methods included)
while FastAPI injects the request's session, for HTTP and websocket routes.
The app must be wrapped in :class:`asess.SessionMiddleware`. Importing this
module needs FastAPI.
"""

from __future__ import annotations

from typing import Annotated

try:
    from fastapi import Depends
    from starlette.requests import HTTPConnection
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without FastAPI only
    raise ModuleNotFoundError(
        f"asess.fastapi needs FastAPI ({exc.name} is missing): pip install fastapi",
        name=exc.name,
    ) from None

from ._access import get_session
from ._session import Session

__all__ = ["SessionDep", "session_dependency"]


def session_dependency(connection: HTTPConnection) -> Session:
    """The request's (or websocket's) asess session; a ``SessionError`` without the middleware."""
    return get_session(connection)


SessionDep = Annotated[Session, Depends(session_dependency)]
