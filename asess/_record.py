"""What a store hands back: the session data plus the few times expiry needs.

``Record`` is the one currency between the lifecycle and every backend. Server
stores persist it with :func:`asess._serialize.dump_record`; the cookie store
carries it inside the token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Record:
    """A session as stored.

    Attributes:
        data: the session's key/value pairs, plain data only.
        created_at: unix time the session was first created (for ``max_age``).
        issued_at: unix time this version was written.
        expires_at: unix time after which the record is dead, when the store
            knows it (tokens carry it; ``None`` for foreign Emmett tokens).
        lifetime: this session's own lifetime in seconds (``expire_after``), or
            ``None`` for the manager's ``expire``.
        reissue: set by a codec when the token should be re-written even if the
            data did not change: read with an old key, or in a foreign format.
        body: set by a decoder when the stored bytes of ``data`` are exactly
            what the serializer writes for it (plain JSON in asess's own
            layout), so the lifecycle can tell a change by comparing encodings
            without encoding the loaded data a second time. Never written.
        encoded: the serializer's ``(bytes, kind)`` for ``data``, computed by
            the lifecycle just before this record is written; writers use it
            instead of encoding ``data`` again. Left ``None`` by decoders, so a
            decoded record whose data is changed is always encoded afresh.
    """

    data: dict[str, Any]
    created_at: float
    issued_at: float
    expires_at: float | None = None
    lifetime: int | None = None
    reissue: bool = field(default=False, compare=False)
    body: bytes | None = field(default=None, compare=False, repr=False)
    encoded: tuple[bytes, int] | None = field(default=None, compare=False, repr=False)
