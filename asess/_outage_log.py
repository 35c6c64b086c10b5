"""One traceback per outage, then one summary line per interval, instead of one per request.

When the store goes down, every request answers 503; logging each with a full
traceback buries the cause under thousands of identical lines. The first
failure after a quiet spell is logged with its traceback; later ones are
counted, and at most once per ``interval`` a single line says how many
requests failed since and what the last error was. Each manager has its own
(``manager.outages``), which both adapters (the middleware, the Emmett pipe)
write to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("asess")


class OutageLog:
    """Rate-limited error logging for store failures answered with 503."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last_logged: float | None = None
        self._suppressed = 0

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        last = self._last_logged
        if last is None or now - last >= self.interval * 6:
            # A new outage (or the first in a long while): the whole story once.
            logger.error("session store unavailable, answering 503: %s", exc, exc_info=exc)
            self._last_logged, self._suppressed = now, 0
        elif now - last >= self.interval:
            logger.error(
                "session store still unavailable: %d more requests answered 503 in the last "
                "%.0fs; last error: %s",
                self._suppressed + 1,
                now - last,
                exc,
            )
            self._last_logged, self._suppressed = now, 0
        else:
            self._suppressed += 1
