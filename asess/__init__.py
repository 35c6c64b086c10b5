"""asess: async-native sessions for Python web apps.

Cookie, file and Redis sessions with the Emmett session API, one lifecycle for
every backend, pure ASGI middleware, and a drop-in Emmett adapter
(:mod:`asess.emmett`). Typed handlers get the session with
:func:`get_session` (Starlette) or :data:`asess.fastapi.SessionDep` (FastAPI).
"""

from ._access import get_session
from ._backends.base import Store
from ._context import current_session, session
from ._exceptions import (
    ConfigurationError,
    SessionBackendError,
    SessionError,
    SessionLockTimeout,
    SessionNotLoaded,
    SessionTooLarge,
)
from ._gc import GcResult
from ._keys import KeyRing, Secret
from ._lifecycle import Lifecycle
from ._manager import SessionManager
from ._record import Record
from ._session import Session
from ._types import EncryptionMode, SameSite
from .middleware import SessionMiddleware

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "EncryptionMode",
    "GcResult",
    "KeyRing",
    "Lifecycle",
    "Record",
    "SameSite",
    "Secret",
    "Session",
    "SessionBackendError",
    "SessionError",
    "SessionLockTimeout",
    "SessionManager",
    "SessionMiddleware",
    "SessionNotLoaded",
    "SessionTooLarge",
    "Store",
    "current_session",
    "get_session",
    "session",
]
