"""asess for aiohttp apps that used aiohttp-session: change the import and the storage line.

``from asess.aiohttp import setup, get_session`` replaces
``from aiohttp_session import setup, get_session``; ``setup(app, manager)``
takes an asess :class:`~asess.SessionManager` where aiohttp-session took a
storage. ``await get_session(request)`` returns an asess session that also
answers aiohttp-session's ``new``, ``created``, ``identity``, ``max_age``,
``changed()`` and ``invalidate()``. Install with ``pip install 'asess[aiohttp]'``.
"""

try:
    from aiohttp import web as _web
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without aiohttp only
    raise ModuleNotFoundError(
        f"asess.aiohttp needs aiohttp ({exc.name} is missing): pip install 'asess[aiohttp]'",
        name=exc.name,
    ) from None
if not hasattr(_web, "RequestKey"):  # pragma: no cover - exercised with old aiohttp only
    raise ImportError("asess.aiohttp needs aiohttp 3.14 or later: pip install 'asess[aiohttp]'")

from ._middleware import get_session, new_session, session_middleware, setup
from ._session import AiohttpSession

Session = AiohttpSession

__all__ = ["AiohttpSession", "Session", "get_session", "new_session", "session_middleware", "setup"]
