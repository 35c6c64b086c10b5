"""The storage contract every backend implements, and nothing more.

A store maps a *reference* (the value of the session cookie: a session id for
server-side stores, the whole token for the cookie store) to a
:class:`~asess._record.Record`. Expiry policy, change tracking, regeneration,
invalidation and cookie attributes live in the lifecycle, written once; a
store only loads, saves, touches, deletes and clears.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager, nullcontext
from types import TracebackType
from typing import ClassVar

from .._record import Record


class Store(ABC):
    """Base class of every backend.

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
