"""Scenario 2: the full request cycle in process, the spec's counter page.

One Starlette app, called through ASGI directly (no sockets), with asess's
middleware on each backend, Starlette's ``SessionMiddleware`` and starsessions
(cookie and Redis stores) in front of it. Emmett's own managers run on an
Emmett app serving the same page, labelled as such: the framework differs, so
those rows say what an Emmett user gets today rather than isolate the session
layer. aiohttp-session and asess.aiohttp serve the same page from one aiohttp
app over loopback TCP (:mod:`bench.aiohttp_apps`). One client (with the
loop-lag ticker beside it), then many.

The first row is the same app with no session layer at all (the handler's
``request.session`` is a plain dict per client): every other row's *session
overhead*, microseconds per request above it, is what that session layer
costs, and the targets compare those overheads with Starlette's.
"""

from __future__ import annotations

from collections.abc import Callable

from . import aiohttp_apps, apps, ours, peers
from .runner import Env, Row, Task, Unavailable
from .subjects import ServiceSubject, measure_service

SCENARIO = "cycle"
CASE = "counter"
BARE = "bare app (no session layer)"

Factory = tuple[str, str, Callable[[], ServiceSubject]]


def _needs_redis(env: Env, make: Callable[[str], ServiceSubject]) -> Callable[[], ServiceSubject]:
    def build() -> ServiceSubject:
        if env.redis_url is None:
            raise Unavailable(env.redis_missing or "no Redis")
        return make(env.redis_url)

    return build


def factories(env: Env) -> list[Factory]:
    return [
        (BARE, "plain", apps.BareSubject),
        ("asess cookies legacy", "asess", lambda: ours.cookie_app("legacy")),
        ("asess cookies modern", "asess", lambda: ours.cookie_app("modern")),
        ("asess memory", "asess", ours.memory_app),
        ("asess files", "asess", ours.files_app),
        ("asess files fsync=True", "asess", lambda: ours.files_app(fsync=True)),
        ("asess files inline_io=True", "asess", lambda: ours.files_app(inline_io=True)),
        ("asess redis", "asess", _needs_redis(env, ours.redis_app)),
        ("starlette SessionMiddleware", "starlette", peers.starlette_cookie_app),
        ("starsessions cookie", "starsessions", lambda: peers.starsessions_app(None)),
        ("starsessions redis", "starsessions", _needs_redis(env, peers.starsessions_app)),
        ("emmett cookies (Emmett app)", "emmett", lambda: peers.emmett_app("cookies")),
        ("emmett files (Emmett app)", "emmett", lambda: peers.emmett_app("files")),
        (
            "aiohttp-session Fernet cookie (aiohttp app)",
            "aiohttp-session",
            lambda: aiohttp_apps.aiohttp_session_app(None),
        ),
        (
            "asess.aiohttp cookies modern (aiohttp app)",
            "asess",
            lambda: aiohttp_apps.asess_aiohttp_app(None),
        ),
        (
            "aiohttp-session redis (aiohttp app)",
            "aiohttp-session",
            _needs_redis(env, aiohttp_apps.aiohttp_session_app),
        ),
        (
            "asess.aiohttp redis (aiohttp app)",
            "asess",
            _needs_redis(env, aiohttp_apps.asess_aiohttp_app),
        ),
        (
            "emmett redis (Emmett app)",
            "emmett",
            _needs_redis(env, lambda url: peers.emmett_app("redis", url)),
        ),
    ]


def tasks(env: Env) -> list[Task]:
    s = env.settings
    out = []
    for name, family, make in factories(env):

        async def run(
            name: str = name, family: str = family, make: Callable[[], ServiceSubject] = make
        ) -> list[Row]:
            return await measure_service(
                make,
                (SCENARIO, CASE),
                name,
                family,
                s.cycle_concurrency,
                s.cycle_seconds,
                s.warmup_fraction,
                s.min_ops,
            )

        out.append(Task(f"cycle: {name}", run))
    return out
