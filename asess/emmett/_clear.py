"""``clear()`` for Emmett code that calls it without ``await``, and for code that awaits it.

Emmett's ``SessionManager.clear()`` is synchronous, while asess stores clear
asynchronously. :func:`start_clear` starts the work at call time and returns a
:class:`Clearing`, which may be awaited for the number of sessions removed or
ignored:

- inside a running event loop (a handler, a pipe, a task) the work is
  scheduled on that loop at once; awaiting waits for it, not awaiting lets it
  finish in the background, and a failure nobody awaited is logged;
- with no running loop (a script, a shell, start-up code) the work runs to
  completion before the call returns, on the thread's event loop (so clients
  bound to it, such as ``redis.asyncio``, keep working), and the result is
  ready.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Coroutine, Generator
from typing import Any

logger = logging.getLogger("asess.emmett")

# Tasks started without an awaiter are kept here until done, so they are not
# garbage-collected mid-flight.
_background: set[asyncio.Task[int]] = set()


class Clearing:
    """A clear in progress or done; ``await`` it for the number of sessions removed."""

    __slots__ = ("_awaited", "_result", "_task")

    def __init__(self) -> None:
        self._task: asyncio.Task[int] | None = None
        self._result: int | None = None
        self._awaited = False

    def done(self) -> bool:
        return self._task.done() if self._task is not None else True

    def result(self) -> int:
        """The number of sessions removed; raises what the clear raised.

        Raises:
            asyncio.InvalidStateError: the clear is still running (await it).
        """
        if self._task is not None:
            return self._task.result()
        assert self._result is not None
        return self._result

    def __await__(self) -> Generator[Any, None, int]:
        self._awaited = True
        if self._task is not None:
            return (yield from self._task)
        return self.result()

    def __repr__(self) -> str:
        state = "running" if not self.done() else "done"
        return f"<Clearing {state}>"

    def _on_done(self, task: asyncio.Task[int]) -> None:
        _background.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # also marks the exception as retrieved
        if error is not None and not self._awaited:
            logger.error("clearing the sessions failed: %s", error, exc_info=error)


def start_clear(work: Coroutine[Any, Any, int]) -> Clearing:
    """Start ``work`` now, on the running loop or to completion; see the module doc."""
    clearing = Clearing()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # Failures raise here, to the caller, as Emmett's synchronous clear does.
        clearing._result = _run_to_completion(work)
        return clearing
    task = loop.create_task(work)
    clearing._task = task
    _background.add(task)
    task.add_done_callback(clearing._on_done)
    return clearing


def _run_to_completion(work: Coroutine[Any, Any, int]) -> int:
    # Reuse the thread's event loop when it has one (Emmett's test client
    # keeps one between requests), so loop-bound connections stay valid.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            loop = None
    if loop is None or loop.is_closed():
        return asyncio.run(work)
    return loop.run_until_complete(work)
