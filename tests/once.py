"""Expensive setup done once per test session, however many pytest-xdist workers run it.

A module-scoped fixture runs once in each worker process that runs a test of
its module: under ``pytest -n 2`` both workers would build the distributions
or run the whole bench, twice the work, and the two copies could trip over
each other (the sdist build writes ``asess.egg-info`` into the checkout, the
bench drops every ``asess_bench_*`` table when it ends). Here the workers of
one session share the session's base temporary directory: the first to
arrive makes the result under a lock, the others wait for it and reuse it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def once_per_session(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """A directory ``make`` filled once in this test session; read it, never change it.

    Without xdist it is a fresh temporary directory, filled here. Under xdist,
    ``getbasetemp().parent`` is this session's own directory, shared by its
    workers and by no other session. A ``make`` that raised leaves no mark, so
    the next worker tries again (and fails the same way, in its own tests).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.mktemp(name)
        make(path)
        return path
    root = tmp_path_factory.getbasetemp().parent
    path = root / name
    done = root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)  # what a failed attempt left
            path.mkdir()
            make(path)
            done.touch()
    return path
