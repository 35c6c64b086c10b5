"""``python -m bench.profile``: where one subject's time goes, under cProfile.

Runs a single client of one subject (as the bench measures it) for a few
seconds under :mod:`cProfile` and prints the functions with the most own time
and the most cumulative time. BENCHMARKS.md quotes this output wherever a
target is missed, so the reason is shown rather than asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from typing import Any

from . import codecs, cycle, looplag, stores
from .proxy import delayed
from .redis_server import clean, redis_url
from .runner import Env, Settings, Unavailable
from .subjects import CodecSubject, ServiceSubject


def _find(env: Env, scenario: str, case: str, subject: str) -> Any:
    found: list[tuple[str, str, Any]] = []
    if scenario == "codecs":
        found = [(c, name, make) for name, _, make in codecs.factories() for c in codecs.CASES]
    elif scenario == "cycle":
        found = [(cycle.CASE, name, make) for name, _, make in cycle.factories(env)]
    else:
        found = [(c, name, make) for c, name, _, make in stores.factories(env)]
    for c, name, make in found:
        if (c, name) == (case, subject):
            return make
    raise SystemExit(f"no subject {subject!r} in {scenario}/{case}")


async def _drive(
    made: Any, case: str, seconds: float, profiler: cProfile.Profile, clients: int
) -> int:
    ops = 0
    if isinstance(made, CodecSubject):
        from .payload import session_data

        token = made.issue(session_data())
        op = made.write if case == "write" else made.read
        profiler.enable()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            token = op(token)
            ops += 1
        profiler.disable()
        return ops
    subject: ServiceSubject = made
    await subject.open()
    try:
        steps = [await subject.client(i) for i in range(clients)]
        for step in steps:  # warm caches and connections outside the profile
            await step()
        deadline = 0.0

        async def run(step: Any) -> None:
            nonlocal ops
            while time.perf_counter() < deadline:
                await step()
                ops += 1
                await asyncio.sleep(0)

        profiler.enable()
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(run(step) for step in steps))
        profiler.disable()
    finally:
        await subject.close()
    return ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=("codecs", "cycle", "stores"))
    parser.add_argument("case", help="write / read-mostly, counter, files / redis / redis+1ms")
    parser.add_argument("subject", help='e.g. "asess cookies modern"')
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients (services)")
    args = parser.parse_args(argv)
    env = Env(Settings.full())
    profiler = cProfile.Profile()
    with redis_url() as url, delayed(url) as proxied:
        env.redis_url, env.proxied_url = url, proxied
        try:
            made = _find(env, args.scenario, args.case, args.subject)()
        except Unavailable as exc:
            raise SystemExit(f"unavailable: {exc}") from None
        ops = looplag.run(_drive(made, args.case, args.seconds, profiler, args.clients))
        clean(url)
    print(
        f"{args.scenario}/{args.case}/{args.subject} x{args.clients}: "
        f"{ops} ops in {args.seconds:g}s under cProfile"
    )
    for key in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).strip_dirs().sort_stats(key).print_stats(args.top)
        print(f"\n--- by {key} ---")
        print(buffer.getvalue().split("\n\n", 2)[-1].rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
