"""``asess.starlette.Session``: the asess session with Starlette's change rules.

Starlette's ``Session`` is a dict whose mutators set ``modified`` (and
``accessed``), and whose ``accessed`` is otherwise set only by
``request.session``; a read such as ``session.get(...)`` marks nothing. This
subclass keeps those rules, so code and tests written against Starlette see
the same flags, and adds asess's: a nested change (``session["cart"].append(x)``)
counts as modified too, and ``regenerate()``, ``invalidate()`` and
``expire_after()`` work. Like Starlette's, it can be built from a dict.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import SessionNotLoaded
from .._session import _MISSING, SessionDriver
from .._session import Session as _AsessSession


class Session(_AsessSession):
    """A Starlette-compatible session: ``Session({"a": 1})`` works as Starlette's does."""

    __slots__ = ("_flagged",)

    _flagged: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        object.__setattr__(self, "_flagged", False)
        # Built by hand, it stands for a session that exists (Starlette's view):
        # emptying it is a change to save, where emptying a fresh one is not.
        self._fill(dict(*args, **kwargs), session_id=None, lifetime=None, new=False)

    def mark_modified(self) -> None:
        """Starlette's meaning: the session was used and must be saved."""
        object.__setattr__(self, "_accessed", True)
        object.__setattr__(self, "_flagged", True)

    # -- Starlette's mutators mark the session modified ---------------------

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.mark_modified()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.mark_modified()

    def clear(self) -> None:
        super().clear()
        self.mark_modified()

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if dict.__contains__(self, key):
            self.mark_modified()
        return super().pop(key, default)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self.mark_modified()
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._check()
        if not dict.__contains__(self, key):
            self.mark_modified()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self.mark_modified()

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        super().__ior__(other)
        self.mark_modified()
        return self

    # -- hooks --------------------------------------------------------------

    def _check(self) -> None:
        # Starlette marks ``accessed`` in ``request.session``, not on each read.
        if not self._loaded:
            raise SessionNotLoaded(
                "the session was used before it was loaded: call `await session.load()` first"
            )

    def _dirty(self, current_digest: bytes) -> bool:
        # Starlette saves a flagged session that has data, or clears one that
        # existed; a fresh session flagged and left empty stores nothing.
        if self._flagged and (dict.__len__(self) or not self._is_new):
            return True
        return super()._dirty(current_digest)

    def _saved(self, session_id: str | None, saved_digest: bytes) -> None:
        object.__setattr__(self, "_flagged", False)
        super()._saved(session_id, saved_digest)

    def _fill(
        self,
        data: dict[str, Any],
        *,
        session_id: str | None,
        lifetime: int | None,
        new: bool,
        body: bytes | None = None,
    ) -> None:
        super()._fill(data, session_id=session_id, lifetime=lifetime, new=new, body=body)
        object.__setattr__(self, "_flagged", False)

    def _adopt(self, data: dict[str, Any]) -> None:
        """Take over a migrated cookie's data; it is saved in asess's format at commit."""
        dict.update(self, data)
        object.__setattr__(self, "_flagged", True)


class RequestSession(Session):
    """The session a request gets: built by the lifecycle, bound to it.

    Any read marks it accessed, as every asess session does: Starlette marks it
    in ``request.session``, which every read through Starlette passes, but
    ``asess.session`` and ``asess.get_session()`` reach it without that
    property and must still earn the response its ``Vary: Cookie``.
    """

    __slots__ = ()

    _check = _AsessSession._check

    def __init__(self, driver: SessionDriver | None = None, *, loaded: bool = True) -> None:
        _AsessSession.__init__(self, driver, loaded=loaded)
        object.__setattr__(self, "_flagged", False)
