"""Waiting for a lease: the one back-off loop the lifecycle and the user index share.

A store's ``acquire`` tries once; this retries it with jittered exponential
back-off on the policy's clock until ``seconds`` have passed. Because a lease
lasts at most ``seconds`` as well, a waiter that arrived while another
request held the lease finds it expired by its own deadline, and takes it
over: only a crowd that keeps winning the lease first makes it time out.
"""

from __future__ import annotations

import random

from ._backends.base import Lease, ServerStore
from ._clock import Clock
from ._exceptions import SessionLockTimeout

_FIRST_WAIT = 0.002
_MAX_WAIT = 0.05


async def wait_for_lease(store: ServerStore, sid: str, seconds: float, clock: Clock) -> Lease:
    """The lease of ``sid`` for ``seconds``, waiting at most ``seconds`` for it.

    Raises:
        SessionLockTimeout: others held it for the whole wait.
    """
    deadline = clock.now() + seconds
    wait = _FIRST_WAIT
    while True:
        now = clock.now()
        lease = await store.acquire(sid, seconds, now)
        if lease is not None:
            return lease
        if now >= deadline:
            raise SessionLockTimeout(
                f"the session stayed locked for more than {seconds:g}s; raise "
                "lock_timeout or shorten the requests that hold it"
            )
        # Jittered so a crowd of waiters does not retry in step; the last try
        # lands at the deadline, when any older lease is over.
        await clock.sleep(min(wait * random.uniform(0.5, 1.0), deadline - now))
        wait = min(wait * 2, _MAX_WAIT)
