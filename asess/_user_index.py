"""The per-user session index: which sessions a user has, for "your devices" pages.

Kept in the session store itself, on contract primitives only, so it works on
every :class:`~asess.ServerStore`: one record per user, under an id derived
from the user id, holding ``handle -> (session id, created, device)``. Every
change to it happens under that record's lease (the same lease requests
use), so two logins of one user at once cannot lose an entry, and it costs
nothing on requests that do not change who is logged in. Entries of dead
sessions are pruned whenever the record is rewritten, using the stores'
non-sliding :meth:`~asess.ServerStore.peek`, so the index stays the size of
the user's live sessions however many logins came before. Index records
start with a magic line that no session record has, so presenting an index
id as a session cookie gives a fresh session, never the index.

Revoking deletes the session's record: the store's update-if-exists rule then
keeps every in-flight request of that session from bringing it back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._backends.base import ServerStore
from ._exceptions import ConfigurationError, SessionBackendError
from ._ids import derived_id, handle_of
from ._leases import wait_for_lease
from ._policy import Policy

INDEX_MAGIC = b"ASESSIDX1\n"
_INDEX_KIND = b"asess-user-idx"
# An index outlives any session it lists: sessions slide, so without max_age
# they have no bound, and a long floor keeps an active user's index alive.
_INDEX_TTL_FLOOR = 400 * 24 * 3600
_WRITE_ATTEMPTS = 3

UserKey = str | Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live session of a user, as a "your devices" page shows it.

    Attributes:
        handle: the session's public handle (``session.handle``); pass it to
            ``manager.revoke``. It cannot be turned into a session id.
        created_at: when the session was created (epoch seconds).
        last_seen: when it was last used (epoch seconds), from the expiry the
            store slides, at no cost per request.
        expires_at: when it ends if unused (or at ``max_age``, if sooner).
        user_agent: the User-Agent of the request that logged in, when the
            manager records devices (``record_devices=True``), else None.
        address: the client address of that request, likewise.
    """

    handle: str
    created_at: float
    last_seen: float
    expires_at: float
    user_agent: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """What the adapter knows about the request's client, recorded at login if asked."""

    user_agent: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    sid: str
    created_at: float
    user_agent: str | None = None
    address: str | None = None


def user_reader(user_key: UserKey | None) -> Callable[[Mapping[str, Any]], str | None] | None:
    """A function from session data to the user id as a str (or None), from ``user_key``."""
    if user_key is None:
        return None
    read: Callable[[Mapping[str, Any]], Any]
    if isinstance(user_key, str):
        key = user_key
        read = lambda data: data.get(key)  # noqa: E731 - one expression, named for mypy
    elif callable(user_key):
        read = user_key
    else:
        raise ConfigurationError(
            f"user_key={user_key!r}: pass the session key holding the user id (a str), "
            "or a function taking the session data and returning the id or None"
        )

    def user_of(data: Mapping[str, Any]) -> str | None:
        value = read(data)
        return None if value is None else str(value)

    return user_of


def is_index_payload(payload: bytes) -> bool:
    return payload.startswith(INDEX_MAGIC)


def _decode(payload: bytes | None) -> dict[str, Entry]:
    if payload is None or not is_index_payload(payload):
        return {}
    try:
        raw = orjson.loads(payload[len(INDEX_MAGIC) :])
        return {h: Entry(*fields) for h, fields in raw["e"].items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return {}  # an index is rebuilt by the next login rather than failing requests


def _encode(user: str, entries: dict[str, Entry]) -> bytes:
    body = {
        "u": user,
        "e": {h: [e.sid, e.created_at, e.user_agent, e.address] for h, e in entries.items()},
    }
    return INDEX_MAGIC + orjson.dumps(body)


class UserIndex:
    """Adds, moves, lists and revokes the sessions of users, in ``store``."""

    def __init__(self, store: ServerStore, policy: Policy) -> None:
        reader = user_reader(policy.user_key)
        if reader is None:
            raise ConfigurationError("a user index needs user_key=")
        if type(store).peek is ServerStore.peek:
            raise ConfigurationError(
                f"user_key= needs a store that can tell a session's expiry without reading "
                f"it: {type(store).__name__} does not implement ServerStore.peek()"
            )
        self.user_of = reader
        self._store = store
        self._policy = policy
        self._ttl = max(policy.max_age or 0, _INDEX_TTL_FLOOR)

    @staticmethod
    def index_id(user: str) -> str:
        return derived_id(_INDEX_KIND, user)

    async def change(
        self,
        before: str | None,
        old_sid: str | None,
        after: str | None,
        new: Entry | None,
    ) -> None:
        """Record that ``old_sid`` of user ``before`` became ``new`` of user ``after``."""
        old_handle = handle_of(old_sid) if old_sid is not None else None
        if before is not None and before == after:
            await self._mutate(before, lambda entries: _swap(entries, old_handle, new))
            return
        if before is not None and old_handle is not None:
            await self._mutate(before, lambda entries: _swap(entries, old_handle, None))
        if after is not None and new is not None:
            await self._mutate(after, lambda entries: _swap(entries, None, new))

    async def sessions_of(self, user: str) -> list[SessionInfo]:
        now = self._policy.clock.now()
        payload = await self._store.read(self.index_id(user), self._ttl, now)
        entries = _decode(payload)
        infos = await asyncio.gather(*(self._info(h, e, now) for h, e in entries.items()))
        live = [info for info in infos if info is not None]
        live.sort(key=lambda info: info.last_seen, reverse=True)
        return live

    async def revoke(self, user: str, handle: str) -> bool:
        found: list[Entry] = []

        def take(entries: dict[str, Entry]) -> None:
            entry = entries.pop(handle, None) if isinstance(handle, str) else None
            if entry is not None:
                found.append(entry)

        await self._mutate(user, take)
        return bool(found) and await self._store.delete(found[0].sid)

    async def revoke_user(self, user: str, keep: str | None) -> int:
        ended: list[Entry] = []

        def take(entries: dict[str, Entry]) -> None:
            for handle in [h for h in entries if h != keep]:
                ended.append(entries.pop(handle))

        await self._mutate(user, take)
        results = await asyncio.gather(*(self._store.delete(e.sid) for e in ended))
        return sum(1 for existed in results if existed)

    # -- internals -----------------------------------------------------------

    async def _info(self, handle: str, entry: Entry, now: float) -> SessionInfo | None:
        times = await self._store.peek(entry.sid, now)
        if times is None:
            return None
        expires = times.expires_at
        if self._policy.max_age is not None:
            expires = min(expires, entry.created_at + self._policy.max_age)
            if expires <= now:
                return None
        ttl = times.ttl if times.ttl is not None else self._policy.expire
        return SessionInfo(
            handle=handle,
            created_at=entry.created_at,
            last_seen=times.expires_at - ttl,
            expires_at=expires,
            user_agent=entry.user_agent,
            address=entry.address,
        )

    async def _mutate(self, user: str, edit: Callable[[dict[str, Entry]], None]) -> None:
        """Read, prune, edit and write the user's index under its lease."""
        store, clock, iid = self._store, self._policy.clock, self.index_id(user)
        for _ in range(_WRITE_ATTEMPTS):
            lease = await wait_for_lease(store, iid, self._policy.lock_timeout, clock)
            try:
                now = clock.now()
                payload = await store.read(iid, self._ttl, now)
                entries = await self._prune(_decode(payload), now)
                edit(entries)
                data = _encode(user, entries)
                if payload is None:
                    await store.create(iid, data, self._ttl, now)
                    return
                if await store.update(iid, data, self._ttl, now, lease):
                    return
                # Our lease ran out under a slow store: read again and redo the edit.
            finally:
                await asyncio.shield(store.release(lease))
        raise SessionBackendError(
            f"could not update the session index of a user after {_WRITE_ATTEMPTS} attempts: "
            "the store is too slow for lock_timeout; raise lock_timeout"
        )

    async def _prune(self, entries: dict[str, Entry], now: float) -> dict[str, Entry]:
        alive: list[Awaitable[Any]] = [self._store.peek(e.sid, now) for e in entries.values()]
        found = await asyncio.gather(*alive)
        return {h: e for (h, e), t in zip(entries.items(), found, strict=True) if t is not None}


def _swap(entries: dict[str, Entry], old_handle: str | None, new: Entry | None) -> None:
    if old_handle is not None:
        entries.pop(old_handle, None)
    if new is not None:
        entries[handle_of(new.sid)] = new
