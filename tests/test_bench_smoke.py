"""The benchmark harness runs end to end and records what it promises.

The whole quick mode, through ``python -m bench`` as ``make bench-quick``
calls it, into a temporary directory, with ``--window`` cutting every
measurement to a few hundredths of a second: every scenario, subject and row
still runs and is recorded (after the mode's own warm-up, each window stays
open, at most a second more, until every client has timed an operation),
only the figures get noisier. Only the shape of the output is
checked: timing figures vary by machine and are never asserted.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import codecs, report

from .once import once_per_session

ROOT = Path(__file__).resolve().parent.parent
# Seconds per measurement: long enough for loop-lag samples beside one client.
WINDOW = "0.02"

ROW_KEYS = {"scenario", "case", "subject", "family", "concurrency", "skipped", "note"}
FIGURE_KEYS = {
    "ops",
    "seconds",
    "ops_per_sec",
    "cpu_ops_per_sec",
    "p50_us",
    "p99_us",
    "lag",
    "ratio",
    "cpu_ratio",
    "baseline",
}
LAG_KEYS = {
    "samples",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "wall_p99_ms",
    "wall_max_ms",
    "ticker_p99_ms",
    "ticker_max_ms",
    "preemption_corrected",
}
TARGET_KEYS = {"id", "target", "goal", "measured", "ratio", "met", "detail"}


def _run_quick(out: Path) -> None:
    md = out / "BENCHMARKS.md"
    md.write_text(
        f"# Benchmarks\n\nHand-written method.\n\n{report.START}\nold\n{report.END}\n\nTail.\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--window",
            WINDOW,
            "--out",
            str(out),
            "--markdown",
            str(md),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "stdout.txt").write_text(proc.stdout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = once_per_session(tmp_path_factory, "bench", _run_quick)
    results = sorted(out.glob("*-quick.json"))
    assert len(results) == 1, list(out.iterdir())
    return json.loads(results[0].read_text()), out, (out / "stdout.txt").read_text()


def test_json_has_run_context(quick_run: tuple[dict, Path, str]) -> None:
    payload, _, _ = quick_run
    assert payload["mode"] == "quick"
    assert payload["settings"]["store_seconds"] == float(WINDOW)
    assert payload["schema"] == 1
    for key in ("platform", "python", "cpu", "cpus", "loadavg_start", "loadavg_end"):
        assert key in payload["machine"]
    for package in ("emmett", "emmett-core", "starlette", "starsessions", "aiohttp-session"):
        assert payload["versions"][package] != "missing"
    assert set(payload["idle_lag"]) == LAG_KEYS
    assert {t["id"] for t in payload["targets"]} >= {"modern-codec", "legacy-write", "lag"}
    for target in payload["targets"]:
        assert set(target) >= TARGET_KEYS
        assert target["met"] in (True, False, None)


def test_every_codec_subject_has_a_row_per_case(quick_run: tuple[dict, Path, str]) -> None:
    payload, _, _ = quick_run
    rows = [r for r in payload["rows"] if r["scenario"] == "codecs"]
    expected = {(name, case) for name, _, _ in codecs.factories() for case in codecs.CASES}
    assert {(r["subject"], r["case"]) for r in rows} == expected
    for row in rows:
        assert set(row) >= ROW_KEYS
        if row["skipped"] is None:
            assert set(row) >= FIGURE_KEYS
            assert set(row["lag"]) == LAG_KEYS
            assert row["ops"] > 0
            assert row["baseline"] == "emmett cookies"


def test_every_scenario_measured_asess_and_a_peer(quick_run: tuple[dict, Path, str]) -> None:
    payload, _, _ = quick_run
    for scenario in ("codecs", "cycle", "stores"):
        measured = [
            r for r in payload["rows"] if r["scenario"] == scenario and r["skipped"] is None
        ]
        assert any(r["family"] == "asess" for r in measured), scenario
        assert any(r["family"] != "asess" for r in measured), scenario
        assert all(r["ops"] > 0 for r in measured), scenario


def test_peers_were_measured_not_skipped(quick_run: tuple[dict, Path, str]) -> None:
    payload, _, _ = quick_run
    measured = {r["subject"] for r in payload["rows"] if r["skipped"] is None}
    assert {
        "emmett cookies",
        "starlette SessionMiddleware",
        "aiohttp-session Fernet",
        "aiohttp-session Fernet cookie (aiohttp app)",
        "asess.aiohttp cookies modern (aiohttp app)",
    } <= measured
    emmett = [r for r in payload["rows"] if r["subject"] == "emmett cookies"]
    assert all(r["ratio"] == 1.0 for r in emmett)


def test_outputs_written_and_markdown_section_replaced(quick_run: tuple[dict, Path, str]) -> None:
    payload, out, stdout = quick_run
    assert (out / "quick.png").stat().st_size > 0
    assert payload["chart"] == "quick.png"
    assert "Codecs, session changes every request" in stdout
    text = (out / "BENCHMARKS.md").read_text()
    assert text.startswith("# Benchmarks\n\nHand-written method.")
    assert text.rstrip().endswith("Tail.")
    assert "\nold\n" not in text
    assert text.count(report.START) == 1 and text.count(report.END) == 1
    assert "### Targets" in text


def test_overhead_is_per_request_time_above_the_bare_app() -> None:
    def row(subject: str, c: int, rate: float, cpu_rate: float) -> dict:
        return {
            "scenario": "cycle",
            "case": "counter",
            "subject": subject,
            "concurrency": c,
            "ops_per_sec": rate,
            "cpu_ops_per_sec": cpu_rate,
        }

    rows = [
        row(report.BARE, 1, 50_000, 50_000),  # 20 us a request
        row(report.OVERHEAD_BASE, 1, 20_000, 25_000),  # 50 us wall, 40 us CPU
        row("asess memory", 1, 25_000, 40_000),  # 40 us wall, 25 us CPU
    ]
    report.add_overhead(rows)
    bare, starlette, ours = rows
    assert "overhead_us" not in bare
    assert starlette["overhead_us"] == 30.0 and starlette["cpu_overhead_us"] == 20.0
    assert ours["overhead_us"] == 20.0 and ours["cpu_overhead_us"] == 5.0
    assert ours["overhead_ratio"] == 0.25 and starlette["overhead_ratio"] == 1.0


def test_cycle_overhead_and_memory_are_reported(quick_run: tuple[dict, Path, str]) -> None:
    payload, _, _ = quick_run
    cycle = [r for r in payload["rows"] if r["scenario"] == "cycle" and r["skipped"] is None]
    assert any(r["subject"] == report.BARE for r in cycle)
    starlette = [r for r in cycle if r["subject"] == report.OVERHEAD_BASE]
    assert starlette and all(r["overhead_ratio"] == 1.0 for r in starlette)
    stores = [r for r in payload["rows"] if r["scenario"] == "stores" and r["skipped"] is None]
    assert all(r["peak_rss_mb"] > 0 for r in stores)
    (live,) = [r for r in payload["rows"] if r["scenario"] == "memory"]
    assert live["rss_per_10k_mb"] is not None
    ids = {t["id"] for t in payload["targets"]}
    assert {"memory-overhead", "modern-overhead", "redis-plain-1", "files-1000"} <= ids
    assert {"memory-live", "memory-peak"} <= ids


def test_a_window_held_open_for_min_ops_reports_its_real_length() -> None:
    from bench.runner import measure_clients

    async def slow() -> None:
        await asyncio.sleep(0.03)

    async def run(min_ops: int) -> tuple[int, float]:
        m = await measure_clients([slow, slow], 0.005, 0.001, min_ops)
        return m.ops, m.seconds

    # Each operation outlasts the window: without min_ops none is timed in it.
    assert asyncio.run(run(0)) == (0, 0.005)
    ops, seconds = asyncio.run(run(1))
    # Held open until each of the two clients timed one: both were in flight.
    assert ops == 2 and seconds > 0.005


def test_a_window_is_held_open_no_longer_than_the_hold_limit() -> None:
    """A subject too slow to finish one operation within the hold limit still
    reads 0 operations with min_ops: the smoke checks can fail."""
    from bench.runner import HOLD_LIMIT_SECONDS, measure_clients

    async def too_slow() -> None:
        await asyncio.sleep(HOLD_LIMIT_SECONDS + 0.05)

    m = asyncio.run(measure_clients([too_slow], 0.005, 0.001, 1))
    assert m.ops == 0
