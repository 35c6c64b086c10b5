"""The public store contract kit (asess.testing) run against every server-side store.

Besides the built-in stores it runs against ``DictStore``, a small store
written here the way the README's "Writing a store" section says, so the kit
is known to work for stores asess did not write.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from asess import GcResult, Lease, RecordTimes, ServerStore
from asess.testing import STORE_CHECKS, StoreContract

pytestmark = pytest.mark.timeout(60)


class DictStore(ServerStore):
    """A minimal custom store: records and leases in two dicts, expiry from ``now``."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[bytes, int, float]] = {}
        self.leases: dict[str, Lease] = {}

    def _alive(self, sid: str, now: float) -> bool:
        item = self.records.get(sid)
        return item is not None and item[2] > now

    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        if not self._alive(sid, now):
            return None
        payload, own_ttl, _ = self.records[sid]
        self.records[sid] = (payload, own_ttl, now + own_ttl)
        return payload

    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        self.records[sid] = (payload, ttl, now + ttl)

    async def update(
        self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
    ) -> bool:
        if not self._alive(sid, now):
            return False
        if lease is not None and (self.leases.get(sid) != lease or lease.expires_at <= now):
            return False
        self.records[sid] = (payload, ttl, now + ttl)
        return True

    async def delete(self, sid: str) -> bool:
        return self.records.pop(sid, None) is not None

    async def peek(self, sid: str, now: float) -> RecordTimes | None:
        if not self._alive(sid, now):
            return None
        _, ttl, expires = self.records[sid]
        return RecordTimes(expires, ttl)

    async def acquire(self, sid: str, seconds: float, now: float) -> Lease | None:
        held = self.leases.get(sid)
        if held is not None and held.expires_at > now:
            return None
        self.leases[sid] = lease = Lease(sid, secrets.token_hex(16), now + seconds)
        return lease

    async def release(self, lease: Lease) -> None:
        if self.leases.get(lease.sid) == lease:
            del self.leases[lease.sid]

    async def clear(self) -> int:
        count = len(self.records)
        self.records.clear()
        return count

    async def gc(self, now: float) -> GcResult:
        dead = [sid for sid in self.records if not self._alive(sid, now)]
        for sid in dead:
            del self.records[sid]
        return GcResult(expired=len(dead), kept=len(self.records))


async def _dict_leases(store: Any) -> int:
    return len(store.leases)


async def _memory_leases(store: Any) -> int:
    return int(store.lease_count)


def _lease_files(directory: Path) -> Any:
    async def count(store: Any) -> int:
        if not directory.exists():
            return 0
        return sum(1 for name in os.listdir(directory) if name.endswith(".lock"))

    return count


async def _redis_leases(store: Any) -> int:
    pattern = "{" + store.key("") + "*}:lock"
    keys = [k async for k in store.client.scan_iter(match=pattern.replace("{", "\\{"))]
    return len(keys)


async def _postgres_leases(store: Any) -> int:
    pool = await store.pool()
    sql = f"SELECT count(*) FROM {store.table} WHERE lease_token IS NOT NULL OR data IS NULL"
    return int(await pool.fetchval(sql))


@pytest.fixture(params=["dict", "memory", "files", "redis", "redis-cluster", "postgres"])
def contract(request: pytest.FixtureRequest) -> StoreContract:
    from asess import SessionManager

    name = request.param
    if name == "dict":
        return StoreContract(DictStore, leftovers=_dict_leases)
    if name == "memory":
        return StoreContract(lambda: SessionManager.memory().store, leftovers=_memory_leases)  # type: ignore[arg-type,return-value]
    if name == "files":
        directory = request.getfixturevalue("tmp_path") / "sessions"
        return StoreContract(
            lambda: SessionManager.files(path=directory).store,  # type: ignore[arg-type,return-value]
            leftovers=_lease_files(directory),
        )
    if name == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        tables = request.getfixturevalue("pg_tables")

        def build_postgres() -> ServerStore:
            from asess._backends.postgres import PostgresStore

            return PostgresStore(dsn, table=tables())

        return StoreContract(build_postgres, leftovers=_postgres_leases)
    if name == "redis":
        url = request.getfixturevalue("redis_url")
        if url is None:
            pytest.skip("no redis-server on this machine (CI requires one)")

        def build_single() -> ServerStore:
            from asess._backends.redis import RedisStore

            return RedisStore(url, prefix=f"kit{secrets.token_hex(4)}:")

        return StoreContract(build_single, leftovers=_redis_leases)
    from tests.redis_servers import cluster_client

    cluster = request.getfixturevalue("redis_cluster")

    async def build_cluster() -> ServerStore:
        from asess._backends.redis import RedisStore

        client = cluster_client(cluster)
        store = RedisStore(client, prefix=f"kit{secrets.token_hex(4)}:")
        original = store.aclose

        async def aclose() -> None:
            await original()
            await client.aclose()

        store.aclose = aclose  # type: ignore[method-assign]
        return store

    return StoreContract(build_cluster)


@pytest.mark.parametrize("check", STORE_CHECKS)
async def test_store_keeps_the_contract(contract: StoreContract, check: str) -> None:
    await contract.run(check)


async def test_the_kit_catches_a_store_that_resurrects_sessions() -> None:
    class Resurrecting(DictStore):
        async def update(
            self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
        ) -> bool:
            self.records[sid] = (payload, ttl, now + ttl)  # the 0.1 bug: save always writes
            return True

    with pytest.raises(AssertionError, match="update of a deleted record"):
        await StoreContract(Resurrecting).run("a_deleted_record_stays_deleted")
    with pytest.raises(AssertionError, match="store contract broken"):
        await StoreContract(Resurrecting).run_all()


async def test_the_kit_catches_a_lease_that_never_expires() -> None:
    class Eternal(DictStore):
        async def acquire(self, sid: str, seconds: float, now: float) -> Lease | None:
            return await super().acquire(sid, 1e9, now)

    with pytest.raises(AssertionError):
        await StoreContract(Eternal).run("an_expired_lease_is_taken_over_and_fenced_off")
