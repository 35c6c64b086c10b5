"""Measurement primitives shared by every scenario: settings, rows, timing loops.

A *subject* is one implementation under test (asess with a backend, or a
peer). Scenarios build subjects, and this module times them the same way: a
synchronous loop for pure CPU work, or N concurrent client coroutines for
anything that awaits, with a warm-up that is not counted and, for a single
client, the loop-lag ticker running beside it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .looplag import LagMeter, LagStats, percentile

Step = Callable[[], Awaitable[None]]


class Unavailable(Exception):
    """A subject cannot run here (package or server missing); its row is skipped."""


@dataclass(frozen=True, slots=True)
class Settings:
    """How long and how wide each measurement runs."""

    quick: bool
    codec_seconds: float
    lag_seconds: float
    cycle_seconds: float
    cycle_concurrency: tuple[int, ...]
    store_seconds: float
    store_concurrency: tuple[int, ...]
    proxy_concurrency: tuple[int, ...]
    rounds: int = 1
    warmup_fraction: float = 0.15
    #: Hold each client window open past its length until this many operations
    #: were timed in it (``--window``: a window shorter than one round of
    #: requests at high concurrency would otherwise time none). 0: never.
    min_ops: int = 0

    @classmethod
    def full(cls) -> Settings:
        return cls(
            quick=False,
            codec_seconds=1.2,
            lag_seconds=0.8,
            cycle_seconds=2.0,
            cycle_concurrency=(1, 100),
            store_seconds=2.0,
            store_concurrency=(1, 10, 100, 1000),
            proxy_concurrency=(1, 10, 100, 1000),
            rounds=2,
        )

    @classmethod
    def smoke(cls) -> Settings:
        return cls(
            quick=True,
            codec_seconds=0.12,
            lag_seconds=0.1,
            cycle_seconds=0.25,
            cycle_concurrency=(1, 10),
            store_seconds=0.25,
            store_concurrency=(1, 100),
            proxy_concurrency=(1, 100),
        )


@dataclass(slots=True)
class Measurement:
    """What one timing run saw."""

    ops: int
    seconds: float
    latencies: list[float]
    lag: LagStats | None = None
    cpu_seconds: float | None = None

    @property
    def ops_per_sec(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ops_per_sec(self) -> float | None:
        """Operations per second of CPU time (the timing thread's for synchronous
        loops, the whole process's for clients): what the work costs, whatever
        share of the machine other processes took meanwhile."""
        if not self.cpu_seconds:
            return None
        return self.ops / self.cpu_seconds


@dataclass(slots=True)
class Row:
    """One figure of the report: a subject in a scenario case at one concurrency."""

    scenario: str
    case: str
    subject: str
    family: str
    concurrency: int
    measurement: Measurement | None = None
    skipped: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "case": self.case,
            "subject": self.subject,
            "family": self.family,
            "concurrency": self.concurrency,
            "skipped": self.skipped,
            "note": self.note,
        }
        m = self.measurement
        if m is not None:
            lat = sorted(m.latencies)
            out |= {
                "ops": m.ops,
                "seconds": round(m.seconds, 4),
                "ops_per_sec": round(m.ops_per_sec, 2),
                "cpu_ops_per_sec": (
                    round(m.cpu_ops_per_sec, 2) if m.cpu_ops_per_sec is not None else None
                ),
                "p50_us": round(percentile(lat, 50) * 1e6, 2),
                "p99_us": round(percentile(lat, 99) * 1e6, 2),
                "lag": m.lag.as_dict() if m.lag is not None else None,
            }
        out |= self.extra
        return out


def _settle() -> None:
    """Start each run from the same heap: collect, then freeze what setup left behind
    so a later full collection does not walk it inside someone else's figure."""
    gc.collect()
    gc.freeze()


def measure_sync(fn: Callable[[], object], seconds: float, warmup: float) -> Measurement:
    """Call ``fn`` back to back for ``seconds`` after ``warmup`` seconds of untimed calls."""
    end_warm = time.perf_counter() + warmup
    while time.perf_counter() < end_warm:
        fn()
    _settle()
    latencies: list[float] = []
    cpu_start = time.thread_time()
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        t0 = now
        fn()
        now = time.perf_counter()
        latencies.append(now - t0)
    cpu = time.thread_time() - cpu_start
    return Measurement(
        ops=len(latencies), seconds=now - start, latencies=latencies, cpu_seconds=cpu
    )


# How long past its deadline a window may be held open for ``min_ops``: a subject
# that cannot finish one operation in a second still reads 0 operations. (A cap
# of quick mode's 0.25 s window let a loaded machine starve whole rows.)
HOLD_LIMIT_SECONDS = 1.0


async def measure_clients(
    steps: list[Step], seconds: float, warmup: float, min_ops: int = 0
) -> Measurement:
    """Run each step in its own client coroutine, back to back, and count completions.

    Only operations that start after the warm-up and finish before the
    deadline count. With ``min_ops``, the window stays open past the deadline
    (at most ``HOLD_LIMIT_SECONDS``) until that many have been timed and every
    client has timed one of its own, so a row of 100 clients has had 100
    requests in flight; its length is then what it really was.
    With a single client the loop-lag ticker runs beside it.
    """
    _settle()
    begin = time.perf_counter()
    measured_from = begin + warmup
    deadline = measured_from + seconds
    hard_stop = deadline + HOLD_LIMIT_SECONDS
    latencies: list[float] = []
    cpu_marks: list[float] = []
    held_until: float | None = None  # when the last operation timed past the deadline ended

    async def client(step: Step) -> None:
        nonlocal held_until
        timed = 0  # operations of this client that count
        while True:
            t0 = time.perf_counter()
            held = min_ops > 0 and (len(latencies) < min_ops or timed == 0)
            if t0 >= deadline and (not held or t0 >= hard_stop):
                if len(cpu_marks) == 1:
                    cpu_marks.append(time.process_time())
                return
            if t0 >= measured_from and not cpu_marks:
                cpu_marks.append(time.process_time())
            await step()
            t1 = time.perf_counter()
            if t0 >= measured_from and t1 <= deadline:
                latencies.append(t1 - t0)
                timed += 1
            elif t0 >= measured_from and held and t1 <= hard_stop:
                latencies.append(t1 - t0)
                timed += 1
                held_until = t1 if held_until is None else max(held_until, t1)
            # A server goes back to the loop between requests (to read the next
            # one); without this a step that never awaits would starve the ticker.
            await asyncio.sleep(0)

    async def run_all() -> None:
        await asyncio.gather(*(client(step) for step in steps))

    lag: LagStats | None = None
    if len(steps) == 1:
        async with LagMeter() as meter:
            await run_all()
        lag = meter.stats(since=measured_from)
    else:
        await run_all()
    # Process CPU (every thread: executor work counts) over the measured window.
    cpu = cpu_marks[1] - cpu_marks[0] if len(cpu_marks) == 2 else None
    window = seconds if held_until is None else held_until - measured_from
    return Measurement(
        ops=len(latencies), seconds=window, latencies=latencies, lag=lag, cpu_seconds=cpu
    )


@dataclass(frozen=True, slots=True)
class Task:
    """One step of the run, shown on the progress bar: it returns finished rows."""

    label: str
    run: Callable[[], Awaitable[list[Row]]]


@dataclass(slots=True)
class Env:
    """Resources shared by the scenarios for one run."""

    settings: Settings
    redis_url: str | None = None
    redis_missing: str = ""
    proxied_url: str | None = None
    proxy_missing: str = ""
    postgres_dsn: str | None = None
    postgres_missing: str = ""


def _rate(row: Row) -> float:
    m = row.measurement
    if m is None:
        return 0.0
    cpu = m.cpu_ops_per_sec
    # Pure CPU work (codecs) is judged on CPU time; anything that waits, on the clock.
    return cpu if cpu is not None and row.scenario == "codecs" else m.ops_per_sec


def best_of(rows: list[Row]) -> list[Row]:
    """Merge rounds: per figure keep the round with the highest rate, note every round's.

    Interference from other processes only ever slows a run down, so the best
    round is the least disturbed one; the figures reported for it (latency,
    loop lag) all come from that same round.
    """
    groups: dict[tuple[str, str, str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.scenario, row.case, row.subject, row.concurrency), []).append(row)
    merged = []
    for group in groups.values():
        measured = [r for r in group if r.measurement is not None]
        if not measured:
            merged.append(group[0])
            continue
        best = max(measured, key=_rate)
        if len(group) > 1:
            best.extra["rounds_ops_per_sec"] = [
                round(r.measurement.ops_per_sec, 1) if r.measurement else None for r in group
            ]
        merged.append(best)
    return merged
