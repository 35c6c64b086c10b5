"""The bench's hostile-input row: every subject measured, both cases, CPU per request recorded.

Figures vary by machine and are never asserted; each measurement runs for the
window the smoke run's ``--window`` gives (held open until it timed an
operation), about a fifth of a second for the whole row.
"""

from __future__ import annotations

import asyncio
import dataclasses

from bench import hostile
from bench.runner import Env, Settings


def test_hostile_row_measures_every_subject_and_case() -> None:
    env = Env(dataclasses.replace(Settings.smoke(), codec_seconds=0.02, min_ops=1))

    async def run() -> list[dict[str, object]]:
        rows = []
        for task in hostile.tasks(env):
            rows.extend(r.as_dict() for r in await task.run())
        return rows

    rows = asyncio.run(run())
    names = [name for name, *_ in hostile.subjects()]
    assert {(r["subject"], r["case"]) for r in rows} == {
        (n, c) for n in names for c in hostile.CASES
    }
    for row in rows:
        assert row["skipped"] is None and row["ops"]
        assert row["cpu_us_per_request"] and "us CPU per request" in str(row["note"])
