"""``asess inspect``: show one session, from its cookie or from a store by id.

A token's format is told by its shape (``as1.`` opens a modern token, colons
separate a legacy one), so ``--mode`` is needed only to insist on one. Values
may be pasted as a browser shows them, ``name=value`` or a whole Cookie header:
the session cookie and its chunks are picked out and joined. A files or Redis
session is read by id without sliding its expiry, so looking at a session
never keeps it alive. Times print as ISO 8601 (UTC) with the time left.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any

from ._backends.files_format import Layout, split_file
from ._exceptions import SessionError
from ._ids import is_session_id
from ._record import Record
from ._serialize import load_record

MODERN_PREFIX = "as1."
# "name=value" as browsers show cookies. A bare token never matches: base64
# padding "=" is followed by ":", another "=", or the end, never by a character.
_PAIR = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=(?![=:]|$)(.*)", re.S)
_CHUNK = re.compile(r"(.+)\.([1-9][0-9]?)")


class InspectError(SessionError):
    """What the user pasted or pointed at cannot be shown; the message says why."""


def pasted_value(parts: list[str], cookie_name: str | None) -> tuple[str | None, str]:
    """Join what was pasted into one value; return (cookie name it came under, value).

    ``parts`` are bare values (chunks in order) or ``name=value`` pairs, possibly
    several per part separated by ``;`` as in a Cookie header. With pairs, the
    session cookie is ``cookie_name`` or, when that is None, the only cookie
    pasted; its chunks ``name.1``, ``name.2``... follow it in number order.
    """
    pairs: list[tuple[str, str]] = []
    bare: list[str] = []
    for part in parts:
        for piece in part.split(";") if "=" in part else [part]:
            piece = piece.strip()
            if not piece:
                continue
            match = _PAIR.fullmatch(piece)
            if match:
                pairs.append((match.group(1), _unquote(match.group(2).strip())))
            else:
                bare.append(_unquote(piece))
    if pairs and bare:
        raise InspectError("pass either bare cookie values or name=value pairs, not both")
    if not pairs:
        if not bare:
            raise InspectError("nothing to inspect: pass the cookie value")
        return None, "".join(bare)
    chunks: dict[str, dict[int, str]] = {}
    for name, value in pairs:
        chunk = _CHUNK.fullmatch(name)
        base, index = (chunk.group(1), int(chunk.group(2))) if chunk else (name, 0)
        chunks.setdefault(base, {})[index] = value
    if cookie_name is None:
        firsts = sorted(base for base, found in chunks.items() if 0 in found)
        if len(firsts) != 1:
            listed = ", ".join(firsts) or "none"
            raise InspectError(
                f"the paste holds session cookie candidates {listed}: pass --cookie-name"
            )
        cookie_name = firsts[0]
    found = chunks.get(cookie_name, {})
    if 0 not in found:
        raise InspectError(f"no cookie named {cookie_name!r} in what was pasted")
    pieces = []
    for index in range(len(found)):
        if index not in found:
            raise InspectError(f"chunk {cookie_name}.{index} is missing: paste every chunk")
        pieces.append(found[index])
    return cookie_name, "".join(pieces)


def _unquote(value: str) -> str:
    # Emmett quotes values holding "="; browsers show the quotes.
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def detect_mode(token: str) -> str:
    """``modern`` or ``legacy`` from the token's shape; InspectError for neither."""
    if token.startswith(MODERN_PREFIX):
        return "modern"
    if ":" in token:
        return "legacy"
    raise InspectError(
        f"the value is neither a modern token ({MODERN_PREFIX}...) nor a legacy one "
        "(parts separated by ':'): check that it is the whole cookie value"
    )


def session_id(parts: list[str]) -> str:
    """The session id from a bare id or a pasted ``name=id``; InspectError when malformed."""
    if len(parts) != 1:
        raise InspectError("pass exactly one session id")
    _, value = pasted_value(parts, None)
    if not is_session_id(value):
        raise InspectError(
            "not a session id: asess ids are 43 URL-safe base64 characters (the cookie value)"
        )
    return value


def read_file_session(directory: str, template: str, sid: str, now: float) -> dict[str, Any]:
    """The file session ``sid`` in ``directory`` as printable JSON, without touching it."""
    path = os.path.join(directory, Layout(template).session_name(sid))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise InspectError(f"no session file {path}: wrong id, --path or template") from None
    except OSError as exc:
        raise InspectError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        mtime = os.fstat(fd).st_mtime
        raw = b""
        while chunk := os.read(fd, 1 << 20):
            raw += chunk
    finally:
        os.close(fd)
    try:
        header, body = split_file(raw)
        record = load_record(body)
    except ValueError as exc:
        raise InspectError(f"{path} is not a readable session file: {exc}") from exc
    # Expiry is the file's mtime plus the lifetime its header holds, as the store reads it.
    record.expires_at = mtime + header.seconds(None)
    return describe(record, now, source={"store": "files", "file": path})


async def read_redis_session(url: str, prefix: str, sid: str, now: float) -> dict[str, Any]:
    """The Redis session ``sid`` as printable JSON: GET and PTTL, so its TTL is left alone."""
    try:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError
    except ImportError:
        raise InspectError(
            "reading Redis needs the redis package: pip install 'asess[redis]'"
        ) from None
    key = prefix + sid
    client = aioredis.from_url(url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            raw, pttl = await pipe.execute()
    except (RedisError, OSError) as exc:
        raise InspectError(f"cannot read {key!r} from {url}: {exc}") from exc
    finally:
        await client.aclose()
    if raw is None:
        raise InspectError(f"no key {key!r} in {url}: wrong id or --prefix, or it expired")
    from ._backends.redis import split_value

    if isinstance(raw, str):
        raw = raw.encode()
    try:
        record = load_record(split_value(raw)[1])
    except ValueError as exc:
        raise InspectError(f"{key!r} does not hold an asess session: {exc}") from exc
    record.expires_at = now + pttl / 1000 if pttl >= 0 else None
    return describe(record, now, source={"store": "redis", "key": key})


def describe(record: Record, now: float, *, source: dict[str, Any]) -> dict[str, Any]:
    """``{"data": ..., "meta": ...}`` with ISO times and the time left."""
    left = None if record.expires_at is None else record.expires_at - now
    meta: dict[str, Any] = {
        **source,
        "created_at": _iso(record.created_at),
        "issued_at": _iso(record.issued_at),
        "expires_at": None if record.expires_at is None else _iso(record.expires_at),
        "expires_in": None if left is None else human(left),
        "expires_in_seconds": None if left is None else int(left),
        "lifetime": record.lifetime,
    }
    return {"data": record.data, "meta": meta}


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


def human(seconds: float) -> str:
    """``1d 2h``, ``59m 12s``, ``7s``; ``expired 3m ago`` for a past time."""
    if seconds <= 0:
        return f"expired {human(-seconds) if seconds < 0 else '0s'} ago"
    rest = int(seconds)
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    parts: list[str] = []
    for name, size in units:
        if rest >= size or (name == "s" and not parts):
            parts.append(f"{rest // size}{name}")
            rest %= size
    return " ".join(parts[:2])
