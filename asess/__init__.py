"""asess: async-native sessions for Python web apps.

Cookie, file and Redis sessions with the Emmett session API, one lifecycle for
every backend, pure ASGI middleware, and a drop-in Emmett adapter
(:mod:`asess.emmett`). Typed handlers get the session with
:func:`get_session` (Starlette) or :data:`asess.fastapi.SessionDep` (FastAPI).
"""

from ._access import get_session
from ._backends.base import GcResult, Lease, RecordTimes, ServerStore
from ._backends.store_v1 import Store
from ._clock import Clock, ManualClock, SystemClock
from ._context import current_session, session
from ._exceptions import (
    ConfigurationError,
    SessionBackendError,
    SessionError,
    SessionInterrupted,
    SessionLockTimeout,
    SessionNotLoaded,
    SessionTooLarge,
)
from ._keys import KeyRing, Secret
from ._lifecycle import Lifecycle
from ._manager import SessionManager
from ._policy import Policy
from ._record import Record
from ._session import Session
from ._types import EncryptionMode, SameSite
from ._user_index import SessionInfo
from .middleware import SessionMiddleware

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "ConfigurationError",
    "EncryptionMode",
    "GcResult",
    "KeyRing",
    "Lease",
    "Lifecycle",
    "ManualClock",
    "Policy",
    "Record",
    "RecordTimes",
    "SameSite",
    "Secret",
    "ServerStore",
    "Session",
    "SessionBackendError",
    "SessionError",
    "SessionInfo",
    "SessionInterrupted",
    "SessionLockTimeout",
    "SessionManager",
    "SessionMiddleware",
    "SessionNotLoaded",
    "SessionTooLarge",
    "Store",
    "SystemClock",
    "current_session",
    "get_session",
    "session",
]
