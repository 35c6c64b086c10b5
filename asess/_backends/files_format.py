"""Names and bytes of the file store: which file holds a session, and what is in it.

A :class:`Layout` turns a validated ``filename_template`` into the three kinds of
name the store writes in its directory (session files, temporary files, lock
sidecars) and recognises them again, so ``clear()`` and garbage collection
touch nothing else. A session file is one header line, ``ASESS1 <lifetime|->
<ttl>\\n``, followed by :func:`~asess._serialize.dump_record` output: the header
is all that expiry needs, so garbage collection reads a few bytes per file
instead of decoding every session.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from dataclasses import dataclass

from .._exceptions import ConfigurationError
from .._ids import is_session_id

TEMP_SUFFIX = ".asess-tmp"
LOCK_SUFFIX = ".lock"
MAGIC = b"ASESS1"
HEADER_MAX = 64  # the longest header line we write is far shorter
_ID_PATTERN = "[A-Za-z0-9_-]{43}"  # the shape asess._ids produces
_NAME_MAX = 255  # bytes in one path component on every common filesystem
# A temp name adds ".<pid>.<host>.<random>" plus TEMP_SUFFIX to the session name.
_TEMP_EXTRA = 1 + 10 + 1 + 8 + 1 + 12 + len(TEMP_SUFFIX)

#: Eight hex digits naming this machine in temp names. Garbage collection only
#: trusts "is the writer's pid alive" for temp files written on this host: the
#: directory may be shared (NFS) with machines whose pids mean nothing here.
HOST_TAG = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()


@dataclass(frozen=True)
class Header:
    """What a session file's first line says: its own lifetime, and the ttl it was saved with."""

    lifetime: int | None
    ttl: int

    def seconds(self, ttl: int | None) -> int:
        """Idle seconds after which the file is dead: lifetime, else ``ttl``, else the saved ttl."""
        if self.lifetime:
            return self.lifetime
        return self.ttl if ttl is None else ttl


def encode_header(lifetime: int | None, ttl: int) -> bytes:
    """The first line of a session file."""
    life = b"%d" % lifetime if lifetime and lifetime > 0 else b"-"
    return b"%s %s %d\n" % (MAGIC, life, ttl)


def split_file(raw: bytes) -> tuple[Header, bytes]:
    """Split a session file into its header and record bytes. Raises ValueError."""
    end = raw.find(b"\n", 0, HEADER_MAX)
    if end < 0:
        raise ValueError("no asess header line")
    parts = raw[:end].split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC:
        raise ValueError("not an asess session file of a known version")
    lifetime = None if parts[1] == b"-" else int(parts[1])
    ttl = int(parts[2])
    if (lifetime is not None and lifetime <= 0) or ttl < 0:
        raise ValueError("header times out of range")
    return Header(lifetime, ttl), raw[end + 1 :]


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Layout:
    """File names for one ``filename_template``, checked once at construction.

    Raises:
        ConfigurationError: the template cannot yield a plain, unambiguous file name.
    """

    __slots__ = ("_lock", "_prefix", "_session", "_suffix", "_temp", "template")

    def __init__(self, template: str) -> None:
        if not isinstance(template, str) or template.count("%s") != 1:
            raise ConfigurationError(
                f"filename_template={template!r} must contain exactly one '%s', "
                "where the session id goes, e.g. 'emt_%s.sess'"
            )
        prefix, suffix = template.split("%s")
        if "%" in prefix or "%" in suffix:
            raise ConfigurationError(
                f"filename_template={template!r} may hold no '%' besides the one '%s'; "
                "remove the other '%' characters"
            )
        if any(c in template for c in ("/", "\\", "\x00")):
            raise ConfigurationError(
                f"filename_template={template!r} must be a plain file name without "
                "'/', '\\' or NUL; put the directory in path= instead"
            )
        if suffix.endswith(TEMP_SUFFIX):
            raise ConfigurationError(
                f"filename_template={template!r} must not end with {TEMP_SUFFIX!r}, "
                "the suffix of the store's temporary files; choose another ending"
            )
        try:
            size = len(os.fsencode(prefix + suffix)) + 43
        except UnicodeError as exc:
            raise ConfigurationError(
                f"filename_template={template!r} cannot be encoded as a file name "
                "on this system; use ASCII characters"
            ) from exc
        if size + _TEMP_EXTRA > _NAME_MAX:
            raise ConfigurationError(
                f"filename_template={template!r} makes names too long for the "
                f"filesystem; shorten it by at least {size + _TEMP_EXTRA - _NAME_MAX} bytes"
            )
        self.template = template
        self._prefix, self._suffix = prefix, suffix
        pre, suf = re.escape(prefix), re.escape(suffix)
        self._session = re.compile(f"{pre}{_ID_PATTERN}{suf}")
        self._lock = re.compile(f"{pre}{_ID_PATTERN}{suf}{re.escape(LOCK_SUFFIX)}")
        self._temp = re.compile(
            rf"{pre}{_ID_PATTERN}{suf}\.([0-9]{{1,10}})\.([0-9a-f]{{8}})\.[0-9a-f]{{12}}"
            + re.escape(TEMP_SUFFIX)
        )

    def session_name(self, ref: str) -> str:
        """The session file name for ``ref``. Raises ValueError for anything but a session id."""
        if not (isinstance(ref, str) and is_session_id(ref)):
            raise ValueError("not a session id; refusing to build a file name from it")
        return f"{self._prefix}{ref}{self._suffix}"

    @staticmethod
    def temp_name(session_name: str, pid: int | None = None) -> str:
        """A fresh temporary name beside ``session_name`` naming its writer (pid, host)."""
        pid = os.getpid() if pid is None else pid
        return f"{session_name}.{pid}.{HOST_TAG}.{secrets.token_hex(6)}{TEMP_SUFFIX}"

    def is_session(self, name: str) -> bool:
        return self._session.fullmatch(name) is not None

    def is_lock(self, name: str) -> bool:
        return self._lock.fullmatch(name) is not None

    def temp_writer(self, name: str) -> tuple[int, str] | None:
        """``(pid, host tag)`` of the writer when ``name`` is one of our temp files, else None."""
        m = self._temp.fullmatch(name)
        return None if m is None else (int(m.group(1)), m.group(2))
