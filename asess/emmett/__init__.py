"""asess for Emmett apps: change one import line, keep everything else.

``from asess.emmett import SessionManager`` replaces
``from emmett.sessions import SessionManager``: ``SessionManager.cookies``,
``.files`` and ``.redis`` take Emmett's parameters and defaults and return an
Emmett pipe driving asess's lifecycle, and handlers keep using Emmett's own
``from emmett import session``. Install with ``pip install 'asess[emmett]'``.
"""

try:
    import emmett as _emmett  # type: ignore[import-untyped]  # noqa: F401
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] not in ("emmett", "emmett_core"):
        raise
    # An ImportError still, so `except ImportError` and importorskip keep working.
    raise ModuleNotFoundError(
        f"asess.emmett needs Emmett, which is not installed ({exc.name} is missing): "
        "pip install 'asess[emmett]'",
        name=exc.name,
    ) from None

from ._clear import Clearing
from ._manager import SessionManager
from ._pipe import SessionPipe
from ._session_data import EmmettSession

__all__ = ["Clearing", "EmmettSession", "SessionManager", "SessionPipe"]
