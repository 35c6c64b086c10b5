"""What Emmett code finds on a session pipe: Emmett's attributes, and cookies read its way.

Emmett's session pipes are plain objects whose configuration is public
(``pipe.key``, ``pipe.expire``, ``pipe.cookie_name``...; the files pipe's
``_path`` and ``_filename_template``, the Redis pipe's ``redis`` and
``prefix``), and they read the session cookie from ``request.cookies``, so
code and tests that drive ``open_request`` / ``close_request`` themselves set
cookies there. :class:`EmmettPipeAttributes` gives :class:`SessionPipe` the
same: read-only attributes with the values Emmett's pipe would hold for the
same arguments (recorded by the factories; a pipe built around a manager
derives them from it), and the Cookie header rebuilt from the request's
cookies. It also binds each new session to the pipe's settings (Emmett's
``_expiration`` of a cookie session is ``expire``) and applies
``always_send_cookie``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from emmett.ctx import current  # type: ignore[import-untyped]

from .._session import Session
from ._session_data import EmmettSession

if TYPE_CHECKING:
    from .._manager import SessionManager as CoreManager

#: Attributes only some of Emmett's pipes have, by the factory that sets them.
_BACKEND_ONLY = {
    "key": "cookies",
    "compression_level": "cookies",
    "encryption_mode": "cookies",
    "redis": "redis",
    "prefix": "redis",
    "_filename_template": "files",
    "_path": "files",
    "_fs_transaction_suffix": "files",
    "_fs_mode": "files",
}


class EmmettPipeAttributes:
    """Emmett's session pipe attributes, from the factory's arguments or the manager."""

    manager: CoreManager
    #: Arguments the factory was given, under the names Emmett's pipes use.
    _emmett_args: Mapping[str, Any]

    # -- every pipe -------------------------------------------------------------

    @property
    def current(self) -> Any:
        return current

    @property
    def expire(self) -> int:
        return self.manager.expire

    @property
    def cookie_name(self) -> str:
        return self.manager.cookie_name

    @property
    def secure(self) -> bool:
        return bool(self._emmett_args.get("secure", self.manager.cookie_settings.secure))

    @property
    def samesite(self) -> str | None:
        samesite: str | None = self._emmett_args.get(
            "samesite", self.manager.cookie_settings.samesite
        )
        return samesite

    @property
    def domain(self) -> str | None:
        domain: str | None = self._emmett_args.get("domain", self.manager.cookie_settings.domain)
        return domain

    @property
    def cookie_data(self) -> dict[str, Any]:
        # Emmett keeps ``cookie_data or {}``; a copy, since changing it would
        # not change the cookies (the manager validated them once).
        return dict(self._emmett_args.get("cookie_data") or {})

    # -- one kind of pipe ---------------------------------------------------------

    def _backend_only(self, name: str) -> Any:
        try:
            return self._emmett_args[name]
        except KeyError:
            raise AttributeError(
                f"{name!r}: only a SessionManager.{_BACKEND_ONLY[name]}() pipe has it"
            ) from None

    @property
    def key(self) -> Any:
        return self._backend_only("key")

    @property
    def compression_level(self) -> int:
        level: int = self._backend_only("compression_level")
        return level

    @property
    def encryption_mode(self) -> str:
        mode: str = self._backend_only("encryption_mode")
        return mode

    @property
    def redis(self) -> Any:
        """The client as given (a synchronous one too, as Emmett takes)."""
        return self._backend_only("redis")

    @property
    def prefix(self) -> str:
        prefix: str = self._backend_only("prefix")
        return prefix

    @property
    def _filename_template(self) -> str:
        template: str = self._backend_only("_filename_template")
        return template

    @property
    def _path(self) -> str:
        path: str = self._backend_only("_path")
        return path

    @property
    def _fs_transaction_suffix(self) -> str:
        suffix: str = self._backend_only("_fs_transaction_suffix")
        return suffix

    @property
    def _fs_mode(self) -> int:
        mode: int = self._backend_only("_fs_mode")
        return mode

    # -- requests -----------------------------------------------------------------

    def _cookie_header(self, wrapper: Any) -> str | None:
        """The session's cookies as a Cookie header, from where Emmett's pipes read them.

        Emmett's pipes read ``request.cookies``, a ``SimpleCookie`` that
        Emmett parses from the header on first use and keeps on the request.
        Once it is there (parsed for other code, or set by a test), the session
        comes from it, so what Emmett code puts there is what is loaded.
        Until then it would only repeat the header, so the header is read
        directly: parsing every cookie costs about 0.1 ms for twenty cookies
        and a 3 kB session.
        """
        attributes = getattr(wrapper, "__dict__", {})
        if "cookies" not in attributes and hasattr(wrapper, "headers"):
            header: str | None = wrapper.headers.get("cookie")
            return header
        cookies = wrapper.cookies
        parts = []
        for name in self.manager.cookie_settings.chunk_names():
            morsel = cookies.get(name)
            if morsel is not None:
                parts.append(f"{name}={getattr(morsel, 'value', morsel)}")
        return "; ".join(parts) or None

    def _bind(self, session: Session) -> None:
        """Give a new request's session the pipe's defaults (see EmmettSession)."""
        if isinstance(session, EmmettSession):
            cookie = not self.manager.server_side
            session._bind_pipe(default_expiration=self.manager.expire if cookie else None)

    def _before_commit(self, session: Session) -> None:
        """Called when the response's cookies are decided: ``always_send_cookie``."""
        if self._emmett_args.get("always_send_cookie") and session.loaded:
            session.mark_modified()
