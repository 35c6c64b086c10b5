"""The two shapes a thing under test takes: a token codec, or a service with clients.

``CodecSubject`` is a cookie format driven the way its framework drives it on a
request that changes the session (``write``) and on one that only reads it
(``read``). ``ServiceSubject`` is anything reached by awaiting (an ASGI app with
session middleware, a session store): it opens, hands out one step function per
simulated client, and closes. Every step checks the session really persisted
(the counter it reads back is the one it wrote), so a broken subject fails
loudly instead of looking fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from . import memory
from .runner import Row, Step, Unavailable, measure_clients


class BenchError(Exception):
    """A subject answered wrongly (lost or stale session): its figures would be meaningless."""


class CodecSubject(ABC):
    """A cookie codec as one framework uses it."""

    name: str = ""
    family: str = ""
    note: str = ""

    @abstractmethod
    def issue(self, data: dict[str, Any]) -> str:
        """Return a first token for ``data`` (not timed)."""

    @abstractmethod
    def write(self, token: str) -> str:
        """Decode, bump the counter, encode: return the token the browser keeps."""

    @abstractmethod
    def read(self, token: str) -> str:
        """Decode and read, no change; return the token the browser keeps afterwards."""

    async def write_async(self, token: str) -> str:
        """``write`` as the framework's middleware runs it on the event loop."""
        return self.write(token)

    async def read_async(self, token: str) -> str:
        """``read`` as the framework's middleware runs it on the event loop."""
        return self.read(token)


class ServiceSubject(ABC):
    """An app or store that simulated clients call concurrently."""

    name: str = ""
    family: str = ""
    note: str = ""

    @abstractmethod
    async def open(self) -> None:
        """Acquire what the subject needs (raise ``Unavailable`` to be skipped)."""

    @abstractmethod
    async def client(self, index: int) -> Step:
        """Prepare simulated client ``index`` (not timed) and return its step."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections, files and servers."""


async def measure_service(
    make: Callable[[], ServiceSubject],
    where: tuple[str, str],
    name: str,
    family: str,
    concurrencies: tuple[int, ...],
    seconds: float,
    warmup_fraction: float,
    min_ops: int = 0,
) -> list[Row]:
    """Open one subject and time it at each concurrency; failures become skipped rows."""
    scenario, case = where
    try:
        subject = make()
        await subject.open()
    except (Unavailable, ImportError) as exc:
        return [Row(scenario, case, name, family, c, skipped=str(exc)) for c in concurrencies]
    rows = []
    try:
        for c in concurrencies:
            try:
                steps = [await subject.client(i) for i in range(c)]
                rss = memory.rss_mb()
                tracked = memory.peak_reset()
                m = await measure_clients(steps, seconds, seconds * warmup_fraction, min_ops)
                peak = memory.peak_mb() if tracked else None
            except Exception as exc:  # a broken subject is reported, not fatal to the run
                rows.append(Row(scenario, case, name, family, c, skipped=f"failed: {exc!r}"[:300]))
                continue
            # Peak resident memory of the whole process while this row ran.
            extra = {"rss_start_mb": rss, "peak_rss_mb": peak}
            rows.append(Row(scenario, case, name, family, c, m, note=subject.note, extra=extra))
    finally:
        await subject.close()
    return rows
