"""``asess.starlette.SessionMiddleware``: Starlette's constructor over asess's middleware.

The arguments are Starlette's (1.10), with Starlette's meanings: ``max_age``
seconds of life (``None``: a browser-session cookie; zero or less: every
session lasts one request), ``same_site``, ``https_only``, ``path``,
``domain`` and ``partitioned`` shape the cookie, which is written the way
Starlette writes it (:class:`~asess._cookies.StarletteFormat`). Sessions are
asess's, in ``modern`` cookies keyed from ``secret_key``, or in the store of a
``manager=``. A cookie Starlette's own middleware wrote with the same key is
read once and re-issued in asess's format, so switching logs nobody out. The
request itself runs through :class:`asess.SessionMiddleware` and the one
lifecycle: this module only builds the manager and adopts old cookies.
"""

from __future__ import annotations

from typing import Any, Literal

from .._backends.cookie import CookieStore, build_codec
from .._cookies import CookieSettings, StarletteFormat, parse_cookie_header
from .._exceptions import ConfigurationError
from .._keys import KeyRing, Secret
from .._lifecycle import Backend, Lifecycle
from .._manager import DEFAULT_COOKIE_NAME, SessionManager
from .._policy import Policy
from .._session import Session as _AsessSession
from .._types import ASGIApp
from .._user_index import Device
from ..middleware import SessionMiddleware as _AsgiSessionMiddleware
from ._legacy import StarletteCookieReader
from ._session import RequestSession

DEFAULT_MAX_AGE = 14 * 24 * 60 * 60  # Starlette's default, 14 days


class _MigratingLifecycle(Lifecycle):
    """The lifecycle, plus: a Starlette cookie found instead of ours is adopted."""

    def __init__(
        self,
        policy: Policy,
        backend: Backend,
        cookie_header: str | None,
        reader: StarletteCookieReader | None,
        *,
        autoload: bool,
        session_factory: type[_AsessSession],
    ) -> None:
        super().__init__(
            policy, backend, cookie_header, autoload=autoload, session_factory=session_factory
        )
        self._old: str | None = None
        if reader is not None and cookie_header is not None:
            self._old = parse_cookie_header(cookie_header, [policy.cookies.name]).get(
                policy.cookies.name
            )
        self._reader = reader

    async def start(self) -> _AsessSession:
        session = await super().start()
        if self._old is not None and self._reader is not None and session.is_new:
            data = self._reader.read(self._old)
            if data and isinstance(session, RequestSession):
                session._adopt(data)
        return session


class _StarletteManager(SessionManager):
    """A manager whose cookie follows Starlette's arguments and whose lifecycle migrates."""

    def __init__(
        self,
        backend: Backend,
        policy: Policy,
        reader: StarletteCookieReader | None,
        drop_cookies: bool,
    ) -> None:
        super().__init__(
            backend,
            expire=policy.expire,
            max_age=policy.max_age,
            locking=policy.locking,
            lock_timeout=policy.lock_timeout,
            clock=policy.clock,
            cookie_name=policy.cookies.name,
        )
        self.policy = policy
        self._reader = reader
        # max_age <= 0: every cookie is already expired when it comes back.
        self._drop_cookies = drop_cookies

    def lifecycle(
        self,
        cookie_header: str | None,
        *,
        autoload: bool = True,
        session_factory: type[_AsessSession] = RequestSession,
        device: Device | None = None,
    ) -> Lifecycle:
        header = None if self._drop_cookies else cookie_header
        return _MigratingLifecycle(
            self.policy,
            self.store,
            header,
            self._reader,
            autoload=autoload,
            session_factory=session_factory,
        )


def _key_text(secret_key: object) -> str:
    """The key as Starlette's signer sees it: ``str(secret_key)``, so old cookies verify.

    That covers Starlette's ``Secret`` (whose ``str`` is the value); asess's
    own :class:`~asess.Secret` hides its value from ``str``, so it is unwrapped.
    """
    if isinstance(secret_key, Secret):
        return secret_key.value.decode("utf-8", "surrogateescape")
    text = str(secret_key) if secret_key is not None else ""
    if not text:
        raise ConfigurationError(
            "secret_key is empty: pass the secret_key your Starlette app used (a long random str)"
        )
    return text


class SessionMiddleware(_AsgiSessionMiddleware):
    """Starlette's ``SessionMiddleware`` signature, asess's sessions.

    ``SessionMiddleware(app, secret_key, session_cookie="session",
    max_age=14 * 24 * 60 * 60, path="/", same_site="lax", https_only=False,
    domain=None, partitioned=False, *, manager=None)``.

    Args:
        manager: a :class:`~asess.SessionManager` whose store (files, Redis...)
            and lifetimes (``expire``, ``max_age``, ``locking``) to use instead
            of cookie sessions. The cookie still follows the Starlette
            arguments; ``max_age`` must then be left at its default (the
            manager's ``expire`` is the lifetime) or be ``None``.
        migrate: read cookies written by Starlette's own middleware with
            ``secret_key`` and re-issue them in asess's format (default).
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | Any,
        session_cookie: str = "session",
        max_age: int | None = DEFAULT_MAX_AGE,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        manager: SessionManager | None = None,
        migrate: bool = True,
    ) -> None:
        if max_age is not None and (not isinstance(max_age, int) or isinstance(max_age, bool)):
            raise ConfigurationError(
                f"max_age={max_age!r}: give whole seconds, or None for a browser-session cookie"
            )
        key = _key_text(secret_key)
        cookies = CookieSettings.build(
            name=session_cookie,
            secure=https_only,
            samesite=same_site,
            domain=domain,
            cookie_data={"path": path},
            max_chunks=3,
            starlette=StarletteFormat(
                max_age=max_age, partitioned=bool(partitioned), same_site=str(same_site)
            ),
        )
        backend: Backend
        if manager is None:
            expire = max_age if max_age is not None and max_age > 0 else DEFAULT_MAX_AGE
            codec = build_codec("modern", KeyRing(key), session_cookie, 0)
            backend = CookieStore(codec)
            policy = Policy(cookies=cookies, expire=expire)
        else:
            policy, backend = _from_manager(manager, cookies, max_age)
        reader = StarletteCookieReader.build(key, max_age) if migrate else None
        drop = max_age is not None and max_age <= 0
        super().__init__(app, _StarletteManager(backend, policy, reader, drop))
        # Starlette's middleware exposes these; code that reads them keeps working.
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path


def _from_manager(
    manager: SessionManager, cookies: CookieSettings, max_age: int | None
) -> tuple[Policy, Backend]:
    if not isinstance(manager, SessionManager):
        raise ConfigurationError(
            f"manager={manager!r}: pass an asess.SessionManager (e.g. SessionManager.redis(...))"
        )
    base = manager.policy
    if max_age not in (None, DEFAULT_MAX_AGE, base.expire):
        raise ConfigurationError(
            f"max_age={max_age!r} with manager=: the manager's expire ({base.expire}) is the "
            "lifetime; pass expire= to the manager's factory and leave max_age out "
            "(or None for browser-session cookies)"
        )
    if manager.cookie_name not in (DEFAULT_COOKIE_NAME, cookies.name):
        raise ConfigurationError(
            f"the manager's cookie_name {manager.cookie_name!r} differs from session_cookie "
            f"{cookies.name!r}: the cookie is named by session_cookie here; drop cookie_name"
        )
    policy = Policy(
        cookies=cookies,
        expire=base.expire,
        max_age=base.max_age,
        locking=base.locking,
        lock_timeout=base.lock_timeout,
        clock=base.clock,
    )
    return policy, manager.store
