"""Batching: the reads (or writes) of concurrent requests go to PostgreSQL as one statement.

Each commit costs the server a WAL flush and each statement a round trip,
so a hundred requests that each read their session in the same event-loop
turn are far cheaper as one ``UPDATE ... WHERE id = ANY(...)`` than as a
hundred statements (about five times the throughput on loopback). A
:class:`Coalescer` queues each call with a future; on the next loop turn it
sends what is queued as batches of distinct ids (a second call for the same
id waits for the next batch), a lone call as the plain one-row statement,
and hands every caller its own row's outcome. While ``max_inflight`` batches
are out, new calls keep queueing, so batches grow with the load; an idle
store pays one loop turn per call. A batch that fails fails each of its
callers with the same error; a caller cancelled before its batch left is
dropped from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

R = TypeVar("R")
Args = tuple[Any, ...]
_Pending = tuple[str, Args, "asyncio.Future[Any]"]


class Coalescer(Generic[R]):
    """Run calls one by one with ``one`` or together with ``many``.

    Args:
        one: runs one call's arguments, returns its result.
        many: runs several calls (distinct ids, sorted), returns results by id.
        missing: the result of a call whose id ``many`` did not return.
        max_batch: the most calls in one statement.
        max_inflight: the most statements out at once; the pool serves the rest.
    """

    def __init__(
        self,
        one: Callable[[Args], Awaitable[R]],
        many: Callable[[Sequence[Args]], Awaitable[dict[str, R]]],
        missing: R,
        *,
        max_batch: int = 100,
        max_inflight: int = 4,
    ) -> None:
        self._one = one
        self._many = many
        self._missing = missing
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self.statements_sent = 0  # for tests and monitoring

    async def submit(self, sid: str, args: Args) -> R:
        """Queue one call for session ``sid`` and wait for its own outcome."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # State from a loop that is gone (one loop per test, an app restarted).
            self._loop, self._queue, self._tasks, self._scheduled = loop, [], set(), False
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((sid, args, future))
        if not self._scheduled and len(self._tasks) < self._max_inflight:
            # On the next turn, so the calls of every request that runs in this
            # one leave together (going at once, alone, measured slower at 10
            # clients and no faster at one).
            self._scheduled = True
            loop.call_soon(self._send_queued)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                future.exception()  # an outcome that landed as we were cancelled
            raise

    async def wait_idle(self) -> None:
        """Wait until every queued call has been sent and answered."""
        while self._tasks and self._loop is asyncio.get_running_loop():
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _send_queued(self) -> None:
        self._scheduled = False
        assert self._loop is not None
        while self._queue and len(self._tasks) < self._max_inflight:
            batch = self._take()
            if batch:
                task = self._loop.create_task(self._send(batch))
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _take(self) -> list[_Pending]:
        """Up to ``max_batch`` live calls with distinct ids; the rest stay queued, in order."""
        batch: list[_Pending] = []
        ids: set[str] = set()
        rest: list[_Pending] = []
        for item in self._queue:
            if item[2].done():  # cancelled before it was sent
                continue
            if item[0] in ids or len(batch) >= self._max_batch:
                rest.append(item)
            else:
                ids.add(item[0])
                batch.append(item)
        self._queue = rest
        return batch

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._queue and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._send_queued)

    async def _send(self, batch: list[_Pending]) -> None:
        self.statements_sent += 1
        try:
            if len(batch) == 1:
                results = {batch[0][0]: await self._one(batch[0][1])}
            else:
                batch.sort(key=lambda item: item[0])  # rows are locked in id order
                results = await self._many([item[1] for item in batch])
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, _, future in batch:
                future.cancel()  # the loop is shutting down: nobody gets an answer
            raise
        for sid, _, future in batch:
            if not future.done():
                future.set_result(results.get(sid, self._missing))
