"""An in-process store for tests and examples; not for production.

Records are serialized exactly as server-side stores do, so data that would
fail to store in Redis or on disk fails here too, in the user's tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from .._ids import is_session_id
from .._record import Record
from .._serialize import dump_record, load_record
from .base import Store


class MemoryStore(Store):
    """A dict of id -> (serialized record, expiry), with optional per-id locks."""

    def __init__(self, *, locking: bool = False) -> None:
        self._items: dict[str, tuple[bytes, float]] = {}
        self.locking = locking
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        now = time.time()
        return sum(1 for _, exp in self._items.values() if exp > now)

    async def load(self, ref: str, ttl: int) -> Record | None:
        item = self._items.get(ref) if is_session_id(ref) else None
        if item is None:
            return None
        raw, expires = item
        now = time.time()
        if expires <= now:
            del self._items[ref]
            return None
        record = load_record(raw)
        life = record.lifetime or ttl
        self._items[ref] = (raw, now + life)
        record.expires_at = now + life
        return record

    async def save(self, ref: str, record: Record, ttl: int) -> str:
        if not is_session_id(ref):
            raise ValueError("refusing to store a session under a malformed id")
        self._items[ref] = (dump_record(record), time.time() + (record.lifetime or ttl))
        return ref

    async def touch(self, ref: str, ttl: int) -> None:
        item = self._items.get(ref)
        if item is not None:
            self._items[ref] = (item[0], time.time() + ttl)

    async def delete(self, ref: str) -> None:
        self._items.pop(ref, None)

    async def clear(self) -> int:
        count = len(self._items)
        self._items.clear()
        return count

    def lock(self, ref: str) -> AbstractAsyncContextManager[object]:
        if not self.locking:
            return nullcontext()
        return self._held(ref)

    @asynccontextmanager
    async def _held(self, ref: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(ref, (asyncio.Lock(), 0))
        self._locks[ref] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[ref]
            if users == 1:
                del self._locks[ref]
            else:
                self._locks[ref] = (lock, users - 1)
