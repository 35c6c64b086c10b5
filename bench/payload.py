"""The session every scenario carries: realistic, about one kilobyte as JSON.

A signed-in shopper: ids, a cart, a flash message and a CSRF token. Only JSON
types, so that every peer (Starlette and aiohttp-session serialize with
``json``) can carry exactly the same data.
"""

from __future__ import annotations

import copy
from typing import Any

_CART = [
    {"sku": f"SKU-{n:05d}", "name": f"Product number {n}", "qty": 1 + n % 3, "price": "19.90"}
    for n in range(9)
]

_SESSION: dict[str, Any] = {
    "user_id": 184467,
    "auth_id": "5f0c7a3e-1b8d-4a53-9d8e-2c6f4b1e9a07",
    "roles": ["customer", "newsletter"],
    "locale": "en_GB",
    "cart": _CART,
    "flash": {"level": "success", "text": "Your address was saved. Delivery in 2-3 days."},
    "csrf_token": "q8ZtN3v1XcR7yLmKpW2sJd9HfA6bUe0GiTo4rEn5YhC",
    "counter": 0,
}


def session_data() -> dict[str, Any]:
    """Return a fresh deep copy of the realistic session."""
    return copy.deepcopy(_SESSION)


def change(data: dict[str, Any]) -> None:
    """Apply the per-request change every write scenario makes: bump the counter."""
    data["counter"] = data.get("counter", 0) + 1
