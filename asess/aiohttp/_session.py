"""The session aiohttp handlers get: asess's, plus aiohttp-session's names.

aiohttp-session code reads ``session.new``, ``session.created``,
``session.identity``, ``session.max_age`` and ``session.empty``, and calls
``session.changed()`` and ``session.invalidate()``; this subclass answers
them from asess's own state, so no second bookkeeping exists. Everything
asess adds (``regenerate()``, nested-change detection, ``expire_after()``)
works as well.
"""

from __future__ import annotations

import time
from typing import Any

from .._lifecycle import Lifecycle
from .._session import Session


class AiohttpSession(Session):
    """An asess :class:`~asess.Session` answering aiohttp-session's attributes."""

    __slots__ = ()

    @property
    def new(self) -> bool:
        """True when no stored session was found, or ``new_session()`` started over."""
        self._check()
        return self._is_new or self._invalidated

    @property
    def created(self) -> int:
        """Unix time (whole seconds) the session was first created; now for a new one."""
        self._check()
        driver = self._driver
        if not isinstance(driver, Lifecycle):
            return int(time.time())
        created = None if self.new else driver.created_at
        return int(driver.policy.clock.now() if created is None else created)

    @property
    def identity(self) -> str | None:
        """The server-side session id (aiohttp-session's storage key); None for cookies."""
        return self.id

    @property
    def empty(self) -> bool:
        self._check()
        return not dict.__len__(self)

    @property
    def max_age(self) -> int | None:
        """Seconds the session lives idle; ``None`` for a browser-session cookie."""
        self._check()
        if self.lifetime is not None:
            return self.lifetime or None
        driver = self._driver
        return driver.policy.expire if isinstance(driver, Lifecycle) else None

    @max_age.setter
    def max_age(self, value: int | None) -> None:
        # aiohttp-session's None is a browser-session cookie: asess's expire_after(0).
        self.expire_after(0 if value is None else value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "max_age":  # the one settable attribute; other names are data
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    def changed(self) -> None:
        """Save this session at the end of the request even if nothing seems changed."""
        self._check()
        self.mark_modified()
