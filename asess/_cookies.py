"""Cookie attributes, the Cookie header parser and Set-Cookie rendering with chunking.

Every Set-Cookie line asess emits is built here, once. Values too long for one
cookie are split across ``name``, ``name.1``, ``name.2``... so that each whole
line stays within the 4096 bytes RFC 6265 user agents keep; stale chunks from
an earlier, larger session are expired. One rendering option sits apart at the
end: :class:`StarletteFormat` writes the lines as Starlette's own
``SessionMiddleware`` does, for :mod:`asess.starlette`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from ._exceptions import ConfigurationError, SessionTooLarge

COOKIE_LINE_LIMIT = 4096
# Room for the double quotes some writers (Emmett's) put around values with "=".
_QUOTE_ROOM = 2
# Headers longer than this are not parsed at all: no session cookie is that big.
MAX_COOKIE_HEADER = 64 * 1024
_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_ATTRIBUTE_NAMES = {
    "path": "Path",
    "domain": "Domain",
    "max-age": "Max-Age",
    "max_age": "Max-Age",
    "expires": "Expires",
    "secure": "Secure",
    "httponly": "HttpOnly",
    "samesite": "SameSite",
    "priority": "Priority",
    "partitioned": "Partitioned",
}


# What an attribute value may hold: printable ASCII but ";" (RFC 6265 forbids
# ";" and controls, and ASGI servers send header bytes as latin-1 or refuse them).
_ATTRIBUTE_TEXT = re.compile(r"[\x20-\x3a\x3c-\x7e]*")
_DOMAIN = re.compile(r"\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", re.ASCII)
_FLAGS = {"HttpOnly", "Secure", "Partitioned"}
_TIMING = {"Max-Age", "Expires"}


def _text(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{what}={value!r}: give text (True/False only for flags)")
    text = value
    if not _ATTRIBUTE_TEXT.fullmatch(text):
        raise ConfigurationError(
            f"{what}={text!r} holds ';', a newline or another control character, or "
            "non-ASCII text: percent-encode a path, give a domain in its xn-- form"
        )
    return text


def _domain(what: str, value: Any) -> str | None:
    if value is None or value is False:
        return None
    text = _text(what, value)
    if not _DOMAIN.fullmatch(text):
        raise ConfigurationError(f"{what}={text!r} is not a domain name: use e.g. 'example.org'")
    return text


def _flag(what: str, value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    raise ConfigurationError(f"{what}={value!r}: use True or False")


def _timing(attr: str, what: str, value: Any) -> str | None:
    """A Max-Age or Expires override, rendered; None removes the attribute."""
    if value is None or value is False:
        return None
    if attr == "Max-Age":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"{what}={value!r}: give whole seconds >= 0 (Max-Age)")
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return formatdate(value, usegmt=True)
    return _text(what, value)


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """Validated cookie attributes shared by every backend.

    ``extra`` comes from ``cookie_data`` and adds attributes: ``True`` writes
    a flag, anything else writes ``Name=value``; attributes asess writes itself
    are overridden in place. ``timing`` holds ``cookie_data``'s ``Max-Age`` /
    ``Expires``, which replace the computed ones on persistent cookies
    (``None`` removes one); deletions and browser-session cookies keep theirs.
    """

    name: str
    secure: bool = False
    samesite: str | None = "Lax"
    domain: str | None = None
    path: str = "/"
    httponly: bool = True
    max_chunks: int = 3
    extra: Mapping[str, Any] = field(default_factory=dict)
    timing: Mapping[str, str | None] = field(default_factory=dict)
    #: Write lines the way Starlette's SessionMiddleware does (asess.starlette).
    starlette: StarletteFormat | None = None
    # Derived once: the chunk cookie names, and rendered attribute tails.
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _wanted: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _rendered: dict[tuple[int | None, int], str] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        names = (self.name, *(f"{self.name}.{i}" for i in range(1, self.max_chunks)))
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_wanted", frozenset(names))

    @classmethod
    def build(
        cls,
        *,
        name: str,
        secure: bool,
        samesite: str | None,
        domain: str | None,
        cookie_data: Mapping[str, Any] | None,
        max_chunks: int,
        starlette: StarletteFormat | None = None,
    ) -> CookieSettings:
        """Validate user arguments; raise ConfigurationError naming what to change."""
        if not isinstance(name, str) or not _TOKEN_CHARS.fullmatch(name):
            raise ConfigurationError(
                f"cookie_name {name!r} holds characters a cookie name cannot: "
                "use letters, digits and !#$%&'*+-.^_`|~"
            )
        site: str | None = None
        if samesite is not None:
            site = _SAMESITE.get(samesite.lower()) if isinstance(samesite, str) else None
            if site is None:
                raise ConfigurationError(
                    f"samesite={samesite!r} is not valid: use 'Lax', 'Strict' or 'None'"
                )
        if cookie_data is not None and not isinstance(cookie_data, Mapping):
            raise ConfigurationError(
                f"cookie_data={cookie_data!r}: pass a dict of attributes, e.g. {{'path': '/app'}}"
            )
        if not isinstance(max_chunks, int) or isinstance(max_chunks, bool) or max_chunks < 1:
            raise ConfigurationError("max_cookie_chunks must be an integer >= 1")
        if not isinstance(secure, bool):
            raise ConfigurationError(f"secure={secure!r}: use True or False")
        domain = _domain("domain", domain)
        extra: dict[str, Any] = {}
        timing: dict[str, str | None] = {}
        path = "/"
        httponly = True
        for key, value in (cookie_data or {}).items():
            if not isinstance(key, str):
                raise ConfigurationError(f"cookie_data key {key!r}: attribute names are text")
            attr = _ATTRIBUTE_NAMES.get(key.lower().replace(" ", ""), key)
            what = f"cookie_data {key}"
            if not _TOKEN_CHARS.fullmatch(attr):
                raise ConfigurationError(f"cookie_data key {key!r} is not a cookie attribute name")
            if attr == "Path":
                path = _text(what, value)
            elif attr == "HttpOnly":
                httponly = _flag(what, value)
            elif attr == "Secure":
                secure = _flag(what, value)
            elif attr == "SameSite":
                site = None
                if value not in (None, False):
                    site = _SAMESITE.get(value.lower()) if isinstance(value, str) else None
                    if site is None:
                        raise ConfigurationError(f"cookie_data SameSite={value!r} is not valid")
            elif attr == "Domain":
                domain = _domain(what, value)
            elif attr in _TIMING:
                timing[attr] = _timing(attr, what, value)
            elif value is True or value is False or value is None:
                extra[attr] = value
            elif attr in _FLAGS:
                raise ConfigurationError(f"{what}={value!r}: use True or False")
            else:
                extra[attr] = _text(what, value)
        # Checked on the final attributes, after every override.
        if site == "None" and not secure:
            raise ConfigurationError(
                "samesite='None' requires secure=True: browsers drop SameSite=None cookies "
                "that are not Secure"
            )
        return cls(
            name=name,
            secure=secure,
            samesite=site,
            domain=domain,
            path=path,
            httponly=httponly,
            max_chunks=max_chunks,
            extra=extra,
            timing=timing,
            starlette=starlette,
        )

    def chunk_names(self) -> list[str]:
        return list(self._names)

    @property
    def wanted(self) -> frozenset[str]:
        """The chunk cookie names, as the Cookie header parser takes them."""
        return self._wanted

    def attributes(self, max_age: int | None, now: float | None = None) -> str:
        """The ``; Path=/; ...`` tail of a Set-Cookie line for this lifetime.

        ``max_age=None`` gives a browser-session cookie; ``max_age=0`` expires it.
        The text only changes once a second, so it is rendered once a second.
        """
        second = int(time.time() if now is None else now)
        key = (max_age, second if max_age else 0)
        rendered = self._rendered.get(key)
        if rendered is None:
            if len(self._rendered) > 64:
                self._rendered.clear()
            rendered = self._rendered[key] = self._render_attributes(max_age, second)
        return rendered

    def _render_attributes(self, max_age: int | None, now: int) -> str:
        if self.starlette is not None:
            return self.starlette.render(self, max_age)
        parts = [f"Path={self.path}"]
        if max_age is not None:
            expires = formatdate(now + max_age if max_age > 0 else 0, usegmt=True)
            lifetime: dict[str, str | None] = {"Max-Age": str(max_age), "Expires": expires}
            if max_age > 0:  # a deletion must stay one, whatever cookie_data says
                lifetime.update(self.timing)
            parts.extend(f"{k}={v}" for k, v in lifetime.items() if v is not None)
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.httponly:
            parts.append("HttpOnly")
        if self.samesite:
            parts.append(f"SameSite={self.samesite}")
        for attr, value in self.extra.items():
            if value is True:
                parts.append(attr)
            elif value not in (None, False):
                parts.append(f"{attr}={value}")
        return "; " + "; ".join(parts)


def parse_cookie_header(header: str | None, names: Collection[str]) -> dict[str, str]:
    """Pick ``names`` out of a Cookie header; quoted values are unquoted.

    Anything malformed is skipped rather than raised: a bad cookie means no
    session, never an error. Oversized headers are ignored without parsing,
    and so are headers that do not even contain one of the names (a visitor
    with other sites' or analytics cookies only); parsing stops once every
    name was found.
    """
    if not header or len(header) > MAX_COOKIE_HEADER:
        return {}
    wanted = names if isinstance(names, (set, frozenset)) else set(names)
    for name in wanted:
        if name in header:
            break
    else:
        return {}
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name = name.strip()
        if name in wanted and name not in found:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found[name] = value
            if len(found) == len(wanted):
                break  # the first of each name wins: later ones change nothing
    return found


def join_chunks(found: Mapping[str, str], settings: CookieSettings) -> str | None:
    """Reassemble ``name``, ``name.1``, ... into one value; None without the first."""
    first = found.get(settings.name)
    if first is None:
        return None
    pieces = [first]
    for i in range(1, settings.max_chunks):
        piece = found.get(f"{settings.name}.{i}")
        if piece is None:
            break
        pieces.append(piece)
    return "".join(pieces)


def render_set_cookies(
    value: str,
    settings: CookieSettings,
    max_age: int | None,
    present: set[str],
    now: float | None = None,
) -> list[str]:
    """Set-Cookie values for ``value``, chunked; expires chunks in ``present`` no longer used.

    Raises:
        SessionTooLarge: the value needs more than ``settings.max_chunks`` cookies.
    """
    attrs = settings.attributes(max_age, now)
    first = settings.name
    # The usual case, what the loop below gives too: one cookie, no stale chunks to expire.
    room = COOKIE_LINE_LIMIT - len(first) - 1 - len(attrs) - _QUOTE_ROOM
    if 0 < room >= len(value) and (not present or (len(present) == 1 and first in present)):
        return [f"{first}={value}{attrs}"]
    lines: list[str] = []
    rest = value
    names = settings.chunk_names()
    for name in names:
        room = COOKIE_LINE_LIMIT - len(name) - 1 - len(attrs) - _QUOTE_ROOM
        if room <= 0:
            break
        lines.append(f"{name}={rest[:room]}{attrs}")
        rest = rest[room:]
        if not rest:
            break
    if rest:
        capacity = len(value) - len(rest)
        raise SessionTooLarge(
            f"the session cookie needs {len(value)} bytes but {settings.max_chunks} cookies "
            f"hold {capacity}: store less in the session, raise max_cookie_chunks, or use a "
            "server-side backend (files, redis)"
        )
    used = {line.partition("=")[0] for line in lines}
    lines.extend(expire_cookies(present - used, settings))
    return lines


def expire_cookies(names: set[str] | list[str], settings: CookieSettings) -> list[str]:
    """Set-Cookie values that delete ``names`` with this manager's path and domain."""
    if not names:
        return []
    attrs = settings.attributes(0)
    value = "" if settings.starlette is None else StarletteFormat.DELETED_VALUE
    return [f"{name}={value}{attrs}" for name in sorted(names)]


@dataclass(frozen=True, slots=True)
class StarletteFormat:
    """Set-Cookie lines shaped like Starlette's ``SessionMiddleware`` writes them.

    Users' tests (and Starlette's own) match those lines literally:
    ``name=value; path=/; Max-Age=N; httponly; samesite=lax; secure;
    domain=d; partitioned``, lowercase names but ``Max-Age``, no ``Expires`` on
    a live cookie, and ``name=null; path=/; expires=<epoch>; ...`` to delete.
    ``max_age`` is Starlette's argument: ``None`` writes browser-session
    cookies, zero or less is written as given (the browser drops the cookie at
    once), a positive value defers to the lifetime the lifecycle passes, so
    ``expire_after()`` still shows.
    """

    max_age: int | None
    partitioned: bool = False
    #: ``same_site`` as the application spelled it: Starlette writes it verbatim.
    same_site: str | None = None

    DELETED_VALUE = "null"
    _EPOCH = "expires=Thu, 01 Jan 1970 00:00:00 GMT"

    def render(self, settings: CookieSettings, max_age: int | None) -> str:
        """The ``; path=...`` tail for a cookie living ``max_age`` seconds (0: delete)."""
        parts = [f"path={settings.path}"]
        if max_age == 0:  # asked to delete (expire_cookies); live cookies never pass 0
            parts.append(self._EPOCH)
        elif self.max_age is not None and self.max_age <= 0:
            parts.append(f"Max-Age={self.max_age}")
        elif self.max_age is not None and max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if settings.httponly:
            parts.append("httponly")
        if settings.samesite:
            parts.append(f"samesite={self.same_site or settings.samesite.lower()}")
        if settings.secure:
            parts.append("secure")
        if settings.domain:
            parts.append(f"domain={settings.domain}")
        if self.partitioned:
            parts.append("partitioned")
        return "; " + "; ".join(parts)
