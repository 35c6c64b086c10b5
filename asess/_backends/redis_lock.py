"""Leases and fenced writes in Redis: the keys and the two scripts they need.

A lease is a key set with ``SET key token NX PX <ms>``: the random token names
the holder, and the expiry makes Redis end a lease whose holder died or
stalled, so a waiter takes over by simply succeeding at the same ``SET``.
A write under a lease runs :data:`FENCED_UPDATE`, which compares the lease
token and replaces the data (only if it exists: ``XX``) in one atomic step; a
release runs :data:`RELEASE`, a compare-and-delete, so a request whose lease
expired can neither write nor free the lease of the request that took over.
The lease key shares the data key's hash slot (:func:`lock_key`), as a script
over two keys needs on a cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from .._exceptions import ConfigurationError

RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)
# KEYS: data, lease. ARGV: token, payload, ttl seconds. Nil when fenced off or gone.
FENCED_UPDATE = (
    "if redis.call('get', KEYS[2]) == ARGV[1] then "
    "return redis.call('set', KEYS[1], ARGV[2], 'XX', 'EX', ARGV[3]) else return false end"
)

Command = Callable[..., Awaitable[Any]]


def sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


SCRIPT_SHAS = {RELEASE: sha1(RELEASE), FENCED_UPDATE: sha1(FENCED_UPDATE)}


async def run_script(
    run: Command, no_script: type[BaseException], script: str, keys: list[str], *args: Any
) -> Any:
    """``EVALSHA``, falling back to ``EVAL`` on a server that has not cached the script yet."""
    try:
        return await run("EVALSHA", SCRIPT_SHAS[script], len(keys), *keys, *args)
    except no_script:
        # A restarted server, or another cluster node: EVAL sends the body and caches it.
        return await run("EVAL", script, len(keys), *keys, *args)


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes, when it is a ``{tag}``; else None."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


def check_lockable_prefix(prefix: str) -> None:
    """Refuse a prefix whose braces would put a session's lease on another slot."""
    if hash_tag(prefix + "x") is None and "}" in prefix:
        raise ConfigurationError(
            f"the prefix {prefix!r} has a '}}' outside a {{hash tag}}, so session and "
            "lease keys would hash to different cluster slots; remove the brace or "
            "write a complete tag such as '{sessions}:'"
        )


def lock_key(data_key: str) -> str:
    """The lease key for ``data_key``, in the same cluster hash slot.

    ``emtsess:<id>`` is leased by ``{emtsess:<id>}:lock``: the tag is the whole
    data key, which hashes exactly like the untagged data key. A prefix that
    already carries a tag (``{app}:``) keeps it: the lease is ``<data key>:lock``.
    """
    if hash_tag(data_key) is not None:
        return data_key + ":lock"
    return "{" + data_key + "}:lock"
