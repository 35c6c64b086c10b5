"""The 0.1 store contract, deprecated: kept so stores written against it still run.

``asess.Store`` subclasses (load/save/touch/delete/clear on records) are
wrapped by :class:`V1StoreAdapter` into the v2 :class:`~asess.ServerStore`
contract, with a :class:`DeprecationWarning`. The adapter cannot give what the
old contract never asked for: a save is not conditional on the record still
existing, so a logout can be undone by a concurrent request, and its leases
are the old ``lock()`` context managers' no-ops. Port the store to
:class:`~asess.ServerStore` to get those guarantees.
"""

from __future__ import annotations

import secrets
import warnings
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager, nullcontext
from types import TracebackType
from typing import ClassVar

from .._record import Record
from .._serialize import dump_record, load_record
from .base import Lease, ServerStore


class Store(ABC):
    """Deprecated base class of 0.1 backends; subclass :class:`~asess.ServerStore` instead.

    ``data_in_cookie`` is true for the cookie store, whose reference *is* the
    data; server-side stores are keyed by a random session id that the
    lifecycle generates and validates.
    """

    data_in_cookie: ClassVar[bool] = False
    #: True when :meth:`lock` really holds sessions (``locking=True`` stores).
    locking: bool = False

    @abstractmethod
    async def load(self, ref: str, ttl: int) -> Record | None:
        """Return the live record for ``ref`` and extend its life to ``ttl`` seconds.

        Returns ``None`` when there is no live record (unknown, expired, or not
        decodable): the lifecycle then starts a fresh session. Storage failures
        raise :class:`~asess.SessionBackendError`, never ``None``, so an outage
        cannot masquerade as an empty session that would then overwrite data.
        A store may apply ``record.lifetime`` instead of ``ttl`` when the
        record carries its own lifetime.
        """

    @abstractmethod
    async def save(self, ref: str, record: Record, ttl: int) -> str:
        """Persist ``record`` under ``ref`` for ``ttl`` seconds; return the cookie value.

        Server-side stores return ``ref``; the cookie store ignores ``ref`` and
        returns the new token.
        """

    @abstractmethod
    async def touch(self, ref: str, ttl: int) -> None:
        """Extend the life of ``ref`` to ``ttl`` seconds without rewriting it."""

    @abstractmethod
    async def delete(self, ref: str) -> None:
        """Remove ``ref``; removing what is not there is not an error."""

    @abstractmethod
    async def clear(self) -> int:
        """Remove every session this store owns and nothing else; return how many."""

    def lock(self, ref: str) -> AbstractAsyncContextManager[object]:
        """Hold ``ref`` exclusively from load to save (stores with ``locking=True``).

        Raises :class:`~asess.SessionLockTimeout` when the wait is too long.
        """
        return nullcontext()

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections or descriptors the store holds."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class V1StoreAdapter(ServerStore):
    """Runs a 0.1 :class:`Store` under the v2 contract, without v2's guarantees."""

    def __init__(self, store: Store) -> None:
        warnings.warn(
            f"{type(store).__name__} implements the deprecated asess.Store contract: a "
            "logout is not guaranteed against concurrent requests with it. Subclass "
            "asess.ServerStore (read/create/update/delete/acquire/release/clear) instead.",
            DeprecationWarning,
            stacklevel=4,
        )
        self.inner = store

    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        record = await self.inner.load(sid, ttl)
        return None if record is None else dump_record(record)

    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        await self.inner.save(sid, load_record(payload), ttl)

    async def update(
        self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
    ) -> bool:
        await self.inner.save(sid, load_record(payload), ttl)
        return True

    async def delete(self, sid: str) -> bool:
        await self.inner.delete(sid)
        return True  # 0.1 stores cannot tell

    async def acquire(self, sid: str, seconds: float, now: float) -> Lease | None:
        return Lease(sid, secrets.token_hex(16), now + seconds)

    async def release(self, lease: Lease) -> None:
        return None

    async def clear(self) -> int:
        return await self.inner.clear()

    async def aclose(self) -> None:
        await self.inner.aclose()
