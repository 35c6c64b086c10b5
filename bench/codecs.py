"""Scenario 1: cookie codecs, encode + decode of a realistic ~1 kB session.

Two variants. *write*: the counter changes on every request, so each codec
decodes the browser's token, changes it and encodes a new one. *read-mostly*:
the request only reads; each codec does what its middleware does then (some
re-encode anyway, asess re-sends nothing). Tokens chain from one request to the
next as one browser's would. Throughput is timed in a plain loop (pure CPU);
the loop-lag figure comes from a second, async run where each codec is called
the way its middleware calls it on the event loop (asess hands key derivation
to a thread, the peers run inline).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from . import ours, peers
from .payload import session_data
from .runner import Env, Row, Task, Unavailable, measure_clients, measure_sync
from .subjects import CodecSubject

SCENARIO = "codecs"
CASES = ("write", "read-mostly")

Factory = tuple[str, str, Callable[[], CodecSubject]]


def factories() -> list[Factory]:
    return [
        ("asess legacy", "asess", ours.legacy_codec),
        ("asess modern", "asess", ours.modern_codec),
        ("emmett cookies", "emmett", peers.EmmettCodec),
        ("starlette SessionMiddleware", "starlette", peers.StarletteCodec),
        ("aiohttp-session Fernet", "aiohttp-session", peers.AiohttpCodec),
        ("starsessions cookie", "starsessions", peers.StarsessionsCodec),
        ("litestar cookie AES-GCM", "litestar", peers.LitestarCodec),
    ]


async def _measure(env: Env, name: str, family: str, make: Callable[[], CodecSubject]) -> list[Row]:
    s = env.settings
    try:
        subject = make()
    except (Unavailable, ImportError) as exc:
        return [Row(SCENARIO, case, name, family, 1, skipped=str(exc)) for case in CASES]
    rows = []
    for case in CASES:
        token = subject.issue(session_data())
        sync_op = subject.write if case == "write" else subject.read
        async_op = subject.write_async if case == "write" else subject.read_async

        def step_sync(sync_op: Callable[[str], str] = sync_op) -> None:
            nonlocal token
            token = sync_op(token)

        measurement = measure_sync(step_sync, s.codec_seconds, s.codec_seconds * s.warmup_fraction)

        async def step_async(async_op: Callable[[str], Awaitable[str]] = async_op) -> None:
            nonlocal token
            token = await async_op(token)

        lagged = await measure_clients(
            [step_async], s.lag_seconds, s.lag_seconds * s.warmup_fraction, s.min_ops
        )
        measurement.lag = lagged.lag
        rows.append(
            Row(
                SCENARIO,
                case,
                name,
                family,
                1,
                measurement,
                note=subject.note,
                extra={"token_bytes": len(token)},
            )
        )
    return rows


def tasks(env: Env) -> list[Task]:
    out = []
    for name, family, make in factories():

        async def run(
            name: str = name, family: str = family, make: Callable[[], CodecSubject] = make
        ) -> list[Row]:
            return await _measure(env, name, family, make)

        out.append(Task(f"codecs: {name}", run))
    return out
