"""Time as an argument: the clock the lifecycle, the stores' expiry and the leases read.

Every expiry, ``max_age`` and lease decision asks a :class:`Clock` instead of
calling :func:`time.time`, so a test can move time forward by an hour in a
microsecond (:class:`ManualClock`, public as ``asess.testing.ManualClock``)
instead of sleeping. Production code uses :data:`SYSTEM_CLOCK`. Stores whose
server keeps time itself (Redis key expiry) still expire in real time; the
contract kit says which checks need that.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What asess asks of time."""

    def now(self) -> float:
        """Seconds since the epoch (wall time: it is written into records and cookies)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (lock waiters back off with this)."""
        ...


class SystemClock:
    """The real clock: :func:`time.time` and :func:`asyncio.sleep`."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that only moves when told to: ``clock.advance(3600)``.

    ``sleep`` advances the clock by the time asked and yields to the loop once,
    so code that waits for a lease to expire runs at once, in order.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward (never back: expiry must not be undone)."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
