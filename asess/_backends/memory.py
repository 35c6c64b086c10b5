"""An in-process store for tests and examples; not for production.

It keeps the same payload bytes the other server-side stores keep, so data
that would fail to store in Redis or on disk fails here too, in the user's
tests; and it follows the store contract to the letter (conditional updates,
expiring leases), so concurrency bugs in an application show up here first.
"""

from __future__ import annotations

import secrets

from .base import GcResult, Lease, RecordTimes, ServerStore


class MemoryStore(ServerStore):
    """A dict of id -> (payload, ttl, expiry), and one of id -> lease."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[bytes, int, float]] = {}
        self._leases: dict[str, Lease] = {}

    def __len__(self) -> int:
        """Records held, expired ones not yet collected included."""
        return len(self._items)

    @property
    def lease_count(self) -> int:
        """Leases held (live or expired and not yet released)."""
        return len(self._leases)

    def _live(self, sid: str, now: float) -> tuple[bytes, int, float] | None:
        item = self._items.get(sid)
        if item is not None and item[2] <= now:
            del self._items[sid]
            return None
        return item

    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        item = self._live(sid, now)
        if item is None:
            return None
        payload, own_ttl, _ = item
        self._items[sid] = (payload, own_ttl, now + own_ttl)
        return payload

    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        self._items[sid] = (payload, ttl, now + ttl)

    async def update(
        self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
    ) -> bool:
        if self._live(sid, now) is None:
            return False
        if lease is not None and not self._holds(lease, now):
            return False
        self._items[sid] = (payload, ttl, now + ttl)
        return True

    async def delete(self, sid: str) -> bool:
        return self._items.pop(sid, None) is not None

    async def peek(self, sid: str, now: float) -> RecordTimes | None:
        item = self._live(sid, now)
        return None if item is None else RecordTimes(item[2], item[1])

    async def acquire(self, sid: str, seconds: float, now: float) -> Lease | None:
        held = self._leases.get(sid)
        if held is not None and held.expires_at > now:
            return None
        lease = Lease(sid, secrets.token_hex(16), now + seconds)
        self._leases[sid] = lease
        return lease

    async def release(self, lease: Lease) -> None:
        if self._leases.get(lease.sid) == lease:
            del self._leases[lease.sid]

    def _holds(self, lease: Lease, now: float) -> bool:
        return self._leases.get(lease.sid) == lease and lease.expires_at > now

    async def clear(self) -> int:
        count = len(self._items)
        self._items.clear()
        return count

    async def gc(self, now: float) -> GcResult:
        expired = [sid for sid, (_, _, exp) in self._items.items() if exp <= now]
        for sid in expired:
            del self._items[sid]
        stale = [sid for sid, lease in self._leases.items() if lease.expires_at <= now]
        for sid in stale:
            del self._leases[sid]
        return GcResult(expired=len(expired), locks=len(stale), kept=len(self._items))
