"""Run the ``asess`` command's ``main()`` in this process, seen as a process would see it.

A fresh ``python -m asess`` costs an interpreter start and asess's imports;
most cases only need what the command prints and the status it ends with.
The entry point itself stays covered by the tests that still spawn it.
"""

from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """What one run of the command returned and printed (as ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def run_main(*args: str) -> Run:
    """``asess ARGS`` through ``asess._cli.main``, in the calling thread.

    The command calls ``asyncio.run``: call this from a thread without a running
    loop (``asyncio.to_thread`` from an async test). ``SystemExit`` becomes the
    status the interpreter would end with (argparse exits 2 on usage errors),
    and an uncaught exception status 1 with its traceback on stderr.
    """
    from asess._cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: object = main(list(args))
        except SystemExit as exc:
            code = exc.code
        except Exception:
            err.write(traceback.format_exc())
            code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        err.write(f"{code}\n")
        code = 1
    return Run(code, out.getvalue(), err.getvalue())
