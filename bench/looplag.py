"""Event-loop lag: the longest stretches the loop runs without yielding.

The bench's event loop polls its selector through :class:`StretchSelector`,
which records the time between one poll returning and the next one starting:
while that stretch runs, no other request, timer or socket can be served. It
is the exact quantity "non-blocking" is about, free of timer granularity (a
sleeping ticker on asyncio's epoll loop wakes up to 1 ms late whenever other
I/O woke the loop just before its deadline, which would read as lag where
there is none). A 1 ms ticker runs beside the client as well, as a second
opinion, and its lateness is recorded too. Both are taken beside a single
client only: under saturation they measure queue depth, not blocking.
Stretches are reported as *held* time, with the time the kernel kept this thread
waiting for a CPU taken out (the raw wall figures are kept beside them), and
the idle floor and the load average are recorded with every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import time
from dataclasses import dataclass
from typing import Any

PERIOD = 0.001

_Base: Any = type(selectors.DefaultSelector())


def _open_schedstat() -> int | None:
    """This thread's scheduler counters, if the kernel exposes them (Linux)."""
    try:
        return os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return None


class StretchSelector(_Base):  # type: ignore[misc]
    """The default selector, timing the gaps between polls while recording.

    Each stretch is recorded twice: as wall time, and *held* time, the wall
    time minus what the kernel says this thread spent waiting on a run queue
    (``/proc/thread-self/schedstat``) meanwhile. On a shared machine the
    difference is other tenants' CPU, not this loop's code; time spent blocked
    in a system call or waiting for the GIL is not run-queue time, so it stays
    in the held figure, as it should.
    """

    def __init__(self) -> None:
        super().__init__()
        self.recording = False
        self.stretches: list[tuple[float, float, float]] = []
        self._returned: float | None = None
        self._delay_at_return = 0
        self._schedstat = _open_schedstat()

    def _run_delay(self) -> int:
        if self._schedstat is None:
            return 0
        try:
            return int(os.pread(self._schedstat, 96, 0).split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    @property
    def corrects_for_preemption(self) -> bool:
        return self._schedstat is not None

    def select(self, timeout: float | None = None) -> Any:
        now = time.perf_counter()
        if self.recording and self._returned is not None:
            wall = now - self._returned
            queued = (self._run_delay() - self._delay_at_return) / 1e9
            self.stretches.append((now, max(0.0, wall - queued), wall))
        ready = super().select(timeout)
        self._returned = time.perf_counter()
        if self.recording:
            self._delay_at_return = self._run_delay()
        return ready

    def close(self) -> None:
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None
        super().close()


class MeasuredLoop(asyncio.SelectorEventLoop):
    """A plain selector event loop whose polls are timed."""

    def __init__(self) -> None:
        self.stretch_selector = StretchSelector()
        super().__init__(self.stretch_selector)


@dataclass(frozen=True, slots=True)
class LagStats:
    """Loop stretches (and ticker lateness) in milliseconds over one measured window."""

    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    wall_p99_ms: float
    wall_max_ms: float
    ticker_p99_ms: float
    ticker_max_ms: float
    preemption_corrected: bool

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            k: (v if isinstance(v, bool) else round(v, 4))
            for k in self.__dataclass_fields__
            for v in (getattr(self, k),)
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


class LagMeter:
    """Records loop stretches and runs a 1 ms ticker while open.

    Use as ``async with LagMeter() as meter: ...`` on a :class:`MeasuredLoop`
    and read ``meter.stats(since)`` afterwards; ``since`` (a
    ``time.perf_counter()`` value) drops warm-up samples. On any other loop
    only the ticker is available.
    """

    def __init__(self, period: float = PERIOD) -> None:
        self._period = period
        self._ticks: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None
        self._selector: StretchSelector | None = None
        self._stretches: list[tuple[float, float, float]] = []

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self._period)
            now = time.perf_counter()
            self._ticks.append((now, max(0.0, now - last - self._period)))
            last = now

    async def __aenter__(self) -> LagMeter:
        loop = asyncio.get_running_loop()
        if isinstance(loop, MeasuredLoop):
            self._selector = loop.stretch_selector
            self._selector.stretches = []
            self._selector.recording = True
        self._task = loop.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._selector is not None:
            self._selector.recording = False
            self._stretches = self._selector.stretches
            self._selector.stretches = []
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def stats(self, since: float = 0.0) -> LagStats:
        ticks = sorted(v for t, v in self._ticks if t >= since)
        if self._stretches:
            held = sorted(h for t, h, _ in self._stretches if t >= since)
            wall = sorted(w for t, _, w in self._stretches if t >= since)
        else:  # not on a MeasuredLoop: the ticker is all there is
            held = wall = ticks
        corrected = self._selector is not None and self._selector.corrects_for_preemption
        return LagStats(
            samples=len(held),
            p50_ms=percentile(held, 50) * 1000,
            p99_ms=percentile(held, 99) * 1000,
            max_ms=(held[-1] * 1000) if held else 0.0,
            wall_p99_ms=percentile(wall, 99) * 1000,
            wall_max_ms=(wall[-1] * 1000) if wall else 0.0,
            ticker_p99_ms=percentile(ticks, 99) * 1000,
            ticker_max_ms=(ticks[-1] * 1000) if ticks else 0.0,
            preemption_corrected=corrected,
        )


async def idle_baseline(seconds: float) -> LagStats:
    """What the meter reports with an idle loop: the floor every figure sits on."""
    async with LagMeter() as meter:
        await asyncio.sleep(seconds)
    return meter.stats()


def run(coro: Any) -> Any:
    """``asyncio.run`` on a :class:`MeasuredLoop` (works on Python 3.10, no loop_factory)."""
    loop = MeasuredLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
