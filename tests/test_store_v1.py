"""Stores written for asess 0.1 (``asess.Store``) still run, with a DeprecationWarning."""

from __future__ import annotations

import pytest

from asess import Record, SessionManager, Store

from .helpers import client


class OldDictStore(Store):
    """A 0.1-style store: records by reference, no conditional writes, no leases."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}

    async def load(self, ref: str, ttl: int) -> Record | None:
        return self.records.get(ref)

    async def save(self, ref: str, record: Record, ttl: int) -> str:
        self.records[ref] = record
        return ref

    async def touch(self, ref: str, ttl: int) -> None:
        pass

    async def delete(self, ref: str) -> None:
        self.records.pop(ref, None)

    async def clear(self) -> int:
        count = len(self.records)
        self.records.clear()
        return count


async def test_a_0_1_store_runs_wrapped_with_a_deprecation_warning() -> None:
    store = OldDictStore()
    with pytest.warns(DeprecationWarning, match="deprecated asess.Store contract"):
        manager = SessionManager(store)
    async with client(manager) as c:
        assert [(await c.get("/")).text for _ in range(3)] == ["1", "2", "3"]
    assert len(store.records) == 1
    assert await manager.clear() == 1


def test_something_else_than_a_store_is_a_configuration_error() -> None:
    from asess import ConfigurationError

    with pytest.raises(ConfigurationError, match="ServerStore"):
        SessionManager(object())  # type: ignore[arg-type]
