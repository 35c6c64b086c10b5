"""The HTTP pieces every adapter answers with: the 503 for a failed store, and ``Vary``.

The ASGI middleware and the Emmett pipe both use these, so a failed store
looks the same whichever framework runs the app, and ``Vary: Cookie`` is
merged into an existing ``Vary`` header the same way.
"""

from __future__ import annotations

from ._exceptions import SessionBackendError, SessionLockTimeout
from ._outage_log import OutageLog

#: What a request gets when the store cannot load or save its session.
UNAVAILABLE_STATUS = 503
UNAVAILABLE_BODY = b"Session store unavailable"
UNAVAILABLE_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-type", "text/plain; charset=utf-8"),
    ("content-length", str(len(UNAVAILABLE_BODY))),
    ("retry-after", "1"),
)
#: The store failures that become a 503 rather than a 500.
UNAVAILABLE_ERRORS = (SessionBackendError, SessionLockTimeout)


def log_unavailable(outages: OutageLog, exc: BaseException) -> None:
    """Log a 503 answer: a traceback per outage, then a summary line per interval."""
    outages.failed(exc)


def merge_vary(value: str | None) -> str:
    """``value`` (an existing Vary header, or None) with ``Cookie`` added once."""
    if not value:
        return "Cookie"
    tokens = {t.strip().lower() for t in value.split(",")}
    if "cookie" in tokens or "*" in tokens:
        return value
    return value + ", Cookie"


def add_vary_cookie(headers: list[tuple[bytes, bytes]]) -> None:
    """Add ``Cookie`` to the Vary header of an ASGI header list, in place."""
    for i, (key, value) in enumerate(headers):
        if key.lower() == b"vary":
            headers[i] = (key, merge_vary(value.decode("latin-1")).encode("latin-1"))
            return
    headers.append((b"vary", b"Cookie"))
