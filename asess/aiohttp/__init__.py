"""asess for aiohttp apps that used aiohttp-session: change the import and the storage line.

``from asess.aiohttp import setup, get_session`` replaces
``from aiohttp_session import setup, get_session``; ``setup(app, manager)``
takes an asess :class:`~asess.SessionManager` where aiohttp-session took a
storage. ``await get_session(request)`` returns an asess session that also
answers aiohttp-session's ``new``, ``created``, ``identity``, ``max_age``,
``changed()`` and ``invalidate()``. Importing this module needs aiohttp.
"""

try:
    import aiohttp as _aiohttp  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without aiohttp only
    raise ModuleNotFoundError(
        f"asess.aiohttp needs aiohttp ({exc.name} is missing): pip install aiohttp",
        name=exc.name,
    ) from None

from ._middleware import get_session, new_session, session_middleware, setup
from ._session import AiohttpSession

Session = AiohttpSession

__all__ = ["AiohttpSession", "Session", "get_session", "new_session", "session_middleware", "setup"]
