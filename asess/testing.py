"""Test helpers for applications and store authors: a manual clock and the store contract kit.

``StoreContract(make_store)`` checks that a :class:`~asess.ServerStore` keeps
every promise the lifecycle builds on, first at the store level (conditional
updates, fencing, lease takeover, expiry, concurrent update against delete)
and then through a real :class:`~asess.SessionManager` (a logout or login
racing an in-flight request, a request that outlives its lease, cancellation
and errors freeing the lease). The built-in stores run it in asess's own
suite; run it against yours::

    import pytest
    from asess.testing import STORE_CHECKS, StoreContract

    @pytest.mark.parametrize("check", STORE_CHECKS)
    async def test_my_store_keeps_the_contract(check):
        await StoreContract(lambda: MyStore(...)).run(check)

Time comes from a :class:`ManualClock` the kit advances, so expiry and lease
checks run in microseconds; a store whose server keeps time itself
(``expires_by_itself``, such as Redis) is checked in real time with short
lifetimes instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ._backends.base import Lease, ServerStore
from ._clock import ManualClock
from ._exceptions import SessionInterrupted
from ._ids import new_session_id
from ._manager import SessionManager

__all__ = ["STORE_CHECKS", "ManualClock", "StoreContract"]

StoreFactory = Callable[[], "ServerStore | Awaitable[ServerStore]"]
LeftoverCounter = Callable[[ServerStore], Awaitable[int]]
_Check = Callable[["_Run"], Awaitable[None]]

_CHECKS: dict[str, _Check] = {}


def _check(func: _Check) -> _Check:
    _CHECKS[func.__name__.removeprefix("check_")] = func
    return func


@dataclass
class _Run:
    store: ServerStore
    clock: ManualClock
    real_time: bool
    leftovers: LeftoverCounter | None

    @property
    def now(self) -> float:
        return time.time() if self.real_time else self.clock.now()

    async def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass for the store."""
        if self.real_time:
            await asyncio.sleep(seconds)
        else:
            self.clock.advance(seconds)

    async def wait_until_gone(self, sid: str, seconds: float) -> None:
        """Let at most ``seconds`` pass for the store, less once ``sid`` has expired.

        A store that expires records by itself is polled with ``peek``, which
        never slides the expiry, so the check goes on as soon as the record is
        gone instead of sleeping out the whole margin; a record still there
        after ``seconds`` is left for the caller's assertion to report. Without
        ``peek``, or on the kit's clock, this is :meth:`wait`.
        """
        if not self.real_time or type(self.store).peek is ServerStore.peek:
            await self.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        while await self.store.peek(sid, self.now) is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.01))

    def manager(self, **kw: object) -> SessionManager:
        clock = {} if self.real_time else {"clock": self.clock}
        return SessionManager(self.store, cookie_name="sid", **clock, **kw)  # type: ignore[arg-type]

    async def assert_no_leftovers(self, what: str) -> None:
        if self.leftovers is not None:
            left = await self.leftovers(self.store)
            assert left == 0, f"{what}: {left} lease or lock entries left behind"


class StoreContract:
    """The contract checks, bound to one way of building the store under test.

    Args:
        make_store: builds a fresh, empty store (sync or async); called once per check.
        leftovers: optional, counts lease/lock state the store holds, so the
            kit can check that nothing outlives a request (``0`` expected).
        real_time: check time-dependent rules in real time; default: the
            store's ``expires_by_itself``.
    """

    def __init__(
        self,
        make_store: StoreFactory,
        *,
        leftovers: LeftoverCounter | None = None,
        real_time: bool | None = None,
    ) -> None:
        self._make_store = make_store
        self._leftovers = leftovers
        self._real_time = real_time

    async def run(self, check: str) -> None:
        """Run one check by name (see :data:`STORE_CHECKS`); raises AssertionError."""
        built = self._make_store()
        store = await built if inspect.isawaitable(built) else built
        assert isinstance(store, ServerStore), "make_store must build a ServerStore"
        real = store.expires_by_itself if self._real_time is None else self._real_time
        try:
            await _CHECKS[check](_Run(store, ManualClock(time.time()), real, self._leftovers))
        finally:
            await store.aclose()

    async def run_all(self) -> None:
        """Run every check, reporting all failures together."""
        failures = []
        for name in STORE_CHECKS:
            try:
                await self.run(name)
            except AssertionError as exc:
                failures.append(f"{name}: {exc}")
        if failures:
            raise AssertionError("store contract broken:\n" + "\n".join(failures))


# -- store level ---------------------------------------------------------------


@_check
async def check_unknown_ids_read_as_none(r: _Run) -> None:
    assert await r.store.read(new_session_id(), 60, r.now) is None


@_check
async def check_created_records_read_back_exactly(r: _Run) -> None:
    sid = new_session_id()
    payload = bytes(range(256)) * 1024  # every byte value, 256 KiB
    await r.store.create(sid, payload, 60, r.now)
    assert await r.store.read(sid, 60, r.now) == payload


@_check
async def check_update_replaces_an_existing_record(r: _Run) -> None:
    sid = new_session_id()
    await r.store.create(sid, b"one", 60, r.now)
    assert await r.store.update(sid, b"two", 60, r.now) is True
    assert await r.store.read(sid, 60, r.now) == b"two"


@_check
async def check_update_never_creates(r: _Run) -> None:
    sid = new_session_id()
    assert await r.store.update(sid, b"ghost", 60, r.now) is False, "update reported a write"
    assert await r.store.read(sid, 60, r.now) is None, "update created a record"


@_check
async def check_a_deleted_record_stays_deleted(r: _Run) -> None:
    sid = new_session_id()
    await r.store.create(sid, b"alive", 60, r.now)
    await r.store.delete(sid)
    await r.store.delete(sid)  # deleting what is gone is not an error
    assert await r.store.update(sid, b"x", 60, r.now) is False, "update of a deleted record"
    assert await r.store.read(sid, 60, r.now) is None, "a deleted record was resurrected"


@_check
async def check_delete_tells_whether_there_was_a_record(r: _Run) -> None:
    sid = new_session_id()
    await r.store.create(sid, b"x", 60, r.now)
    assert await r.store.delete(sid) is True, "delete of a live record did not say so"
    assert await r.store.delete(sid) is False, "delete of a gone record claimed one"


@_check
async def check_peek_tells_expiry_without_sliding_it(r: _Run) -> None:
    if type(r.store).peek is ServerStore.peek:
        return  # optional: only stores that back the per-user index (user_key=) have it
    ttl = 1 if r.real_time else 100
    sid = new_session_id()
    start = r.now
    await r.store.create(sid, b"x", ttl, start)
    assert await r.store.peek(new_session_id(), r.now) is None
    await r.wait(ttl * 0.6)
    times = await r.store.peek(sid, r.now)
    assert times is not None, "peek missed a live record"
    assert abs(times.expires_at - (start + ttl)) < 0.5, "peek's expiry is not the record's"
    assert times.ttl in (ttl, None)
    await r.wait_until_gone(sid, ttl * 0.6)
    assert await r.store.peek(sid, r.now) is None, "peek slid the expiry, or saw a dead record"
    assert await r.store.read(sid, ttl, r.now) is None


@_check
async def check_concurrent_updates_never_outlive_a_delete(r: _Run) -> None:
    for _ in range(20):
        sid = new_session_id()
        await r.store.create(sid, b"v0", 60, r.now)
        writers = [r.store.update(sid, b"v%d" % i, 60, r.now) for i in range(6)]
        await asyncio.gather(*writers[:3], r.store.delete(sid), *writers[3:])
        assert await r.store.read(sid, 60, r.now) is None, "an update undid a delete"


@_check
async def check_records_expire_and_reads_slide_expiry(r: _Run) -> None:
    ttl = 1 if r.real_time else 100
    sid = new_session_id()
    await r.store.create(sid, b"x", ttl, r.now)
    await r.wait(ttl * 0.6)
    assert await r.store.read(sid, ttl, r.now) == b"x", "expired before its ttl"
    await r.wait(ttl * 0.6)
    assert await r.store.read(sid, ttl, r.now) == b"x", "the read did not slide the expiry"
    await r.wait_until_gone(sid, ttl * 1.5)
    assert await r.store.read(sid, ttl, r.now) is None, "alive past its ttl"
    assert await r.store.update(sid, b"y", ttl, r.now) is False, "an expired record was updated"


@_check
async def check_a_record_keeps_its_own_ttl_across_reads(r: _Run) -> None:
    ttl = 1 if r.real_time else 100
    sid = new_session_id()
    await r.store.create(sid, b"remember me", ttl * 4, r.now)
    await r.store.read(sid, ttl, r.now)  # read with the usual, shorter ttl
    await r.wait(ttl * 2)
    assert await r.store.read(sid, ttl, r.now) == b"remember me", "lost its own ttl"


@_check
async def check_a_lease_excludes_a_second_holder(r: _Run) -> None:
    sid = new_session_id()
    first = await r.store.acquire(sid, 30, r.now)
    assert isinstance(first, Lease) and first.sid == sid
    assert await r.store.acquire(sid, 30, r.now) is None
    await r.store.release(first)
    second = await r.store.acquire(sid, 30, r.now)
    assert second is not None and second.token != first.token
    await r.store.release(second)
    await r.assert_no_leftovers("after release")


@_check
async def check_an_expired_lease_is_taken_over_and_fenced_off(r: _Run) -> None:
    seconds = 0.2 if r.real_time else 10.0
    sid = new_session_id()
    await r.store.create(sid, b"v1", 60, r.now)
    stale = await r.store.acquire(sid, seconds, r.now)
    assert stale is not None
    assert await r.store.update(sid, b"v2", 60, r.now, stale) is True
    await r.wait(seconds * 1.5)
    assert await r.store.update(sid, b"late", 60, r.now, stale) is False, "expired lease wrote"
    fresh = await r.store.acquire(sid, 30, r.now)
    assert fresh is not None, "an expired lease was not taken over"
    await r.store.release(stale)  # must not free the new holder's lease
    assert await r.store.acquire(sid, 30, r.now) is None, "a stale release freed the new lease"
    assert await r.store.update(sid, b"late", 60, r.now, stale) is False
    assert await r.store.update(sid, b"v3", 60, r.now, fresh) is True
    assert await r.store.read(sid, 60, r.now) == b"v3"
    await r.store.release(fresh)
    await r.assert_no_leftovers("after the takeover")


@_check
async def check_a_fenced_update_never_creates(r: _Run) -> None:
    sid = new_session_id()
    await r.store.create(sid, b"v1", 60, r.now)
    lease = await r.store.acquire(sid, 30, r.now)
    assert lease is not None
    await r.store.delete(sid)  # a logout while this request holds the lease
    assert await r.store.update(sid, b"v2", 60, r.now, lease) is False, "a fenced write revived"
    assert await r.store.read(sid, 60, r.now) is None, "a logged-out session came back"
    await r.store.release(lease)
    await r.assert_no_leftovers("after a logout under a lease")


@_check
async def check_clear_removes_every_record(r: _Run) -> None:
    sids = [new_session_id() for _ in range(3)]
    for sid in sids:
        await r.store.create(sid, b"x", 60, r.now)
    assert await r.store.clear() >= 3
    for sid in sids:
        assert await r.store.read(sid, 60, r.now) is None


@_check
async def check_gc_keeps_live_records(r: _Run) -> None:
    sid = new_session_id()
    await r.store.create(sid, b"x", 60, r.now)
    result = await r.store.gc(r.now)
    assert result.expired == 0
    assert await r.store.read(sid, 60, r.now) == b"x"


# -- through the lifecycle -----------------------------------------------------


async def _logged_in(r: _Run, manager: SessionManager) -> str:
    async with manager.lifecycle(None) as session:
        session["user"] = "alice"
    assert session.id is not None
    return session.id


def _revives(lines: list[str], sid: str) -> bool:
    """Whether Set-Cookie ``lines`` hand the client ``sid`` as a live cookie."""
    return any(line.startswith(f"sid={sid};") and "Max-Age=0" not in line for line in lines)


async def _race_logout(r: _Run, locking: bool, regenerate: bool) -> None:
    timeout = (0.3 if r.real_time else 10.0) if locking else 10.0
    manager = r.manager(locking=locking, lock_timeout=timeout)
    sid = await _logged_in(r, manager)
    cookie = f"sid={sid}"
    slow = manager.lifecycle(cookie)  # in flight: loaded, not yet saved
    await slow.start()
    fast = manager.lifecycle(cookie)  # waits out the slow one's lease under locking
    async with fast as session:
        if regenerate:
            session.regenerate()
            session["user"] = "bob"
        else:
            session.invalidate()
    slow.session["cart"] = ["stolen"]
    lines = await slow.commit()
    await slow.finish()
    assert not _revives(lines, sid), "the interrupted request was handed the dead id"
    assert await r.store.read(sid, 60, r.now) is None, "the ended session came back"
    await r.assert_no_leftovers("after the race")


@_check
async def check_logout_survives_an_in_flight_request(r: _Run) -> None:
    await _race_logout(r, locking=False, regenerate=False)


@_check
async def check_login_survives_an_in_flight_request(r: _Run) -> None:
    await _race_logout(r, locking=False, regenerate=True)


@_check
async def check_logout_wins_over_a_request_that_outlived_its_lease(r: _Run) -> None:
    await _race_logout(r, locking=True, regenerate=False)


@_check
async def check_login_wins_over_a_request_that_outlived_its_lease(r: _Run) -> None:
    await _race_logout(r, locking=True, regenerate=True)


@_check
async def check_an_explicit_save_after_a_logout_raises(r: _Run) -> None:
    manager = r.manager()
    sid = await _logged_in(r, manager)
    slow = manager.lifecycle(f"sid={sid}")
    await slow.start()
    async with manager.lifecycle(f"sid={sid}") as session:
        session.invalidate()
    slow.session["late"] = True
    try:
        await slow.session.save()
    except SessionInterrupted:
        pass
    else:
        raise AssertionError("session.save() of an ended session did not raise")
    finally:
        await slow.finish()
    assert await r.store.read(sid, 60, r.now) is None


@_check
async def check_a_late_save_after_a_logout_writes_nothing(r: _Run) -> None:
    manager = r.manager()
    sid = await _logged_in(r, manager)
    streaming = manager.lifecycle(f"sid={sid}")
    await streaming.start()
    await streaming.commit()  # response started (a stream, a websocket)
    async with manager.lifecycle(f"sid={sid}") as session:
        session.invalidate()
    streaming.session["after"] = "the response"
    await streaming.finish()
    assert await r.store.read(sid, 60, r.now) is None


async def _held_by_another(r: _Run, manager: SessionManager, sid: str) -> bool:
    other = await r.store.acquire(sid, 30, r.now)
    if other is None:
        return True
    await r.store.release(other)
    return False


@_check
async def check_every_exit_path_releases_the_lease(r: _Run) -> None:
    manager = r.manager(locking=True)
    sid = await _logged_in(r, manager)
    cookie = f"sid={sid}"

    class HandlerFailed(Exception):
        pass

    try:
        async with manager.lifecycle(cookie):
            raise HandlerFailed
    except HandlerFailed:
        pass
    assert not await _held_by_another(r, manager, sid), "kept after a handler error"

    lifecycle = manager.lifecycle(cookie)
    await lifecycle.start()
    assert await _held_by_another(r, manager, sid), "no lease taken under locking=True"
    await lifecycle.commit()
    assert await _held_by_another(r, manager, sid), "the lease ended before the request did"
    await lifecycle.finish()
    assert not await _held_by_another(r, manager, sid), "kept after finish()"

    holder = manager.lifecycle(cookie)
    await holder.start()
    waiter = asyncio.ensure_future(manager.lifecycle(cookie).start())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await holder.finish()
    assert not await _held_by_another(r, manager, sid), "kept after a cancelled wait"

    cancelled = asyncio.ensure_future(_hold_forever(manager, cookie))
    for _ in range(400):  # let it load and take the lease (stores may hop to threads)
        await asyncio.sleep(0.005)
        if await _held_by_another(r, manager, sid):
            break
    else:
        raise AssertionError("the request never took its lease")
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert not await _held_by_another(r, manager, sid), "kept after cancellation"
    await r.assert_no_leftovers("after every exit path")


async def _hold_forever(manager: SessionManager, cookie: str) -> None:
    async with manager.lifecycle(cookie):
        await asyncio.Event().wait()


@_check
async def check_unknown_ids_leave_no_lease_state(r: _Run) -> None:
    manager = r.manager(locking=True)
    for _ in range(50):
        async with manager.lifecycle(f"sid={new_session_id()}") as session:
            session.get("user")
    await r.assert_no_leftovers("after requests with unknown ids")


#: Names of every check, for ``pytest.mark.parametrize``.
STORE_CHECKS: tuple[str, ...] = tuple(_CHECKS)
