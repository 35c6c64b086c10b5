"""The frozen rules a lifecycle applies: lifetimes, cookie attributes, locking, the clock.

A :class:`Policy` is built once per manager from the factories' arguments and
handed to every :class:`~asess.Lifecycle`; it is the one owner of each rule, so
neither the stores nor the adapters decide a lifetime or a cookie attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._clock import SYSTEM_CLOCK, Clock
from ._cookies import CookieSettings
from ._exceptions import ConfigurationError


@dataclass(frozen=True, slots=True)
class Policy:
    """How sessions of one manager live.

    Attributes:
        cookies: the session cookie's name and attributes.
        expire: idle seconds after which a session is dead (sliding).
        max_age: seconds after creation after which a session is dead whatever
            its activity, or ``None``.
        locking: server-side stores only: requests of one session take a lease
            from load to the end of the request, so they run one after another.
        lock_timeout: how long a lease lasts, and how long a request waits for one.
        clock: where time comes from.
        user_key: the session key (or a function of the session data) giving
            the logged-in user's id, for the per-user index; None for none.
        record_devices: keep the login request's User-Agent and address in
            the per-user index.
    """

    cookies: CookieSettings
    expire: int = 3600
    max_age: int | None = None
    locking: bool = False
    lock_timeout: float = 10.0
    clock: Clock = SYSTEM_CLOCK
    user_key: str | Callable[[Mapping[str, Any]], Any] | None = None
    record_devices: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.expire, int) or isinstance(self.expire, bool) or self.expire <= 0:
            raise ConfigurationError(
                f"expire={self.expire!r}: give a lifetime in whole seconds, > 0 (e.g. 3600)"
            )
        if self.max_age is not None and (
            not isinstance(self.max_age, int) or isinstance(self.max_age, bool) or self.max_age <= 0
        ):
            raise ConfigurationError(
                f"max_age={self.max_age!r}: give whole seconds > 0, or None for no cap"
            )
        if not isinstance(self.locking, bool):
            raise ConfigurationError(f"locking={self.locking!r}: pass True or False")
        timeout = self.lock_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(
                f"lock_timeout={timeout!r}: give a positive number of seconds (e.g. 10.0)"
            )
        if not isinstance(self.record_devices, bool):
            raise ConfigurationError(f"record_devices={self.record_devices!r}: pass True or False")
        if self.record_devices and self.user_key is None:
            raise ConfigurationError(
                "record_devices=True records devices in the per-user index: pass user_key= too"
            )
        if not isinstance(self.clock, Clock):
            raise ConfigurationError(
                f"clock={self.clock!r}: pass an object with now() and async sleep(), "
                "such as asess.testing.ManualClock()"
            )

    def ttl(self, lifetime: int | None) -> int:
        """Idle seconds a record lives: its own lifetime, else ``expire``."""
        return lifetime if lifetime else self.expire
