"""``EmmettSession``: the asess Session as Emmett code expects to find it.

Emmett handlers and pipes reach the session as ``current.session`` and treat it
like Emmett's own ``SessionData``, an ``sdict``: a missing key reads as
``None`` through attributes *and* items, nested mappings have attribute access,
copies are ``sdict``, and pipes call ``_expires_after()``, ``_expiration``,
``_modified`` and ``_sid``. This subclass adds exactly that on top of
:class:`asess.Session`; loading and saving stay the lifecycle's.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

from emmett_core.datastructures import sdict

from .._session import Session, SessionDriver
from ._data import prepare_for_store, to_emmett


class EmmettSession(Session):
    """A :class:`asess.Session` that behaves like Emmett's ``SessionData``."""

    __slots__ = ("_default_expiration",)

    _default_expiration: int | None

    def __init__(self, driver: SessionDriver | None = None, *, loaded: bool = True) -> None:
        super().__init__(driver, loaded=loaded)
        object.__setattr__(self, "_default_expiration", None)

    def _bind_pipe(self, *, default_expiration: int | None) -> None:
        """Set what ``_expiration`` reads while the session follows the pipe's ``expire``."""
        object.__setattr__(self, "_default_expiration", default_expiration)

    # -- Emmett's SessionData interface ----------------------------------------

    @property
    def _sid(self) -> str | None:
        """The session id (server-side stores, once saved), as Emmett names it."""
        return self.id

    @property
    def _modified(self) -> bool:
        return self.modified

    @property
    def _expiration(self) -> int | None:
        """This session's own lifetime, else what Emmett gives: ``expire`` for a
        cookie session, ``None`` for a server-side one."""
        lifetime = self.lifetime
        return self._default_expiration if lifetime is None else lifetime

    @property
    def _dump(self) -> bytes:
        """The data pickled as an ``sdict``, as Emmett's ``SessionData._dump``."""
        return pickle.dumps(sdict(dict.items(self)))

    def _expires_after(self, value: int | float | None) -> None:
        """Emmett's spelling of :meth:`expire_after`, as Emmett's ``AuthPipe`` calls it.

        Setting the lifetime the session already has changes nothing, so a
        "remember me" session is not re-saved on every request; a falsy value
        goes back to the manager's ``expire``, as it does in Emmett.
        """
        if not value:
            if self.lifetime is not None:
                self._check()
                object.__setattr__(self, "_lifetime", None)
                self.mark_modified()
            return
        seconds = int(value)
        if seconds != self.lifetime:
            self.expire_after(seconds)

    # -- sdict behaviour -----------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Emmett keeps its own state under single-underscore keys
        # (``session._flashes``, ``session._csrf``) and reads them as None
        # while missing, as sdict does; only dunder probes stay errors.
        if name.startswith("__"):
            raise AttributeError(name)
        self._check()
        return dict.get(self, name)

    def __getitem__(self, key: str) -> Any:
        # sdict reads a missing key as None, and Emmett code relies on it.
        self._check()
        return dict.get(self, key)

    def __copy__(self) -> sdict[str, Any]:
        return sdict(dict.items(self))

    def __deepcopy__(self, memo: dict[int, Any]) -> sdict[str, Any]:
        # Emmett's test client deep-copies the session into the response
        # context; Emmett's own SessionData copies to an sdict as well.
        return sdict(copy.deepcopy(dict(dict.items(self)), memo))

    def copy(self) -> sdict[str, Any]:
        self._check()
        return sdict(dict.items(self))

    # -- lifecycle hooks -------------------------------------------------------

    def _fill(
        self,
        data: dict[str, Any],
        *,
        session_id: str | None,
        lifetime: int | None,
        new: bool,
        body: bytes | None = None,
    ) -> None:
        # The stored bytes are not handed on: to_emmett may change what the data
        # encodes to, so the converted data is fingerprinted itself.
        super()._fill(to_emmett(data), session_id=session_id, lifetime=lifetime, new=new)

    def _flatten_rows(self) -> None:
        """Make Emmett's types storable (rows, times, translations); called before every save."""
        if self._loaded:
            prepare_for_store(self)

    async def save(self) -> None:
        self._flatten_rows()
        await super().save()
