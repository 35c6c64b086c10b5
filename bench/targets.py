"""The targets the issue sets, checked against one run's rows (reported, never asserted).

Each target yields a verdict: ``met`` is true or false when the rows it needs
were measured, ``None`` when a row was skipped, so a missing figure is never
mistaken for a pass.
"""

from __future__ import annotations

from typing import Any

LAG_GOAL_MS = 1.0
#: The files row the file targets judge: the store at its default settings.
FILES_DEFAULT = "asess files"


def _rate(
    rows: list[dict[str, Any]], scenario: str, case: str, subject: str, c: int, cpu: bool
) -> float | None:
    """The CPU-time rate (``cpu``) or the wall-clock rate of one row; None if skipped."""
    key = (scenario, case, subject, c)
    for r in rows:
        if (r["scenario"], r["case"], r["subject"], r["concurrency"]) == key:
            if r.get("skipped"):
                return None
            return r.get("cpu_ops_per_sec") if cpu else r.get("ops_per_sec")
    return None


def _ratio_target(
    rows: list[dict[str, Any]],
    tid: str,
    text: str,
    where: tuple[str, str, int],
    ours: str,
    theirs: str,
    goal: float,
) -> dict[str, Any]:
    scenario, case, c = where
    # Codecs are pure CPU work: compared per CPU-second, immune to other tenants.
    cpu = scenario == "codecs"
    a = _rate(rows, scenario, case, ours, c, cpu)
    b = _rate(rows, scenario, case, theirs, c, cpu)
    ratio = a / b if a is not None and b else None
    unit = " per CPU-s" if cpu else "/s"
    return {
        "id": tid,
        "target": text,
        "goal": f">= {goal:g}x",
        "measured": f"{ratio:.1f}x" if ratio is not None else "not measured",
        "ratio": round(ratio, 3) if ratio is not None else None,
        "met": (ratio >= goal) if ratio is not None else None,
        "detail": (
            f"{ours} {a:,.0f}{unit} vs {theirs} {b:,.0f}{unit}" if a and b else "a row was skipped"
        ),
    }


def _lag_target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lagged = [r for r in rows if r["family"] == "asess" and r.get("lag") and not r.get("skipped")]
    worst = max(lagged, key=lambda r: r["lag"]["p99_ms"], default=None)
    offenders = [
        f"{r['scenario']}/{r['case']}/{r['subject']} {r['lag']['p99_ms']:.2f} ms"
        for r in lagged
        if r["lag"]["p99_ms"] > LAG_GOAL_MS
    ]
    return {
        "id": "lag",
        "target": "longest loop stretch under asess, p99, every scenario",
        "goal": f"<= {LAG_GOAL_MS:g} ms",
        "measured": f"{worst['lag']['p99_ms']:.2f} ms worst" if worst else "not measured",
        "ratio": None,
        "met": (not offenders) if worst else None,
        "detail": ("over: " + "; ".join(offenders))
        if offenders
        else (f"worst: {worst['scenario']}/{worst['case']}/{worst['subject']}" if worst else ""),
    }


def _ahead_target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = [
        ("asess cookies legacy", "starlette SessionMiddleware"),
        ("asess cookies legacy", "starsessions cookie"),
        ("asess cookies modern", "starlette SessionMiddleware"),
        ("asess cookies modern", "starsessions cookie"),
        ("asess redis", "starsessions redis"),
    ]
    levels = sorted({r["concurrency"] for r in rows if r["scenario"] == "cycle"})
    ratios: list[tuple[float, str]] = []
    for ours, theirs in pairs:
        for c in levels:
            for cpu in (False, True):
                a = _rate(rows, "cycle", "counter", ours, c, cpu)
                b = _rate(rows, "cycle", "counter", theirs, c, cpu)
                if a is not None and b:
                    how = "per CPU-s" if cpu else "wall"
                    ratios.append((a / b, f"{ours} vs {theirs} @{c} ({how})"))
    worst = min(ratios, default=None)
    return {
        "id": "cycle",
        "target": "full cycle ahead of Starlette SessionMiddleware and starsessions",
        "goal": "> 1x every pair, wall and CPU",
        "measured": f"{worst[0]:.2f}x lowest" if worst else "not measured",
        "ratio": round(worst[0], 3) if worst else None,
        "met": (worst[0] > 1.0) if worst else None,
        "detail": f"lowest: {worst[1]}" if worst else "rows skipped",
    }


def _overhead_target(
    rows: list[dict[str, Any]], tid: str, subject: str, goal: float
) -> dict[str, Any]:
    """A cycle subject's session overhead over Starlette's, worst concurrency level."""
    found = [
        r
        for r in rows
        if (r["scenario"], r["subject"]) == ("cycle", subject) and not r.get("skipped")
    ]
    judged = [r for r in found if r.get("overhead_ratio") is not None]
    worst = max(judged, key=lambda r: r["overhead_ratio"], default=None)
    detail = "; ".join(
        f"@{r['concurrency']}: {r['cpu_overhead_us']:.1f} us CPU over the bare app "
        f"({r['overhead_ratio']:.2f}x)"
        for r in judged
    )
    return {
        "id": tid,
        "target": f"{subject}: session overhead vs Starlette SessionMiddleware's "
        "(CPU, worst level)",
        "goal": f"<= {goal:g}x",
        "measured": f"{worst['overhead_ratio']:.2f}x" if worst else "not measured",
        "ratio": worst["overhead_ratio"] if worst else None,
        "met": (worst["overhead_ratio"] <= goal) if worst else None,
        "detail": detail or "a row was skipped",
    }


def _files_lag_target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    row = next(
        (
            r
            for r in rows
            if (r["scenario"], r["case"], r["subject"], r["concurrency"])
            == ("stores", "files", FILES_DEFAULT, 1)
            and r.get("lag")
        ),
        None,
    )
    p99 = row["lag"]["p99_ms"] if row else None
    return {
        "id": "files-lag",
        "target": "files store (default settings): longest loop stretch p99, 1 client",
        "goal": f"<= {LAG_GOAL_MS:g} ms",
        "measured": f"{p99:.2f} ms" if p99 is not None else "not measured",
        "ratio": None,
        "met": (p99 <= LAG_GOAL_MS) if p99 is not None else None,
        "detail": f"max {row['lag']['max_ms']:.2f} ms" if row else "a row was skipped",
    }


def _memory_report(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resident memory figures: reported, not judged (the issue sets no bound)."""
    live = next((r for r in rows if r["scenario"] == "memory" and not r.get("skipped")), None)
    per_10k = live.get("rss_per_10k_mb") if live else None
    peaks = [
        f"{r['case']}/{r['subject']} {r['peak_rss_mb']:.0f} MB (from {r['rss_start_mb']:.0f})"
        for r in rows
        if r["scenario"] == "stores" and r["concurrency"] == 1000 and r.get("peak_rss_mb")
    ]
    return [
        {
            "id": "memory-live",
            "target": "resident memory per 10,000 live sessions (~1 kB each), memory store",
            "goal": "reported",
            "measured": f"{per_10k:.1f} MB" if per_10k is not None else "not measured",
            "ratio": None,
            "met": None,
            "reported": per_10k is not None,
            "detail": (
                f"RSS {live['rss_before_mb']} MB before, {live['rss_after_mb']} MB after"
                if live
                else "not measured"
            ),
        },
        {
            "id": "memory-peak",
            "target": "peak RSS of the process per store scenario at 1000 clients",
            "goal": "reported",
            "measured": f"{len(peaks)} rows" if peaks else "not measured",
            "ratio": None,
            "met": None,
            "reported": bool(peaks),
            "detail": "; ".join(peaks) or "not measured",
        },
    ]


def evaluate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        _ratio_target(
            rows,
            "modern-codec",
            "modern codec vs Emmett's codec (write)",
            ("codecs", "write", 1),
            "asess modern",
            "emmett cookies",
            30,
        ),
        _ratio_target(
            rows,
            "legacy-write",
            "legacy codec vs Emmett, counter changes every request",
            ("codecs", "write", 1),
            "asess legacy",
            "emmett cookies",
            1.9,
        ),
        _ratio_target(
            rows,
            "legacy-read",
            "legacy codec vs Emmett, read-mostly",
            ("codecs", "read-mostly", 1),
            "asess legacy",
            "emmett cookies",
            20,
        ),
        _ratio_target(
            rows,
            "redis-plain",
            "Redis store vs plain redis.asyncio loop, 100 clients",
            ("stores", "redis", 100),
            "asess redis",
            "redis.asyncio GETEX+SET",
            3,
        ),
        _ratio_target(
            rows,
            "postgres-plain",
            "PostgreSQL store vs plain asyncpg loop, 100 clients",
            ("stores", "postgres", 100),
            "asess postgres",
            "asyncpg UPDATE+UPDATE",
            1,
        ),
        _ratio_target(
            rows,
            "redis-plain-1",
            "Redis store vs plain redis.asyncio loop, 1 client",
            ("stores", "redis", 1),
            "asess redis",
            "redis.asyncio GETEX+SET",
            1.0,
        ),
        *(
            _ratio_target(
                rows,
                f"files-{c}",
                f"files store (default settings) vs Emmett's file pipe, {c} client"
                + ("s" if c > 1 else ""),
                ("stores", "files", c),
                FILES_DEFAULT,
                "emmett files pipe",
                1.0 if c == 1 else 1.5,
            )
            for c in (1, 10, 100, 1000)
        ),
        # The same goals with reads and saves on the loop (opt-in), for comparison.
        *(
            _ratio_target(
                rows,
                f"files-inline-{c}",
                f"files store with inline_io=True vs Emmett's file pipe, {c} client"
                + ("s" if c > 1 else ""),
                ("stores", "files", c),
                "asess files inline_io=True",
                "emmett files pipe",
                1.0 if c == 1 else 1.5,
            )
            for c in (1, 10, 100, 1000)
        ),
        _files_lag_target(rows),
        _overhead_target(rows, "memory-overhead", "asess memory", 0.5),
        _overhead_target(rows, "modern-overhead", "asess cookies modern", 0.8),
        _ratio_target(
            rows,
            "redis-proxy",
            "Redis store vs Emmett's Redis pipe, 100 clients, +1 ms",
            ("stores", "redis+1ms", 100),
            "asess redis",
            "emmett redis pipe",
            20,
        ),
        _lag_target(rows),
        _ahead_target(rows),
        *_memory_report(rows),
    ]
