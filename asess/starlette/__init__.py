"""asess for Starlette and FastAPI apps that used Starlette's ``SessionMiddleware``.

``from asess.starlette import SessionMiddleware`` replaces
``from starlette.middleware.sessions import SessionMiddleware``: the
constructor takes Starlette's arguments with Starlette's meanings, the
Set-Cookie lines look like Starlette's, and cookies Starlette wrote with the
same ``secret_key`` are read and re-issued in asess's format, so nobody is
logged out by the switch. ``request.session`` is an asess
:class:`~asess.starlette.Session` (regenerate, invalidate, nested changes).
"""

from ._middleware import SessionMiddleware
from ._session import Session

__all__ = ["Session", "SessionMiddleware"]
