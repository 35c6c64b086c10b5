"""Type aliases shared across the package: ASGI's callables, and the option values.

The ASGI aliases are Starlette's shapes, kept here so no module imports a
framework for them. ``SameSite`` and ``EncryptionMode`` are the values the
managers accept, as ``Literal`` types so a type checker catches a typo that
would otherwise surface as a ``ConfigurationError`` at startup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The cookie's SameSite attribute; the lowercase spellings are accepted too.
SameSite = Literal["Lax", "Strict", "None", "lax", "strict", "none"]
#: The cookie token format: Emmett's own (``legacy``) or asess's AES-GCM one (``modern``).
EncryptionMode = Literal["legacy", "modern"]
