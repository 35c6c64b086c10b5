"""``python -m bench [--quick]``: run the scenarios, print, record, chart.

Full mode writes ``bench/results/<timestamp>.json``, ``bench/results/latest.png``
and regenerates the results section of ``BENCHMARKS.md``. Quick mode runs
every code path briefly (under a minute) and writes its JSON and chart to a
temporary directory unless ``--out`` says otherwise, so smoke runs leave the
repository untouched. ``--window`` shortens every measurement further, for a
check that every row still runs rather than for figures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import codecs, cycle, hostile, looplag, machine, report, stores, targets
from .postgres_server import postgres_dsn
from .progress import Progress
from .proxy import delayed
from .redis_server import clean, redis_url
from .runner import Env, Row, Settings, Task, Unavailable, best_of

SCENARIOS = {"codecs": codecs, "cycle": cycle, "stores": stores, "hostile": hostile}
ROOT = Path(__file__).resolve().parent.parent


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: everything, briefly")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--case",
        action="append",
        choices=("files", "redis", "postgres", "redis+1ms"),
        help="with the stores scenario: run only this store case (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="directory for the JSON and the chart")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="file whose results section to regenerate "
        "(default: BENCHMARKS.md in full mode, none in quick mode)",
    )
    parser.add_argument("--no-markdown", action="store_true", help="do not touch any markdown")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument(
        "--rounds", type=int, help="measure everything this many times, keep the best (full: 2)"
    )
    parser.add_argument(
        "--window",
        type=float,
        metavar="SECONDS",
        help="time every measurement for SECONDS instead of the mode's windows (warm-up "
        "as long as the mode's), holding a window open (at most 1 s more) until every client has "
        "timed an operation: checks that every row runs, at a fraction of the time (the test "
        "suite's smoke run); figures this short mean little",
    )
    args = parser.parse_args(argv)
    if args.window is not None and not args.window > 0:
        parser.error("--window must be a positive number of seconds")
    return args


@contextlib.contextmanager
def _resources(env: Env, want_redis: bool, want_postgres: bool = False) -> Iterator[Env]:
    """Start Redis and the 1 ms proxy, find PostgreSQL, when a scenario needs them."""
    with contextlib.ExitStack() as stack:
        if want_postgres:
            try:
                env.postgres_dsn = stack.enter_context(postgres_dsn())
            except Unavailable as exc:
                env.postgres_missing = str(exc)
        if want_redis:
            try:
                env.redis_url = stack.enter_context(redis_url())
            except Unavailable as exc:
                env.redis_missing = str(exc)
            if env.redis_url is not None:
                stack.callback(clean, env.redis_url)
                try:
                    env.proxied_url = stack.enter_context(delayed(env.redis_url, 1.0))
                except Unavailable as exc:
                    env.proxy_missing = str(exc)
        yield env


async def _run(tasks: list[Task], progress: Progress, lag_floor_s: float) -> tuple[list[Row], Any]:
    rows: list[Row] = []
    progress.start("idle loop-lag floor")
    floor = await looplag.idle_baseline(lag_floor_s)
    for task in tasks:
        progress.start(task.label)
        rows.extend(await task.run())
        progress.advance()
    return rows, floor


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    settings = Settings.smoke() if args.quick else Settings.full()
    if args.rounds is not None:
        settings = dataclasses.replace(settings, rounds=max(1, args.rounds))
    if args.window is not None:
        w = args.window
        # The warm-up stays as long as the mode's longest: it is where clients
        # open their connections, and a shorter one leaves that inside the window.
        warmup = settings.warmup_fraction * max(settings.cycle_seconds, settings.store_seconds)
        settings = dataclasses.replace(
            settings,
            codec_seconds=w,
            lag_seconds=w,
            cycle_seconds=w,
            store_seconds=w,
            warmup_fraction=warmup / w,
            min_ops=1,
        )
    floor_s = args.window if args.window is not None else 0.1 if settings.quick else 0.5
    chosen = args.only or list(SCENARIOS)
    started = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    info = machine.machine()
    env = Env(settings)
    with _resources(
        env,
        want_redis=any(s in ("cycle", "stores") for s in chosen),
        want_postgres="stores" in chosen,
    ):
        one_round = [t for name in chosen for t in SCENARIOS[name].tasks(env)]
        if args.case:
            keep = tuple(f"stores {case}:" for case in args.case)
            one_round = [
                t
                for t in one_round
                if not t.label.startswith("stores ") or t.label.startswith(keep)
            ]
        # Rounds run back to back over every subject, so a burst of load from
        # elsewhere hits one round of everything rather than all rounds of one.
        tasks = [
            Task(f"round {n + 1}/{settings.rounds} {t.label}", t.run)
            for n in range(settings.rounds)
            for t in one_round
        ]
        progress = Progress(len(tasks))
        rows, floor = looplag.run(_run(tasks, progress, floor_s))
        progress.close()
        versions = machine.versions(env.redis_url)
    info["loadavg_end"] = machine.loadavg()
    row_dicts = [r.as_dict() for r in best_of(rows)]
    report.add_ratios(row_dicts)
    report.add_overhead(row_dicts)
    payload: dict[str, Any] = {
        "schema": 1,
        "timestamp": stamp,
        "mode": "quick" if settings.quick else "full",
        "duration_s": round(time.time() - started, 1),
        "machine": info,
        "versions": versions,
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "idle_lag": floor.as_dict(),
        "redis": {
            "available": env.redis_url is not None,
            "missing": env.redis_missing,
            "proxy": env.proxied_url is not None,
        },
        "postgres": {"available": env.postgres_dsn is not None, "missing": env.postgres_missing},
        "targets": targets.evaluate(row_dicts),
        "rows": row_dicts,
    }
    print(report.table(row_dicts))
    print(report.targets_table(payload["targets"]))

    out = args.out or (
        Path(tempfile.gettempdir()) / "asess-bench"
        if settings.quick
        else ROOT / "bench" / "results"
    )
    json_name = f"{stamp}{'-quick' if settings.quick else ''}.json"
    json_path = out / json_name
    chart_path = out / ("quick.png" if settings.quick else "latest.png")
    chart_ok = False if args.no_chart else report.chart(chart_path, row_dicts)
    payload["chart"] = chart_path.name if chart_ok else None
    report.write_json(json_path, payload)
    print(f"\nJSON: {json_path}" + (f"\nchart: {chart_path}" if chart_ok else ""))

    md = args.markdown or (None if settings.quick else ROOT / "BENCHMARKS.md")
    if md is not None and not args.no_markdown:
        rel_chart = "bench/results/latest.png" if chart_ok and not settings.quick else None
        report.update_markdown(md, report.markdown_section(payload, rel_chart, json_name))
        print(f"markdown: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
