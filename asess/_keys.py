"""Secret keys: a value type that never shows itself, and the rotation ring.

A ``KeyRing`` holds one or more secrets. The first one signs or encrypts new
tokens; every one of them is tried when reading, so keys can be rotated by
putting the new key first and keeping the old ones until their cookies expire.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Union

from ._exceptions import ConfigurationError

KeyInput = Union[str, bytes, "Secret", Sequence[Union[str, bytes, "Secret"]]]


class Secret:
    """Bytes that stay out of ``repr``, logs and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if not raw:
            raise ConfigurationError("the session key is empty: pass a long random secret")
        self._value = raw

    @property
    def value(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class KeyRing:
    """An ordered, non-empty list of secrets: ``current`` encrypts, all decrypt."""

    __slots__ = ("_secrets",)

    def __init__(self, keys: KeyInput) -> None:
        items: Sequence[str | bytes | Secret]
        items = [keys] if isinstance(keys, (str, bytes, Secret)) else list(keys)
        if not items:
            raise ConfigurationError("no session key given: pass a secret or a list of secrets")
        self._secrets = tuple(k if isinstance(k, Secret) else Secret(k) for k in items)

    @property
    def current(self) -> Secret:
        return self._secrets[0]

    def __iter__(self) -> Iterator[Secret]:
        return iter(self._secrets)

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._secrets)} keys)"
