"""The server-side store contract (v2): ids to bytes, conditional writes, leases.

A :class:`ServerStore` keeps opaque payloads under session ids. It does no
lifetime reasoning (the lifecycle says how many seconds a record lives and
what time it is) and no id validation (the lifecycle only passes ids it
generated or checked). What it must get right is ordering under
concurrency, because a logout is only as final as the store makes it:

- :meth:`update` writes only while the record still exists, so a request that
  loaded a session before a concurrent logout (:meth:`delete`) or login
  (regenerate: delete plus :meth:`create`) cannot write the dead id back;
- with a :class:`Lease`, :meth:`update` also writes only while that lease is
  still held, checked atomically with the write (fencing), so a request that
  outlived its lease cannot overwrite the request that took over;
- leases expire by themselves after the seconds given to :meth:`acquire`, so
  a stuck or killed holder blocks its session for at most that long.

``asess.testing.run_store_contract`` checks all of this against any store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that one request holds a session: its id, a random token, and when it ends."""

    sid: str
    token: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class RecordTimes:
    """What :meth:`ServerStore.peek` tells: when a record expires, and its idle ttl.

    ``expires_at - ttl`` is when it was last read or written (its last use).
    ``ttl`` is None when the store cannot tell (records written by asess 0.1).
    """

    expires_at: float
    ttl: int | None


@dataclass(frozen=True)
class GcResult:
    """What one garbage collection did.

    Attributes:
        expired: records removed because they had expired.
        orphans: temporary files removed because their writer is gone (files).
        locks: lease files removed because nobody held them any more (files).
        kept: live records left in place.
    """

    expired: int = 0
    orphans: int = 0
    locks: int = 0
    kept: int = 0


class ServerStore(ABC):
    """Base class of every server-side backend (memory, files, Redis, yours).

    Every method raises :class:`~asess.SessionBackendError` when the storage
    fails; none may turn a failure into "no record", which the lifecycle
    would answer with an empty session that then overwrites the real one.
    ``now`` is the lifecycle's clock reading, in epoch seconds.
    """

    #: True when the storage drops expired records itself (Redis key expiry):
    #: :meth:`gc` is then a documented no-op.
    expires_by_itself: bool = False

    @abstractmethod
    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        """Return the payload of the live record ``sid`` and slide its expiry.

        After a read the record lives, from ``now``, the ttl it was last
        written with; ``ttl`` is the usual value (the manager's ``expire``),
        which a store may use to slide in the same round trip as the read.
        Returns ``None`` when there is no live record.
        """

    @abstractmethod
    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        """Store a new record under a freshly generated ``sid``, living ``ttl`` seconds."""

    @abstractmethod
    async def update(
        self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
    ) -> bool:
        """Replace the record ``sid`` only if it still exists (and ``lease`` is still held).

        Returns False, writing nothing, when the record is gone (a logout or
        login ended it, or it expired) or when ``lease`` was given and is no
        longer this caller's. The existence and lease checks are atomic with
        the write.
        """

    @abstractmethod
    async def delete(self, sid: str) -> bool:
        """End the record ``sid`` for good; True when there was one to end.

        Deleting what is not there is not an error. The answer lets a login
        (``regenerate()``) of a session that a concurrent logout already ended
        refuse to carry its data over to a new id.
        """

    @abstractmethod
    async def acquire(self, sid: str, seconds: float, now: float) -> Lease | None:
        """Try once to take the lease of ``sid`` for ``seconds``; never waits.

        Returns the new :class:`Lease`, or ``None`` while another caller holds
        an unexpired one. An expired lease is taken over. The caller only
        asks for sessions it just read; the store need not check existence.
        """

    @abstractmethod
    async def release(self, lease: Lease) -> None:
        """Give ``lease`` back if it is still the caller's; no state may remain for it."""

    @abstractmethod
    async def clear(self) -> int:
        """Remove every session this store owns and nothing else; return how many."""

    async def peek(self, sid: str, now: float) -> RecordTimes | None:
        """When the live record ``sid`` expires, without reading or sliding it; None if dead.

        Optional: the per-user session index (``user_key=``) needs it to list
        sessions and to prune dead ones. Stores without it raise
        NotImplementedError, and managers refuse ``user_key`` for them.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement peek()")

    async def gc(self, now: float) -> GcResult:
        """Remove expired records and leftovers; a no-op where storage expires by itself."""
        return GcResult()

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections or descriptors the store holds."""

    async def __aenter__(self) -> ServerStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
