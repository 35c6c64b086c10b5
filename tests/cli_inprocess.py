"""Run the ``asess`` command's ``main()`` in this process, seen as a process would see it.

A fresh ``python -m asess`` costs an interpreter start and asess's imports;
most cases only need what the command prints and the status it ends with.
The entry point itself stays covered by the tests that still spawn it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """What one run of the command returned and printed (as ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _environ(set_: dict[str, str], unset: tuple[str, ...]) -> Iterator[None]:
    """os.environ as given for the block, then exactly as before (``demo`` writes to it)."""
    saved = dict(os.environ)
    os.environ.update(set_)
    for name in unset:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def run_main(*args: str, unset: tuple[str, ...] = (), **env: str) -> Run:
    """``asess ARGS`` through ``asess._cli.main`` in this process, seen as a process would be.

    It runs in a thread of its own: the command calls ``asyncio.run``, and the
    async tests call this from inside their event loop. ``SystemExit`` becomes
    the exit status the interpreter would give (argparse exits 2 on usage
    errors, 0 after ``--help``), and an uncaught exception status 1 with its
    traceback on stderr, as ``python -m asess`` would end.
    """
    from asess._cli import main

    out, err = io.StringIO(), io.StringIO()
    status: list[int] = []

    def run() -> None:
        try:
            code: object = main(list(args))
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            err.write(traceback.format_exc())
            code = 1
        if code is None:
            code = 0
        elif not isinstance(code, int):
            err.write(f"{code}\n")
            code = 1
        status.append(code)

    # What a process would print through logging's last-resort handler (warnings
    # and errors, asyncio's included) goes to its stderr here too, not only to
    # pytest's log capture.
    stderr_log = logging.StreamHandler(err)
    stderr_log.setLevel(logging.WARNING)
    root = logging.getLogger()
    with _environ(env, unset), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        root.addHandler(stderr_log)
        try:
            thread = threading.Thread(target=run, name="asess-cli", daemon=True)
            thread.start()
            thread.join(60)
        finally:
            root.removeHandler(stderr_log)
    assert status, f"asess {' '.join(args)} did not finish within 60 s"
    return Run(status[0], out.getvalue(), err.getvalue())
