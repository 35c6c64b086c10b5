"""Who is logged in, read the way Emmett's Auth keeps it: ``session.auth.user.id``.

Emmett's ``Auth.login_user`` stores ``session.auth = sdict(user=<row>, ...)``
and logging out deletes ``session.auth``; the Emmett adapter's server-side
factories pass this function as ``user_key``, so an Emmett app gets the
per-user session index ("your devices", log out other devices) with no
configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def emmett_auth_user(data: Mapping[str, Any]) -> Any:
    """The logged-in user's id in Emmett Auth's session layout, or None."""
    auth = data.get("auth")
    user = auth.get("user") if isinstance(auth, Mapping) else None
    if isinstance(user, Mapping):
        return user.get("id")
    return getattr(user, "id", None)
