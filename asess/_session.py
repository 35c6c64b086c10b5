"""The Session object handlers see: a ``dict`` with attribute access and state.

``Session`` subclasses ``dict`` so code written for Starlette's
``request.session`` keeps working, and adds Emmett's attribute style
(``session.counter`` is the value or ``None``). It knows nothing about storage:
``load()``, ``save()`` and the decisions at the end of a request belong to the
lifecycle that created it, reached through the small ``SessionDriver`` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from ._exceptions import SessionNotLoaded
from ._ids import handle_of
from ._serialize import digest

_MISSING: Any = object()
_EMPTY_DIGEST = digest({})


class SessionDriver(Protocol):
    """What a Session asks of the lifecycle that owns it."""

    async def load(self) -> None: ...

    async def save(self) -> None: ...


class Session(dict[str, Any]):
    """A request's session data, plus what the lifecycle needs to persist it.

    Attribute style: ``s.counter`` returns the value or ``None`` when missing,
    ``s.counter = 1`` sets it, ``del s.counter`` deletes it. Names of real
    methods and attributes are never shadowed by data.
    """

    __slots__ = (
        "_accessed",
        "_digest",
        "_driver",
        "_id",
        "_invalidated",
        "_is_new",
        "_lifetime",
        "_loaded",
        "_regenerate",
        "_touched",
    )

    _driver: SessionDriver | None
    _loaded: bool
    _accessed: bool
    _touched: bool
    _digest: bytes
    _id: str | None
    _is_new: bool
    _lifetime: int | None
    _regenerate: bool
    _invalidated: bool

    def __init__(self, driver: SessionDriver | None = None, *, loaded: bool = True) -> None:
        super().__init__()
        object.__setattr__(self, "_driver", driver)
        object.__setattr__(self, "_loaded", loaded)
        object.__setattr__(self, "_accessed", False)
        object.__setattr__(self, "_touched", False)
        object.__setattr__(self, "_digest", _EMPTY_DIGEST)
        object.__setattr__(self, "_id", None)
        object.__setattr__(self, "_is_new", True)
        object.__setattr__(self, "_lifetime", None)
        object.__setattr__(self, "_regenerate", False)
        object.__setattr__(self, "_invalidated", False)

    # -- state --------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """The server-side session id, or ``None`` (cookie sessions; not yet saved)."""
        return self._id

    @property
    def handle(self) -> str | None:
        """A public handle for this session (None until it has an id); not a secret.

        The same on every request of one session id, and no way back to the
        id: list it on a "your devices" page, pass it to ``manager.revoke``.
        """
        return handle_of(self._id) if self._id is not None else None

    @property
    def is_new(self) -> bool:
        """True when no stored session was found for this request."""
        return self._is_new

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def accessed(self) -> bool:
        """True once the application read or wrote the session."""
        return self._accessed

    @property
    def modified(self) -> bool:
        """True after any change, nested ones included (``s.cart.append(x)``)."""
        return self._loaded and self._dirty(digest(self))

    @property
    def lifetime(self) -> int | None:
        """This session's own lifetime set by :meth:`expire_after`, else ``None``."""
        return self._lifetime

    def mark_accessed(self) -> None:
        """Record that the application used the session (adds ``Vary: Cookie``)."""
        object.__setattr__(self, "_accessed", True)

    def mark_modified(self) -> None:
        """Force a save even if the data looks unchanged, or is new and empty."""
        object.__setattr__(self, "_touched", True)

    async def load(self) -> None:
        """Load the stored data; a no-op once loaded."""
        if not self._loaded and self._driver is not None:
            await self._driver.load()

    async def save(self) -> None:
        """Persist now (e.g. from a websocket handler) instead of at response start."""
        if self._driver is None:
            raise SessionNotLoaded("this session is not bound to a session manager")
        await self._driver.save()

    def regenerate(self) -> None:
        """Issue a new id (or token) at save and drop the old record: call it at login."""
        self._check()
        object.__setattr__(self, "_regenerate", True)

    def invalidate(self) -> None:
        """Empty the session, delete its record and expire its cookie."""
        dict.clear(self)
        object.__setattr__(self, "_loaded", True)
        object.__setattr__(self, "_accessed", True)
        object.__setattr__(self, "_invalidated", True)

    def expire_after(self, seconds: int) -> None:
        """Give this session its own lifetime; 0 means a browser-session cookie."""
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError("expire_after() takes a whole number of seconds >= 0")
        self._check()
        object.__setattr__(self, "_lifetime", seconds)
        object.__setattr__(self, "_touched", True)

    # -- lifecycle hooks ----------------------------------------------------

    def _fill(
        self,
        data: dict[str, Any],
        *,
        session_id: str | None,
        lifetime: int | None,
        new: bool,
        body: bytes | None = None,
    ) -> None:
        """Install loaded data; called by the lifecycle only.

        ``body`` is the data's fingerprint when the decoder already has it
        (the stored bytes, see :attr:`asess.Record.body`), saving an encode.
        """
        dict.clear(self)
        dict.update(self, data)
        object.__setattr__(self, "_id", session_id)
        object.__setattr__(self, "_lifetime", lifetime)
        object.__setattr__(self, "_is_new", new)
        object.__setattr__(self, "_loaded", True)
        if body is None:
            body = digest(self) if data else _EMPTY_DIGEST
        object.__setattr__(self, "_digest", body)

    def _dirty(self, current_digest: bytes) -> bool:
        """Whether the data, whose digest is given, differs from what was loaded."""
        if self._touched or self._regenerate or self._invalidated:
            return True
        return current_digest != self._digest

    def _saved(self, session_id: str | None, saved_digest: bytes) -> None:
        """Reset change tracking after a successful save; called by the lifecycle."""
        object.__setattr__(self, "_id", session_id)
        object.__setattr__(self, "_is_new", False)
        object.__setattr__(self, "_touched", False)
        object.__setattr__(self, "_regenerate", False)
        object.__setattr__(self, "_invalidated", False)
        object.__setattr__(self, "_digest", saved_digest)

    def _check(self) -> None:
        if not self._loaded:
            raise SessionNotLoaded(
                "the session was used before it was loaded: call `await session.load()` "
                "first, or use the middleware with autoload=True"
            )
        if not self._accessed:
            object.__setattr__(self, "_accessed", True)

    # -- attribute style ----------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not real attributes or methods. Private
        # and dunder names stay attribute errors so protocols (copy, pickle,
        # framework hooks) that probe for them are not fooled by data.
        if name.startswith("_"):
            raise AttributeError(name)
        self._check()
        return dict.get(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(type(self), name):  # methods, properties and slots alike
            raise AttributeError(
                f"'{name}' is a Session attribute; store this value as session[{name!r}]"
            )
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    # -- dict interface with load checks -------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._check()
        return dict.__getitem__(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._check()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self._check()
        dict.__delitem__(self, key)

    def __contains__(self, key: object) -> bool:
        self._check()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._check()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._check()
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        self._check()
        return dict.__eq__(self, other)

    __hash__ = None

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self._check()
        dict.update(self, other)
        return self

    def __repr__(self) -> str:
        if not self._loaded:
            return "<Session not loaded>"
        return f"<Session id={'…' if self._id else None} {dict.__repr__(self)}>"

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Copies and pickles are plain dicts: state belongs to one request.
        return (dict, (dict(self.items()),))

    def __copy__(self) -> dict[str, Any]:
        return dict(self.items())

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return copy.deepcopy(dict(self.items()), memo)

    def get(self, key: str, default: Any = None) -> Any:
        self._check()
        return dict.get(self, key, default)

    def keys(self) -> Any:
        self._check()
        return dict.keys(self)

    def values(self) -> Any:
        self._check()
        return dict.values(self)

    def items(self) -> Any:
        self._check()
        return dict.items(self)

    def copy(self) -> dict[str, Any]:
        self._check()
        return dict(dict.items(self))

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._check()
        return dict.setdefault(self, key, default)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        self._check()
        if default is _MISSING:
            return dict.pop(self, key)
        return dict.pop(self, key, default)

    def popitem(self) -> tuple[str, Any]:
        self._check()
        return dict.popitem(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._check()
        dict.update(self, *args, **kwargs)

    def clear(self) -> None:
        self._check()
        dict.clear(self)
