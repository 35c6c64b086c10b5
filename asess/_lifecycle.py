"""The one request lifecycle every backend and every adapter runs through.

``async with manager.lifecycle(cookie_header) as session:`` parses the Cookie
header, loads the session (now, or lazily on ``await session.load()``), lets
the handler run, and ``await lifecycle.commit()`` (at response start) decides
between save, refresh, delete and nothing, returning the Set-Cookie values.
Expiry, change tracking, regeneration, invalidation and cookie attributes are
decided here and nowhere else; stores only move records.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING

from ._cookies import expire_cookies, join_chunks, parse_cookie_header, render_set_cookies
from ._exceptions import SessionError
from ._ids import is_session_id, new_session_id
from ._record import Record
from ._serialize import digest
from ._session import _EMPTY_DIGEST, Session

if TYPE_CHECKING:
    from ._manager import SessionManager

logger = logging.getLogger("asess")


class Lifecycle:
    """One request's session: load, hand to the handler, then persist once."""

    def __init__(
        self,
        manager: SessionManager,
        cookie_header: str | None,
        *,
        autoload: bool = True,
        session_factory: type[Session] = Session,
    ) -> None:
        self._manager = manager
        self._store = manager.store
        self._settings = manager.cookie_settings
        found = parse_cookie_header(cookie_header, self._settings.chunk_names())
        self._present = set(found)
        self._incoming = join_chunks(found, self._settings)
        self._autoload = autoload
        self._record: Record | None = None
        self._ref: str | None = None
        self._lock: AbstractAsyncContextManager[object] | None = None
        self._pending: list[str] = []
        self._committed = False
        self._failed = False
        self.cookie_sent = False
        self.session = session_factory(self, loaded=self._incoming is None)

    # -- context manager -----------------------------------------------------

    async def __aenter__(self) -> Session:
        if self._autoload:
            await self.load_if_cookie()
        return self.session

    async def load_if_cookie(self) -> None:
        """Load now when the request carries a session cookie (what autoload does)."""
        if self._incoming is not None:
            await self.load()

    async def abandon(self) -> None:
        """Give up this request without saving (e.g. the store is down); frees locks."""
        self._committed = True
        await self._release()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                if not self._committed:
                    await self.commit()
                elif not self._failed and self.session.loaded and self.session.modified:
                    await self._save_after_response()
        finally:
            await self._release()

    async def _save_after_response(self) -> None:
        """Changes made after the response started (streams, background work)."""
        if self._store.data_in_cookie or self._ref is None or self.session._regenerate:
            logger.warning(
                "session changes made after the response started were not saved: "
                "they need a new cookie, which can no longer reach the client"
            )
            return
        await self._persist(explicit=True)

    # -- driver protocol (called by Session) -----------------------------------

    async def load(self) -> None:
        """Fetch the stored session named by the request's cookie; idempotent."""
        if self.session.loaded:
            return
        record = await self._fetch(self._incoming) if self._incoming is not None else None
        self._record = record
        if record is None:
            self.session._fill({}, session_id=None, lifetime=None, new=True)
        else:
            sid = None if self._store.data_in_cookie else self._ref
            self.session._fill(record.data, session_id=sid, lifetime=record.lifetime, new=False)

    async def save(self) -> None:
        """Persist now; cookies produced here go out at response start.

        Raises:
            SessionError: the change needs a new cookie but the response (or
                websocket handshake) has already been sent.
        """
        if not self.session.loaded:
            return
        before = self._ref
        lines = await self._persist(explicit=True)
        new_value = self._store.data_in_cookie or (self._ref is not None and self._ref != before)
        if lines and new_value and self.cookie_sent:
            raise SessionError(
                "the session needs a new cookie but the response has already started "
                "(e.g. after websocket.accept): save before accepting, or use a server-side "
                "backend with an existing session"
            )
        self._pending = lines

    # -- commit ------------------------------------------------------------

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
        finally:
            await self._release()
        self._pending = []
        self.cookie_sent = True
        return lines

    # -- internals ---------------------------------------------------------

    async def _fetch(self, raw: str) -> Record | None:
        store = self._store
        if not store.data_in_cookie:
            if not is_session_id(raw):
                logger.debug("session cookie is not a well-formed id; starting fresh")
                return None
            if self._manager.locking:
                self._lock = store.lock(raw)
                await self._lock.__aenter__()
        record = await store.load(raw, self._manager.expire)
        if record is None:
            logger.debug("no live session for the cookie; starting fresh")
            return None
        now = time.time()
        if record.expires_at is not None and record.expires_at <= now:
            logger.debug("session expired at %s; starting fresh", record.expires_at)
            return None
        max_age = self._manager.max_age
        if max_age is not None and record.created_at + max_age <= now:
            logger.debug("session passed max_age since its creation; starting fresh")
            if not store.data_in_cookie:
                await store.delete(raw)
            return None
        self._ref = None if store.data_in_cookie else raw
        return record

    async def _persist(self, *, explicit: bool) -> list[str]:
        session = self.session
        store = self._store
        manager = self._manager
        settings = self._settings
        record = self._record
        now = time.time()
        lifetime = session.lifetime
        ttl = lifetime if lifetime else manager.expire
        cookie_age = None if lifetime == 0 else ttl
        empty = not dict.__len__(session)

        if empty and (session._invalidated or record is not None):
            # Emptied or invalidated: drop the record and the cookie.
            if self._ref is not None:
                await store.delete(self._ref)
            self._record = None
            self._ref = None
            session._saved(None, _EMPTY_DIGEST)
            return expire_cookies(self._present, settings) if self._present else []
        if empty and not session._touched:
            # Fresh and empty: store nothing (unless mark_modified() or
            # expire_after() asked for a save); clear a cookie we could not use.
            return expire_cookies(self._present, settings) if self._present else []

        regenerate = session._regenerate or session._invalidated
        current = digest(session)
        changed = session._dirty(current) or record is None or record.reissue
        refresh = (
            store.data_in_cookie
            and record is not None
            and (record.expires_at is None or record.expires_at - now < ttl / 2)
        )
        if not (changed or refresh):
            if store.data_in_cookie or explicit:
                return []
            # The store slid the record's expiry at load; slide the cookie to match.
            return render_set_cookies(self._ref or "", settings, cookie_age, self._present, now)

        if regenerate and self._ref is not None:
            await store.delete(self._ref)
            self._ref = None
        ref = self._ref
        if ref is None and not store.data_in_cookie:
            ref = new_session_id()
        created = record.created_at if record is not None and not session._invalidated else now
        new_record = Record(
            data=dict(dict.items(session)),
            created_at=created,
            issued_at=now,
            expires_at=now + ttl,
            lifetime=lifetime,
        )
        value = await store.save(ref or "", new_record, ttl)
        self._record = new_record
        self._ref = None if store.data_in_cookie else value
        session._saved(self._ref, current)
        return render_set_cookies(value, settings, cookie_age, self._present, now)

    async def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            await lock.__aexit__(None, None, None)
