"""Where and with what a run happened: machine, load, package versions, commit.

Recorded in every JSON result so a figure can be read in context: this bench
often runs on a small, shared machine, and the load average says how much of
it the run had.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "emmett",
    "emmett-core",
    "starlette",
    "starsessions",
    "aiohttp-session",
    "aiohttp",
    "itsdangerous",
    "litestar",
    "cryptography",
    "redis",
    "orjson",
    "matplotlib",
)
ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
    }


def versions(redis_url: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    try:
        out["asess_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["asess_commit"] = "unknown"
    if redis_url:
        try:
            import redis

            client = redis.Redis.from_url(redis_url)
            out["redis-server"] = str(client.info("server").get("redis_version", "?"))
            client.close()
        except Exception:  # version is context only; never fail the run for it
            out["redis-server"] = "?"
    return out
