"""A PostgreSQL database for the bench: ``ASESS_POSTGRES_DSN``, else the machine's on 5432.

The bench writes only to tables named ``asess_bench_<hex>`` and drops them
afterwards, so the database is left as it was. No server answering is
reported as a skipped row, never as a failed run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Iterator

from .runner import Unavailable

DSN = os.environ.get("ASESS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TABLE_PREFIX = "asess_bench_"


async def _probe(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=3)
    await conn.close()


async def _drop_tables(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        names = await conn.fetch(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE tablename LIKE $1",
            TABLE_PREFIX + "%",
        )
        if names:
            await conn.execute("DROP TABLE IF EXISTS " + ", ".join(n[0] for n in names))
    finally:
        await conn.close()


def _aside(coro: object) -> None:
    # The bench's own loop is not running yet (or is): use a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


@contextlib.contextmanager
def postgres_dsn() -> Iterator[str]:
    """Yield the DSN for the run; raise :class:`Unavailable` when nothing answers."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise Unavailable("asyncpg is not installed (pip install 'asess[postgres]')") from None
    try:
        _aside(_probe(DSN))
    except Exception as exc:
        raise Unavailable(f"no PostgreSQL at {DSN} ({type(exc).__name__}: {exc})") from None
    try:
        yield DSN
    finally:
        _aside(_drop_tables(DSN))
