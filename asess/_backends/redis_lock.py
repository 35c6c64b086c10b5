"""Per-session locks held in Redis, for stores built with ``locking=True``.

A lock is a key set with ``SET key token NX PX <lock_timeout ms>``: a random
token names the holder, and the expiry bounds how long a crashed holder can
block everyone else. Waiters retry with jittered exponential back-off on
``asyncio.sleep`` (2 ms doubling to 50 ms), so they never block the loop, and
give up with :class:`~asess.SessionLockTimeout` after ``lock_timeout``. Release
is a compare-and-delete Lua script run by ``EVALSHA``, so a holder whose lock
expired cannot delete the lock a later holder took. The lock key shares the
session key's hash slot (see :func:`lock_key`), which keeps it on the same
cluster node as the data it guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from .._exceptions import ConfigurationError, SessionBackendError, SessionLockTimeout

logger = logging.getLogger("asess.redis")

RELEASE_SCRIPT = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)
RELEASE_SHA = hashlib.sha1(RELEASE_SCRIPT.encode(), usedforsecurity=False).hexdigest()

_FIRST_WAIT = 0.002
_MAX_WAIT = 0.05

Command = Callable[..., Awaitable[Any]]


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes, when it is a ``{tag}``; else None."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


def check_lockable_prefix(prefix: str) -> None:
    """Refuse a prefix whose braces would put a session's lock on another slot."""
    if hash_tag(prefix + "x") is None and "}" in prefix:
        raise ConfigurationError(
            f"the prefix {prefix!r} has a '}}' outside a {{hash tag}}, so session and "
            "lock keys would hash to different cluster slots; remove the brace or "
            "write a complete tag such as '{sessions}:'"
        )


def lock_key(data_key: str) -> str:
    """The lock key for ``data_key``, in the same cluster hash slot.

    ``emtsess:<id>`` is locked by ``{emtsess:<id>}:lock``: the tag is the whole
    data key, which hashes exactly like the untagged data key. A prefix that
    already carries a tag (``{app}:``) keeps it: the lock is ``<data key>:lock``.
    """
    if hash_tag(data_key) is not None:
        return data_key + ":lock"
    return "{" + data_key + "}:lock"


class RedisLock:
    """Async context manager holding one session's lock.

    Args:
        run: sends one command and returns its reply (the store's executor).
        key: the lock key, from :func:`lock_key`.
        timeout: seconds to wait for the lock, and the lock's own expiry.
        errors: exception types that mean Redis failed.
        no_script: the exception a server raises for an ``EVALSHA`` it has not
            seen (``redis.exceptions.NoScriptError``).
    """

    def __init__(
        self,
        run: Command,
        key: str,
        timeout: float,
        errors: tuple[type[BaseException], ...],
        no_script: type[BaseException],
    ) -> None:
        self._run = run
        self._key = key
        self._timeout = timeout
        self._errors = errors
        self._no_script = no_script
        self._token = secrets.token_hex(16)

    async def __aenter__(self) -> RedisLock:
        ttl_ms = max(1, int(self._timeout * 1000))
        deadline = time.monotonic() + self._timeout
        wait = _FIRST_WAIT
        while True:
            if await self._try_take(ttl_ms):
                return self
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionLockTimeout(
                    f"the session stayed locked for more than {self._timeout:g}s; "
                    "raise lock_timeout or shorten the requests that hold it"
                )
            # Full jitter keeps a crowd of waiters from retrying in step.
            await asyncio.sleep(min(left, random.uniform(0, wait)))
            wait = min(wait * 2, _MAX_WAIT)

    async def _try_take(self, ttl_ms: int) -> bool:
        try:
            return bool(await self._run("SET", self._key, self._token, "NX", "PX", ttl_ms))
        except self._errors as exc:
            raise SessionBackendError(
                f"Redis failed while locking a session ({type(exc).__name__}: {exc}); check "
                "that the server is reachable and accepts writes, and the client's timeouts"
            ) from exc
        except asyncio.CancelledError:
            # The SET may have taken the lock even though we will never see
            # the reply: release it so the session is not blocked until expiry.
            with contextlib.suppress(*self._errors):  # if not, it expires on its own
                await asyncio.shield(self._release())
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._release_quietly()

    async def _release_quietly(self) -> None:
        # Shielded so a request cancelled while leaving still frees the lock;
        # a failed release only logs, since the lock expires on its own.
        try:
            released = await asyncio.shield(self._release())
        except self._errors as exc:
            logger.warning("releasing session lock %s failed, it will expire: %r", self._key, exc)
            return
        if not released:
            logger.warning(
                "session lock %s had expired before release: the request held it "
                "longer than lock_timeout (%gs)",
                self._key,
                self._timeout,
            )

    async def _release(self) -> bool:
        try:
            reply = await self._run("EVALSHA", RELEASE_SHA, 1, self._key, self._token)
        except self._no_script:
            # This server (a restarted one, another cluster node) has not seen
            # the script yet; EVAL sends the body and caches it.
            reply = await self._run("EVAL", RELEASE_SCRIPT, 1, self._key, self._token)
        return bool(reply)
