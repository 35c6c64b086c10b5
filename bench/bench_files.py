"""Microseconds per FileStore load and save, and what one executor hop per call saves.

Compares the store's calls (all system calls of a load or save in one thread
hop) with the same work written the aiofiles way, one await per file
operation. Run from the repository root:

    python bench/bench_files.py [--rounds 2000] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial

import aiofiles
import aiofiles.os

from asess._backends.files import FileStore
from asess._backends.files_format import Layout, encode_header, split_file
from asess._ids import new_session_id
from asess._record import Record
from asess._serialize import dump_record, load_record

_utime = aiofiles.os.wrap(os.utime)
_fsync = aiofiles.os.wrap(os.fsync)
_open = aiofiles.os.wrap(os.open)
_close = aiofiles.os.wrap(os.close)


async def multi_hop_load(store: FileStore, ref: str, ttl: int) -> Record | None:
    """A load that awaits each file operation: open, read, stat, utime, close."""
    path = store.path_of(ref)
    try:
        async with aiofiles.open(path, "rb") as f:
            raw = await f.read()
            st = await aiofiles.os.stat(path)
    except FileNotFoundError:
        return None
    header, body = split_file(raw)
    seconds = header.seconds(ttl)
    if st.st_mtime + seconds <= time.time():
        await aiofiles.os.unlink(path)
        return None
    record = load_record(body)
    await _utime(path)
    record.expires_at = time.time() + seconds
    return record


async def multi_hop_save(store: FileStore, ref: str, record: Record, ttl: int, fsync: bool) -> str:
    """A save that awaits each file operation: open, write, fsync, close, replace, dir fsync."""
    path = store.path_of(ref)
    temp = os.path.join(store.directory, Layout.temp_name(os.path.basename(path)))
    payload = encode_header(record.lifetime, ttl) + dump_record(record)
    fd = await _open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    async with aiofiles.open(fd, "wb", closefd=True) as f:
        await f.write(payload)
        if fsync:
            await f.flush()
            await _fsync(fd)
    await aiofiles.os.replace(temp, path)
    if fsync:
        dfd = await _open(store.directory, os.O_RDONLY | os.O_DIRECTORY)
        await _fsync(dfd)
        await _close(dfd)
    return ref


async def hold(store: FileStore, ref: str) -> None:
    """Take and drop the session's lease (uncontended unless --concurrency > 1)."""
    lease = await store.acquire(ref, 10.0, time.time())
    if lease is not None:
        await store.release(lease)


async def one_hop_save(store: FileStore, ref: str, record: Record, ttl: int) -> bool:
    """The store's own save of an existing session: one executor hop."""
    return await store.update(ref, dump_record(record), ttl, time.time())


async def one_hop_load(store: FileStore, ref: str, ttl: int) -> Record | None:
    """The store's own read plus the lifecycle's decode: one executor hop."""
    raw = await store.read(ref, ttl, time.time())
    return None if raw is None else load_record(raw)


async def per_call_us(
    call: Callable[[], Awaitable[object]], rounds: int, concurrency: int
) -> float:
    """Wall-clock microseconds per call with ``concurrency`` calls in flight."""

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    for _ in range(min(rounds, 50)):  # warm the executor's threads and the page cache
        await call()
    start = time.perf_counter()
    await asyncio.gather(*(worker(rounds // concurrency) for _ in range(concurrency)))
    return (time.perf_counter() - start) / (rounds // concurrency * concurrency) * 1e6


async def main(rounds: int, concurrency: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for fsync in (False, True):
            store = FileStore(tmp, fsync=fsync)
            ref = new_session_id()
            now = time.time()
            record = Record({"user": 42, "cart": list(range(20)), "name": "x" * 100}, now, now)
            await store.create(ref, dump_record(record), 3600, now)
            n = rounds if not fsync else max(rounds // 10, 50)
            cases: dict[str, Callable[[], Awaitable[object]]] = {
                "save one hop": partial(one_hop_save, store, ref, record, 3600),
                "save multi hop": partial(multi_hop_save, store, ref, record, 3600, fsync),
            }
            if not fsync:
                cases["load one hop"] = partial(one_hop_load, store, ref, 3600)
                cases["load multi hop"] = partial(multi_hop_load, store, ref, 3600)
                cases["lease+release"] = partial(hold, store, ref)
            for label, call in cases.items():
                runs = [await per_call_us(call, n, concurrency) for _ in range(repeats)]
                print(
                    f"fsync={fsync!s:5} {label:15} {statistics.median(runs):8.1f} us/call"
                    f"  (median of {repeats}, {n} calls, concurrency {concurrency})"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.concurrency, args.repeats))
