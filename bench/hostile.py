"""Scenario 4: what a request carrying a garbage token costs, beside a normal one.

A client can send any cookie, so the CPU a server spends on a token it will
refuse is a lever for exhausting it. Each subject is a cookie manager (mode,
``accept_emmett_tokens``, one key or three) driven through its lifecycle the
way the middleware drives it: *normal* carries a valid token and reads the
session; *garbage* carries a fresh, well-shaped random token every request
(``salt:sig:ct`` for legacy, ``as1.`` plus random bytes for modern), which
gets a fresh session. The figure is process CPU per request (PBKDF2 runs in
an executor thread, so thread time alone would miss it).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

from .runner import Env, Row, Task, measure_clients

SCENARIO = "hostile"
CASES = ("normal", "garbage")
SECRET = "bench-secret-key-0123456789abcdef0123456789abcdef"
COOKIE = "bench_session"


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(os.urandom(n)).decode("ascii")


def garbage_legacy() -> str:
    return f"{_b64(32)}:{_b64(32)}:{_b64(96)}"


def garbage_modern() -> str:
    return "as1." + base64.urlsafe_b64encode(os.urandom(120)).rstrip(b"=").decode("ascii")


Subject = tuple[str, str, dict[str, Any], Callable[[], str]]


def subjects() -> list[Subject]:
    three = [SECRET, "old-key-one-0123456789abcdef", "old-key-two-0123456789abcdef"]
    return [
        ("legacy, accept_emmett_tokens=True, 1 key", "legacy", {"key": SECRET}, garbage_legacy),
        ("legacy, accept_emmett_tokens=True, 3 keys", "legacy", {"key": three}, garbage_legacy),
        (
            "legacy, accept_emmett_tokens=False, 3 keys",
            "legacy",
            {"key": three, "accept_emmett_tokens": False},
            garbage_legacy,
        ),
        ("modern, 3 keys", "modern", {"key": three}, garbage_modern),
    ]


async def _valid_token(manager: Any) -> str:
    lifecycle = manager.lifecycle(None)
    async with lifecycle as session:
        session["user"] = {"id": 7, "name": "bench", "roles": ["a", "b"]}
        line = (await lifecycle.commit())[0]
    value: str = line.partition("=")[2].partition(";")[0]
    return value


async def _measure(env: Env, name: str, mode: str, kw: dict[str, Any], junk: Any) -> list[Row]:
    import asess

    s = env.settings
    manager = asess.SessionManager.cookies(
        expire=3600, cookie_name=COOKIE, encryption_mode=mode, **kw
    )
    valid = await _valid_token(manager)
    rows = []
    for case in CASES:

        async def step(case: str = case) -> None:
            token = valid if case == "normal" else junk()
            lifecycle = manager.lifecycle(f"{COOKIE}={token}")
            async with lifecycle as session:
                session.get("user")
                await lifecycle.commit()

        m = await measure_clients(
            [step], s.codec_seconds, s.codec_seconds * s.warmup_fraction, s.min_ops
        )
        cpu_us = 1e6 / m.cpu_ops_per_sec if m.cpu_ops_per_sec else None
        note = f"{cpu_us:,.0f} us CPU per request" if cpu_us is not None else ""
        extra = {"cpu_us_per_request": round(cpu_us, 1) if cpu_us is not None else None}
        rows.append(Row(SCENARIO, case, name, "asess", 1, m, note=note, extra=extra))
    return rows


def tasks(env: Env) -> list[Task]:
    out = []
    for name, mode, kw, junk in subjects():

        async def run(
            name: str = name, mode: str = mode, kw: dict[str, Any] = kw, junk: Any = junk
        ) -> list[Row]:
            return await _measure(env, name, mode, kw, junk)

        out.append(Task(f"hostile: {name}", run))
    return out
