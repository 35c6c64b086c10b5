"""The one request lifecycle every backend and every adapter runs through.

``async with manager.lifecycle(cookie_header) as session:`` parses the Cookie
header, loads the session (now, or lazily on ``await session.load()``), lets
the handler run, and ``await lifecycle.commit()`` (at response start) decides
between save, refresh, delete and nothing, returning the Set-Cookie values;
``await lifecycle.finish()`` (what leaving the ``async with`` does) saves
changes made after the response started and gives back the session's lease,
on every exit path. Expiry, change tracking, regeneration, invalidation,
leases and cookie attributes are decided here and nowhere else: server-side
stores only move bytes (:class:`~asess.ServerStore`), the cookie backend only
seals records (:mod:`asess._backends.cookie`).

A logout must stay a logout whatever else is in flight, so a save of a session
that existed when it was loaded is an *update*: the store writes it only if
the record still exists, and, under ``locking=True``, only while this
request's lease is still live. A request whose update is refused was
interrupted: its changes are dropped with a warning (``session.save()``
raises :class:`~asess.SessionInterrupted`) and it sends no cookie.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from ._backends.base import Lease, ServerStore
from ._backends.cookie import CookieStore
from ._cookies import expire_cookies, join_chunks, parse_cookie_header, render_set_cookies
from ._exceptions import SessionError, SessionInterrupted
from ._ids import is_session_id, new_session_id
from ._leases import wait_for_lease
from ._policy import Policy
from ._record import Record
from ._serialize import dump_record, fingerprint, load_record
from ._session import _EMPTY_DIGEST, Session
from ._user_index import Device, Entry, UserIndex, is_index_payload

logger = logging.getLogger("asess")

Backend = ServerStore | CookieStore


class Lifecycle:
    """One request's session: load, hand to the handler, then persist once."""

    def __init__(
        self,
        policy: Policy,
        backend: Backend,
        cookie_header: str | None,
        *,
        autoload: bool = True,
        session_factory: type[Session] = Session,
        index: UserIndex | None = None,
        device: Device | None = None,
    ) -> None:
        self._policy = policy
        self._index = index if isinstance(backend, ServerStore) else None
        self._device = device
        self._user: str | None = None  # who the stored session belongs to (user_key)
        self._server = backend if isinstance(backend, ServerStore) else None
        self._client = backend if isinstance(backend, CookieStore) else None
        settings = policy.cookies
        found = parse_cookie_header(cookie_header, settings.wanted)
        self._present = set(found)
        self._incoming = join_chunks(found, settings)
        self._autoload = autoload
        self._record: Record | None = None
        self._sid: str | None = None
        self._lease: Lease | None = None
        self._pending: list[str] = []
        self._fetched = False  # the cookie's session was looked up
        self._dropped = False  # an update was refused: the session ended meanwhile
        self._committed = False
        self._failed = False
        self._finished = False
        self.cookie_sent = False
        # Without a cookie there is nothing to fetch, so autoload has nothing to
        # wait for; with autoload=False the session stays unusable until
        # ``await session.load()``, cookie or not, so a forgotten load() fails
        # on the first visit already, not only on the second.
        self.session = session_factory(self, loaded=autoload and self._incoming is None)

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def created_at(self) -> float | None:
        """Unix time the loaded session was first created; None before its first save."""
        return None if self._record is None else self._record.created_at

    @property
    def has_cookie(self) -> bool:
        """Whether the request carried this manager's session cookie."""
        return self._incoming is not None

    # -- entry points ------------------------------------------------------

    async def start(self) -> Session:
        """Begin the request: load now when ``autoload`` (no I/O without a cookie)."""
        if self._autoload:
            await self.load()
        return self.session

    async def load_if_cookie(self) -> None:
        """Load now (what autoload does); kept for adapters written against 0.1."""
        await self.load()

    async def commit(self) -> list[str]:
        """Decide and persist; return Set-Cookie values. Call once, at response start."""
        if self._committed:
            return []
        self._committed = True
        lines: list[str] = []
        try:
            # A session never loaded was never used: leave it and its cookie alone.
            if self.session.loaded:
                lines = await self._persist(explicit=False) or self._pending
        except BaseException:
            self._failed = True  # the error is the answer: no second attempt at exit
            raise
        self._pending = []
        self.cookie_sent = True
        return lines

    async def finish(self) -> None:
        """End the request: save late changes (logged, never raised) and give back the lease.

        Safe to call more than once, and on every exit path: after an error,
        on cancellation (the lease is still released), or without a commit.
        """
        if self._finished:
            return
        self._finished = True
        if not self._committed:
            # No response start was seen (a websocket closed before accept, an
            # app that sent nothing): no cookie can reach the client any more.
            self._committed = self.cookie_sent = True
        try:
            if not self._failed and self.session.loaded:
                await self._save_late()
        except SessionError as exc:
            logger.warning("session changes made after the response started were lost: %s", exc)
        finally:
            await self._release()

    async def abandon(self) -> None:
        """Give up this request without saving (the store is down, the handler failed).

        Frees the lease; what the handler changed is dropped.
        """
        self._committed = True
        self._failed = True
        await self.finish()

    async def __aenter__(self) -> Session:
        try:
            return await self.start()
        except BaseException:
            await self.abandon()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            await self.abandon()  # a failed handler's changes are not saved
            return
        try:
            if not self._committed:
                await self.commit()
        finally:
            await self.finish()

    # -- driver protocol (called by Session) -------------------------------

    async def load(self) -> None:
        """Fetch the stored session named by the request's cookie; idempotent."""
        if self.session.loaded:
            return
        record = None
        if self._incoming is not None:
            self._fetched = True
            try:
                record = await self._fetch(self._incoming)
            except BaseException:
                # Cancelled, store down, lock timeout, a bug: never keep a lease.
                await self._release()
                raise
        self._record = record
        if record is None:
            self.session._fill({}, session_id=None, lifetime=None, new=True)
        else:
            self.session._fill(
                record.data,
                session_id=self._sid,
                lifetime=record.lifetime,
                new=False,
                body=record.body,
            )
            record.body = None  # the session's data moves on; the loaded bytes are history

    async def save(self) -> None:
        """Persist now; cookies produced here go out at response start.

        Raises:
            SessionError: the change needs a new cookie but the response (or
                websocket handshake) has already been sent; nothing was written.
            SessionInterrupted: another request ended the session meanwhile;
                nothing was written.
        """
        if not self.session.loaded:
            return
        if self.cookie_sent and self._needs_new_cookie():
            raise SessionError(
                "the session needs a new cookie but the response has already started "
                "(e.g. after websocket.accept): save before accepting, or use a server-side "
                "backend with an existing session"
            )
        lines = await self._persist(explicit=True)
        if self._dropped:
            raise SessionInterrupted(
                "the session was ended by another request (a logout, a login elsewhere, "
                "or a lease takeover) after this one loaded it; nothing was saved"
            )
        if not self.cookie_sent:
            self._pending = lines

    # -- loading -----------------------------------------------------------

    async def _fetch(self, raw: str) -> Record | None:
        now = self._policy.clock.now()
        if self._client is not None:
            return self._check_age(await self._client.decode(raw, now), now, raw)
        return await self._fetch_server(raw, now)

    async def _fetch_server(self, sid: str, now: float) -> Record | None:
        store = self._server
        assert store is not None
        if not is_session_id(sid):
            logger.debug("session cookie is not a well-formed id; starting fresh")
            return None
        payload = await store.read(sid, self._policy.expire, now)
        if payload is None or is_index_payload(payload):
            logger.debug("no live session for the cookie; starting fresh")
            return None
        if self._policy.locking:
            # Only a session that exists gets a lease: unknown ids leave no state.
            self._lease = await wait_for_lease(
                store, sid, self._policy.lock_timeout, self._policy.clock
            )
            now = self._policy.clock.now()
            payload = await store.read(sid, self._policy.expire, now)  # as the last holder left it
            if payload is None:
                return None
        try:
            record = load_record(payload)
        except ValueError as exc:
            logger.warning("ignoring an undecodable stored session: %s", exc)
            return None
        if self._check_age(record, now, sid) is None:
            await store.delete(sid)
            return None
        record.expires_at = now + self._policy.ttl(record.lifetime)
        self._sid = sid
        if self._index is not None:
            self._user = self._index.user_of(record.data)
        return record

    def _check_age(self, record: Record | None, now: float, raw: str) -> Record | None:
        if record is None:
            return None
        if self._client is not None and record.expires_at is not None and record.expires_at <= now:
            logger.debug("session expired at %s; starting fresh", record.expires_at)
            return None
        max_age = self._policy.max_age
        if max_age is not None and record.created_at + max_age <= now:
            logger.debug("session passed max_age since its creation; starting fresh")
            return None
        return record

    # -- persisting --------------------------------------------------------

    def _needs_new_cookie(self) -> bool:
        """Whether persisting now needs a cookie the client does not have yet.

        Ending a server-side session needs none (the id dies whatever the
        client keeps), so a late logout still deletes the record.
        """
        session = self.session
        if self._client is not None:
            return bool(session.modified)
        if not dict.__len__(session) and (self._record is not None or not session._touched):
            return False  # ends the record, or stores nothing
        return self._sid is None or session._regenerate or session._invalidated

    async def _persist(self, *, explicit: bool) -> list[str]:
        if self._dropped:
            return []  # the session ended meanwhile: nothing more is written
        session = self.session
        settings = self._policy.cookies
        record = self._record
        lifetime = session.lifetime
        ttl = self._policy.ttl(lifetime)
        cookie_age = None if lifetime == 0 else ttl
        empty = not dict.__len__(session)

        if empty and (session._invalidated or record is not None):
            # Emptied or invalidated: end the record and expire the cookie.
            sid = self._sid if self._fetched else self._incoming
            if sid is not None and self._server is not None and is_session_id(sid):
                # A logout without load() (autoload=False) still ends the session.
                await self._server.delete(sid)
                if self._index is not None and self._user is not None:
                    await self._index.change(self._user, sid, None, None)
                    self._user = None
            self._record = None
            self._sid = None
            session._saved(None, _EMPTY_DIGEST)
            return expire_cookies(self._present, settings)
        if empty and not session._touched:
            # Fresh and empty: store nothing (unless mark_modified() or
            # expire_after() asked for a save); clear a cookie we could not use.
            return expire_cookies(self._present, settings)

        now = self._policy.clock.now()
        # One encoding per persist: it tells whether anything changed, and it
        # is what gets written if something did.
        current = fingerprint(session)
        changed = session._dirty(current[0]) or record is None or record.reissue
        if not changed:
            if self._client is not None:
                if record is not None and (
                    record.expires_at is None or record.expires_at - now < ttl / 2
                ):
                    return await self._seal(current, ttl, cookie_age, now)
                return []
            if explicit:
                return []
            # The store slid the record's expiry at load; slide the cookie to match.
            return render_set_cookies(self._sid or "", settings, cookie_age, self._present, now)
        if self._client is not None:
            return await self._seal(current, ttl, cookie_age, now)
        return await self._write(current, ttl, cookie_age, now)

    def _next_record(self, ttl: int, now: float, current: tuple[bytes, int | None]) -> Record:
        session, record = self.session, self._record
        body, kind = current
        return Record(
            data=dict(dict.items(session)),
            created_at=now if record is None or session._invalidated else record.created_at,
            issued_at=now,
            expires_at=now + ttl,
            lifetime=session.lifetime,
            # Encoded from this very data a moment ago, with nothing awaited since.
            # Unstorable data (kind None) is encoded again by the writer, which says why.
            encoded=(body, kind) if kind is not None else None,
        )

    async def _seal(
        self, current: tuple[bytes, int | None], ttl: int, cookie_age: int | None, now: float
    ) -> list[str]:
        assert self._client is not None
        new_record = self._next_record(ttl, now, current)
        token = await self._client.encode(new_record)
        lines = render_set_cookies(token, self._policy.cookies, cookie_age, self._present, now)
        new_record.encoded = None
        self._record = new_record
        self.session._saved(None, current[0])
        return lines

    async def _write(
        self, current: tuple[bytes, int | None], ttl: int, cookie_age: int | None, now: float
    ) -> list[str]:
        store, session = self._server, self.session
        assert store is not None
        new_record = self._next_record(ttl, now, current)
        payload = dump_record(new_record)  # unstorable data fails here, before any write
        new_record.encoded = None
        old_sid = self._sid
        if (session._regenerate or session._invalidated) and old_sid is not None:
            existed = await store.delete(old_sid)
            self._sid = None
            if not existed and not session._invalidated:
                # A login whose session a concurrent logout ended: carrying
                # the old data over to a new id would undo that logout.
                return self._drop()
        if self._sid is None:
            sid = new_session_id()
            await store.create(sid, payload, ttl, now)
        else:
            sid = self._sid
            if not await store.update(sid, payload, ttl, now, self._lease):
                return self._drop()
        if self._index is not None:
            await self._index_change(old_sid, sid, new_record)
        self._record = new_record
        self._sid = sid
        session._saved(sid, current[0])
        return render_set_cookies(sid, self._policy.cookies, cookie_age, self._present, now)

    async def _index_change(self, old_sid: str | None, sid: str, record: Record) -> None:
        """Keep the per-user index right; nothing to do unless the user or the id changed."""
        assert self._index is not None
        before, after = self._user, self._index.user_of(record.data)
        if before == after and old_sid == sid:
            return
        device = self._device or Device()
        entry = Entry(sid, record.created_at, device.user_agent, device.address)
        await self._index.change(before, old_sid, after, entry if after is not None else None)
        self._user = after

    def _drop(self) -> list[str]:
        """The update was refused: the session ended (or was taken over) meanwhile."""
        logger.warning(
            "session changes were not saved: another request ended this session (logout, "
            "login or revocation) or took over its lease after this request loaded it"
        )
        self._dropped = True
        self._sid = None
        return []

    async def _save_late(self) -> None:
        """Changes made after the response started (streams, background work)."""
        session = self.session
        if not session.modified:
            return
        if self._needs_new_cookie():
            logger.warning(
                "session changes made after the response started were not saved: "
                "they need a new cookie, which can no longer reach the client"
            )
            return
        await self._persist(explicit=True)

    async def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None or self._server is None:
            return
        try:
            # Shielded: a cancelled request must still give its lease back now,
            # not leave the session blocked until the lease expires.
            await asyncio.shield(self._server.release(lease))
        except SessionError as exc:
            logger.warning("could not release a session lease; it expires on its own: %s", exc)
