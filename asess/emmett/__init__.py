"""asess for Emmett apps: change one import line, keep everything else.

``from asess.emmett import SessionManager`` replaces
``from emmett.sessions import SessionManager``: ``SessionManager.cookies``,
``.files`` and ``.redis`` take Emmett's parameters and defaults and return an
Emmett pipe driving asess's lifecycle, and handlers keep using Emmett's own
``from emmett import session``. Install with ``pip install asess[emmett]``.
"""

from ._clear import Clearing
from ._manager import SessionManager
from ._pipe import SessionPipe
from ._session_data import EmmettSession

__all__ = ["Clearing", "EmmettSession", "SessionManager", "SessionPipe"]
