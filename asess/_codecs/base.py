"""The codec contract: pure, synchronous transforms between a Record and a token.

Codecs do CPU work only. The cookie store decides whether a call runs inline or
in a thread (``is_expensive``), so the event loop never waits on a key
derivation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .._record import Record


class TokenCodec(ABC):
    """Encodes records into cookie tokens and decodes them back."""

    @abstractmethod
    def encode(self, record: Record) -> str:
        """Return a token holding ``record`` (data, times and lifetime).

        ``record.expires_at`` is set by the caller and must be bound into the
        token where the format can carry it.
        """

    @abstractmethod
    def decode(self, token: str, now: float) -> Record:
        """Return the record in ``token``.

        Raises:
            InvalidToken: bad encoding, wrong key, tampered, expired at ``now``
                or otherwise unusable; the message says which, for debug logs.
        """

    def is_expensive(self, token: str | None) -> bool:
        """Whether decoding ``token`` (or, with ``None``, encoding) is worth a thread hop."""
        return False
