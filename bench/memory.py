"""Resident memory: what 10,000 live sessions cost the memory store, and peak RSS per run.

``peak_reset`` / ``peak_mb`` bracket one measurement with Linux's resettable
high-water mark (``/proc/self/clear_refs``, ``VmHWM``), so each store row at
every concurrency records the process's peak resident memory during that row
alone. ``live_sessions_task`` creates 10,000 sessions of the bench's ~1 kB
payload through ``manager.lifecycle`` on a memory store and reports the growth
of resident memory, per 10,000 sessions, after a full collection. It runs in
a fresh interpreter (``python -m bench.memory``): in the bench's own process
the allocator reuses memory the earlier scenarios freed, and resident memory
would not grow at all.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .payload import session_data
from .runner import Measurement, Row, Task

SESSIONS = 10_000
_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return round(kb / 1024, 1) if kb is not None else None


def peak_reset() -> bool:
    """Reset the peak-RSS mark to the current RSS; False where the kernel cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return round(kb / 1024, 1) if kb is not None else None


async def _measure_live() -> dict[str, Any]:
    """Create the sessions in this process and say what it cost (run in a fresh one)."""
    import asess

    manager = asess.SessionManager.memory()
    gc.collect()
    before = rss_mb()
    latencies: list[float] = []
    start = time.perf_counter()
    for _ in range(SESSIONS):
        t0 = time.perf_counter()
        async with manager.lifecycle(None) as session:
            session.update(session_data())
        latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    gc.collect()
    after = rss_mb()
    live = len(manager.store)  # type: ignore[arg-type]
    if live != SESSIONS:
        raise RuntimeError(f"memory store holds {live} sessions, expected {SESSIONS}")
    grown = round(after - before, 1) if after is not None and before is not None else None
    await manager.aclose()
    return {
        "seconds": seconds,
        "latencies": latencies,
        "rss_per_10k_mb": grown,
        "rss_before_mb": before,
        "rss_after_mb": after,
    }


async def _live_sessions() -> list[Row]:
    def child() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bench.memory"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=300,
        )

    proc = await asyncio.get_running_loop().run_in_executor(None, child)
    if proc.returncode != 0:  # reported as a skipped row, never fatal to the run
        why = f"failed: {proc.stderr[-300:]}"
        return [Row("memory", "live sessions", "asess memory", "asess", 1, skipped=why)]
    found = json.loads(proc.stdout)
    row = Row(
        "memory",
        "live sessions",
        "asess memory",
        "asess",
        1,
        Measurement(ops=SESSIONS, seconds=found.pop("seconds"), latencies=found.pop("latencies")),
        note=f"{SESSIONS:,} sessions of ~1 kB created through the lifecycle, fresh process",
        extra=found,
    )
    return [row]


def live_sessions_task() -> Task:
    return Task("memory: 10,000 live sessions in the memory store", _live_sessions)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_measure_live())))
