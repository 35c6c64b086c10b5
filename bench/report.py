"""Turning rows into what people read: a table, the JSON record, BENCHMARKS.md, a chart.

Every row gets a ratio against one baseline measured in the same run (Emmett's
codec, Starlette's middleware, Emmett's file pipe, the plain Redis and
asyncpg loops, Emmett's Redis pipe behind the proxy) at the same concurrency. The markdown
section between the ``bench:start`` / ``bench:end`` markers of BENCHMARKS.md is
regenerated; the prose around it is left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BASELINES: dict[tuple[str, str], str] = {
    ("codecs", "write"): "emmett cookies",
    ("codecs", "read-mostly"): "emmett cookies",
    ("cycle", "counter"): "starlette SessionMiddleware",
    ("stores", "files"): "emmett files pipe",
    ("stores", "redis"): "redis.asyncio GETEX+SET",
    ("stores", "postgres"): "asyncpg UPDATE+UPDATE",
    ("stores", "redis+1ms"): "emmett redis pipe",
}

TITLES: dict[tuple[str, str], str] = {
    ("codecs", "write"): "Codecs, session changes every request (decode + encode, ~1 kB)",
    ("codecs", "read-mostly"): "Codecs, read-mostly request (decode, no change, respond)",
    ("cycle", "counter"): "Full request cycle in process: the counter page",
    ("stores", "files"): "Store cycle (load, change, save): files",
    ("stores", "redis"): "Store cycle (load, change, save): Redis on loopback",
    ("stores", "postgres"): "Store cycle (load, change, save): PostgreSQL on loopback",
    ("stores", "redis+1ms"): "Store cycle (load, change, save): Redis behind a 1 ms-each-way proxy",
    ("memory", "live sessions"): "Memory store: 10,000 live sessions created (rate, and RSS)",
    ("hostile", "normal"): "Cookie request carrying a valid token (read only), CPU per request",
    ("hostile", "garbage"): "Cookie request carrying a well-shaped garbage token, CPU per request",
}

START, END = "<!-- bench:start -->", "<!-- bench:end -->"

#: The full cycle's no-session-layer row, and the peer whose overhead the targets compare with.
BARE = "bare app (no session layer)"
OVERHEAD_BASE = "starlette SessionMiddleware"


def _per_op_us(rate: float | None) -> float | None:
    return 1e6 / rate if rate else None


def add_overhead(rows: list[dict[str, Any]]) -> None:
    """Set each cycle row's session overhead: microseconds per request above the bare app.

    ``overhead_us`` comes from wall-clock rates, ``cpu_overhead_us`` from the
    process's CPU time per request (what other tenants of the machine cannot
    inflate); ``overhead_ratio`` is the CPU overhead over Starlette's
    ``SessionMiddleware``'s at the same concurrency.
    """
    cycle = [r for r in rows if r["scenario"] == "cycle" and not r.get("skipped")]
    bare = {r["concurrency"]: r for r in cycle if r["subject"] == BARE}
    for r in cycle:
        base = bare.get(r["concurrency"])
        if base is None or r is base:
            continue
        wall, base_wall = _per_op_us(r.get("ops_per_sec")), _per_op_us(base.get("ops_per_sec"))
        cpu, base_cpu = (
            _per_op_us(r.get("cpu_ops_per_sec")),
            _per_op_us(base.get("cpu_ops_per_sec")),
        )
        r["overhead_us"] = round(wall - base_wall, 2) if wall and base_wall else None
        r["cpu_overhead_us"] = round(cpu - base_cpu, 2) if cpu and base_cpu else None
    theirs = {
        r["concurrency"]: r.get("cpu_overhead_us") for r in cycle if r["subject"] == OVERHEAD_BASE
    }
    for r in cycle:
        if r["subject"] == BARE:
            continue
        mine, base_over = r.get("cpu_overhead_us"), theirs.get(r["concurrency"])
        ok = mine is not None and base_over is not None and base_over > 0
        r["overhead_ratio"] = round(mine / base_over, 3) if ok else None


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set ``baseline`` and ``ratio`` (ops/s over the baseline's, same concurrency) on each row."""
    rates = {
        (r["scenario"], r["case"], r["subject"], r["concurrency"]): r.get("ops_per_sec")
        for r in rows
        if not r.get("skipped")
    }
    cpu_rates = {
        (r["scenario"], r["case"], r["subject"], r["concurrency"]): r.get("cpu_ops_per_sec")
        for r in rows
        if not r.get("skipped")
    }
    for r in rows:
        base = BASELINES.get((r["scenario"], r["case"]))
        r["baseline"] = base
        key = (r["scenario"], r["case"], r["subject"], r["concurrency"])
        base_key = (r["scenario"], r["case"], base, r["concurrency"])
        mine, theirs = rates.get(key), rates.get(base_key) if base else None
        r["ratio"] = round(mine / theirs, 3) if mine and theirs else None
        mine, theirs = cpu_rates.get(key), cpu_rates.get(base_key) if base else None
        r["cpu_ratio"] = round(mine / theirs, 3) if mine and theirs else None


def _groups(rows: list[dict[str, Any]]) -> Iterable[tuple[tuple[str, str], list[dict[str, Any]]]]:
    order: list[tuple[str, str]] = []
    for r in rows:
        key = (r["scenario"], r["case"])
        if key not in order:
            order.append(key)
    for key in order:
        yield key, [r for r in rows if (r["scenario"], r["case"]) == key]


def _fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def _us(v: float | None) -> str:
    return f"{v:,.1f}" if v is not None else "-"


def _cells(r: dict[str, Any], overhead: bool = False) -> list[str]:
    width = len(_head(overhead))
    if r.get("skipped"):
        return (
            [r["subject"], str(r["concurrency"]), "skipped"] + [""] * (width - 4) + [r["skipped"]]
        )
    lag = r.get("lag") or {}
    extra = []
    if overhead:
        ratio = r.get("overhead_ratio")
        extra = [
            _us(r.get("overhead_us")),
            _us(r.get("cpu_overhead_us")),
            f"{ratio:.2f}x" if ratio is not None else "-",
        ]
    return [
        r["subject"],
        str(r["concurrency"]),
        _fmt_rate(r.get("ops_per_sec")),
        f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-",
        _fmt_rate(r.get("cpu_ops_per_sec")) if r.get("cpu_ops_per_sec") else "",
        f"{r['cpu_ratio']:.2f}x" if r.get("cpu_ratio") is not None else "",
        f"{r['p50_us']:,.0f}",
        f"{r['p99_us']:,.0f}",
        f"{lag['p99_ms']:.2f}" if lag else "",
        f"{lag['max_ms']:.2f}" if lag else "",
        *extra,
        r.get("note", ""),
    ]


HEAD = [
    "subject",
    "clients",
    "ops/s",
    "vs base",
    "ops/cpu-s",
    "cpu vs base",
    "p50 us",
    "p99 us",
    "lag p99 ms",
    "lag max ms",
    "note",
]
OVERHEAD_HEAD = ["overhead us", "cpu overhead us", "vs starlette's"]


def _head(overhead: bool) -> list[str]:
    return HEAD[:-1] + OVERHEAD_HEAD + HEAD[-1:] if overhead else HEAD


def _has_overhead(group: list[dict[str, Any]]) -> bool:
    return any("cpu_overhead_us" in r for r in group)


def table(rows: list[dict[str, Any]]) -> str:
    """Plain-text tables, one per scenario case, for stdout."""
    out: list[str] = []
    for key, group in _groups(rows):
        out.append(f"\n== {TITLES.get(key, '/'.join(key))}  (base: {BASELINES.get(key, '-')})")
        over = _has_overhead(group)
        head = _head(over)
        cells = [head] + [_cells(r, over) for r in group]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head) - 1)]
        for c in cells:
            left = c[0].ljust(widths[0])
            rest = "  ".join(c[i].rjust(widths[i]) for i in range(1, len(head) - 1))
            out.append(f"{left}  {rest}  {c[-1]}".rstrip())
    return "\n".join(out)


def targets_table(targets: list[dict[str, Any]]) -> str:
    lines = ["\n== Targets"]
    for t in targets:
        verdict = (
            "REPORT" if t.get("reported") else {True: "MET", False: "MISSED", None: "n/a"}[t["met"]]
        )
        goal = f"(goal {t['goal']})"
        lines.append(f"{verdict:>6}  {t['target']}: {t['measured']} {goal} {t['detail']}")
    return "\n".join(lines)


def _md_table(head: list[str], body: list[list[str]]) -> str:
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    rows += ["| " + " | ".join(cell.replace("|", "/") for cell in line) + " |" for line in body]
    return "\n".join(rows)


def markdown_section(payload: dict[str, Any], chart: str | None, json_name: str) -> str:
    m = payload["machine"]
    v = payload["versions"]
    verdicts = {True: "met", False: "**missed**", None: "not measured"}
    parts = [
        START,
        "<!-- Generated by `python -m bench`; edit the text outside these markers. -->",
        f"Run `{payload['timestamp']}` ({payload['mode']} mode, {payload['duration_s']:.0f} s, "
        f"best of {payload['settings']['rounds']} rounds), "
        f"commit `{v.get('asess_commit', '?')}`, raw figures in "
        f"[`bench/results/{json_name}`](bench/results/{json_name}).",
        "",
        f"Machine: {m['cpu']} x{m['cpus']}, {m['platform']}, Python {m['python']}, "
        f"load average {m['loadavg_start']} at start and {m['loadavg_end']} at the end; "
        f"idle loop-lag floor p99 {payload['idle_lag']['p99_ms']:.2f} ms.",
        "",
        "Versions: " + ", ".join(f"{k} {x}" for k, x in sorted(v.items()) if k != "asess_commit"),
        "",
    ]
    if chart:
        parts += [f"![throughput and loop lag]({chart})", ""]
    parts += [
        "### Targets",
        "",
        _md_table(
            ["target", "goal", "measured", "verdict", "detail"],
            [
                [
                    t["target"],
                    t["goal"],
                    t["measured"],
                    "reported" if t.get("reported") else verdicts[t["met"]],
                    t["detail"],
                ]
                for t in payload["targets"]
            ],
        ),
        "",
    ]
    for key, group in _groups(payload["rows"]):
        over = _has_overhead(group)
        note = (
            f" Session overhead: microseconds per request above `{BARE}` (wall, and process"
            f" CPU), and the CPU overhead over {OVERHEAD_BASE}'s."
            if over
            else ""
        )
        parts += [
            f"### {TITLES.get(key, '/'.join(key))}",
            "",
            f"Ratio against: {BASELINES.get(key, '-')}. Loop lag from the single-client run.{note}",
            "",
            _md_table(_head(over), [_cells(r, over) for r in group]),
            "",
        ]
    parts.append(END)
    return "\n".join(parts)


def update_markdown(path: Path, section: str) -> None:
    """Replace the generated section of ``path`` (append one if it has none)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n## Results\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def chart(path: Path, rows: list[dict[str, Any]]) -> bool:
    """Draw throughput vs concurrency per store and subject, codec and cycle rates, loop lag."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return False
    live = [r for r in rows if not r.get("skipped")]
    colors = {
        "asess": "#1f77b4",
        "emmett": "#d62728",
        "plain": "#7f7f7f",
        "starlette": "#2ca02c",
        "starsessions": "#9467bd",
        "aiohttp-session": "#8c564b",
        "litestar": "#e377c2",
    }
    fig, axes = plt.subplots(2, 4, figsize=(24, 10))
    axes[0][3].set_visible(False)  # the top row has three panels, the stores four

    def bars(ax: Any, key: tuple[str, str], c: int, title: str) -> None:
        group = [r for r in live if (r["scenario"], r["case"]) == key and r["concurrency"] == c]
        names = [r["subject"] for r in group]
        ax.barh(
            names,
            [r["ops_per_sec"] for r in group],
            color=[colors.get(r["family"], "#bcbd22") for r in group],
        )
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("operations / s (log)")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)

    ax = axes[0][0]
    codec_rows = [r for r in live if r["scenario"] == "codecs"]
    names = list(dict.fromkeys(r["subject"] for r in codec_rows))
    for offset, case in ((-0.2, "write"), (0.2, "read-mostly")):
        rates = {r["subject"]: r["ops_per_sec"] for r in codec_rows if r["case"] == case}
        ax.barh(
            [i + offset for i in range(len(names))],
            [rates.get(n, 0) for n in names],
            height=0.4,
            label=case,
        )
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_title("Codecs, ~1 kB session")
    ax.set_xlabel("requests / s (log)")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    over = [
        r
        for r in live
        if r["scenario"] == "cycle"
        and r["concurrency"] == 1
        and r.get("cpu_overhead_us") is not None
        and r["subject"] != BARE
    ]
    ax.barh(
        [r["subject"] for r in over],
        [max(r["cpu_overhead_us"], 0.1) for r in over],
        color=[colors.get(r["family"], "#bcbd22") for r in over],
    )
    ax.set_xscale("log")
    ax.set_title("Full cycle: session overhead per request above the bare app (1 client)")
    ax.set_xlabel("CPU microseconds per request (log)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)

    ax = axes[0][2]
    lagged = [r for r in live if r.get("lag")]
    worst: dict[str, dict[str, Any]] = {}
    for r in lagged:
        label = f"{r['scenario']}/{r['case']}: {r['subject']}"
        worst[label] = r
    labels = list(worst)
    ax.barh(
        labels,
        [max(worst[k]["lag"]["p99_ms"], 1e-3) for k in labels],
        color=[colors.get(worst[k]["family"], "#bcbd22") for k in labels],
    )
    ax.axvline(1.0, color="black", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_title("Event-loop lag p99 (1 client); dotted: 1 ms")
    ax.set_xlabel("ms (log)")
    ax.tick_params(axis="y", labelsize=6)
    ax.invert_yaxis()

    for ax, case in zip(axes[1], ("files", "redis", "postgres", "redis+1ms"), strict=True):
        subjects = dict.fromkeys(
            r["subject"] for r in live if (r["scenario"], r["case"]) == ("stores", case)
        )
        for subject in subjects:
            pts = sorted(
                (r["concurrency"], r["ops_per_sec"], r["family"])
                for r in live
                if (r["scenario"], r["case"], r["subject"]) == ("stores", case, subject)
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                label=subject,
                color=colors.get(pts[0][2], "#bcbd22"),
                linestyle=(":" if "fsync=True" in subject else "-")
                if pts[0][2] == "asess"
                else "--",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"Store cycles: {case}")
        ax.set_xlabel("concurrent clients (log)")
        ax.set_ylabel("cycles / s (log)")
        ax.grid(True, which="both", alpha=0.3)
        if subjects:
            ax.legend(fontsize=8)
    for ax in axes.flat:
        # Log axes label minor ticks too, which piles numbers on top of each other.
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
