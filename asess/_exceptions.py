"""Every error asess raises, under one root.

    SessionError                 base of everything below; catch this to catch all
    ├── ConfigurationError       bad arguments, raised when a manager is built
    ├── SessionNotLoaded         data touched before ``await session.load()``
    ├── SessionTooLarge          the encoded session exceeds the cookie budget
    ├── SessionLockTimeout       a locked session stayed busy past ``lock_timeout``
    ├── SessionInterrupted       ``session.save()`` found its session ended meanwhile
    └── SessionBackendError      the store failed (disk, Redis); the cause is chained

``InvalidToken`` is internal: codecs raise it and the lifecycle turns it into
a fresh session, so it never reaches application code.
"""

from __future__ import annotations


class SessionError(Exception):
    """Root of every asess error."""


class ConfigurationError(SessionError, ValueError):
    """A manager was built with arguments that cannot work; the message says what to change."""


class SessionNotLoaded(SessionError):
    """Session data was used before ``await session.load()`` (``autoload=False``)."""


class SessionTooLarge(SessionError):
    """The encoded session does not fit in the configured number of cookies."""


class SessionLockTimeout(SessionError):
    """Another request held this session's lock for longer than ``lock_timeout``."""


class SessionInterrupted(SessionError):
    """An explicit ``session.save()`` found the session ended by another request.

    A concurrent logout (``invalidate()``), login (``regenerate()``), revocation
    or lease takeover ended or took over the session after this request loaded
    it; nothing was written, so the ended session stays ended. Saves at the end
    of a request drop their changes with a warning instead of raising.
    """


class SessionBackendError(SessionError):
    """The storage backend failed; ``__cause__`` holds the original exception."""


class InvalidToken(Exception):
    """A cookie value that does not decode; ``str(exc)`` is the reason, for debug logs."""
