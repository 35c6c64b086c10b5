"""Auto-pipelining: commands issued by concurrent requests travel to Redis together.

Each call to :meth:`AutoPipeline.execute` queues its command and waits on a
future. A single flusher task, started on the next event-loop turn, sends
everything queued so far as one batch and hands every reply (or error) to the
future of the command that asked for it. While a batch is in flight new
commands keep queueing and go out as the next batch the moment its replies
are in: batches grow with the load, and an idle store pays one extra loop turn
per command. One batch is in flight at a time, so commands reach Redis in the
order they were issued, per key and overall.

A batch travels on one pooled connection of a ``redis.asyncio.Redis``
(:class:`ConnectionBatches`: one write, then one reply read per command, under
the connection's own retry policy), or as a cluster pipeline on a
``redis.asyncio.RedisCluster`` (:class:`ClusterBatches`), which splits it by
node. ``redis`` is imported by whoever builds these, never here.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Command = tuple[Any, ...]
# Runs a batch; returns one reply per command, an exception instance standing
# in for the reply of a command that failed on its own.
BatchRunner = Callable[[Sequence[Command]], Awaitable[list[Any]]]
_Pending = tuple[Command, "asyncio.Future[Any]"]


class AutoPipeline:
    """Batch the commands of concurrent callers and run each batch with ``run``.

    Args:
        run: sends a batch: a :class:`ConnectionBatches` or :class:`ClusterBatches`.
        max_batch: the most commands in one batch; a larger burst goes out as
            several consecutive batches.
    """

    def __init__(self, run: BatchRunner, *, max_batch: int = 512) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches_sent = 0  # for tests and monitoring

    async def execute(self, *args: Any) -> Any:
        """Run one command in the next batch and return its reply.

        Raises what the command raised on its own (a ``ResponseError`` for a
        wrong-type key, say), or the error that failed its whole batch (a lost
        connection): each caller gets only the outcome that is theirs.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Queue and flusher belong to a loop that is gone (an app restarted
            # in the same process, or one loop per test): start afresh.
            self._loop, self._queue, self._flusher = loop, [], None
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        try:
            return await future
        except asyncio.CancelledError:
            # The reply may have landed just as we were cancelled; mark its
            # error as seen so asyncio does not report it as never retrieved.
            if future.done() and not future.cancelled():
                future.exception()
            raise

    async def wait_idle(self) -> None:
        """Wait until every queued command has been sent and answered."""
        flusher = self._flusher
        if flusher is not None and self._loop is asyncio.get_running_loop():
            await asyncio.shield(flusher)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                # A caller cancelled before its command left is simply dropped.
                live = [pending for pending in batch if not pending[1].done()]
                if live:
                    await self._send(live)
        finally:
            self._flusher = None
            # Only reached with a non-empty queue when this task was cancelled
            # (its loop shutting down): nobody will send these, so say so.
            queued, self._queue = self._queue, []
            _fail(queued, ConnectionError("the auto-pipeline stopped before sending the command"))

    async def _send(self, batch: list[_Pending]) -> None:
        self.batches_sent += 1
        try:
            replies = await self._run([args for args, _ in batch])
        except asyncio.CancelledError:
            _fail(batch, ConnectionError("the auto-pipeline was cancelled mid-flight"))
            raise
        except Exception as exc:
            # The batch as a whole failed (connection refused, lost, timed
            # out): no command has a reply of its own, so each gets the error.
            _fail(batch, exc)
            return
        if len(replies) != len(batch):
            _fail(batch, RuntimeError(f"got {len(replies)} replies for {len(batch)} commands"))
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled while in flight
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


class ConnectionBatches:
    """Send a batch over one connection of a ``redis.asyncio.Redis`` client's pool.

    This is what ``Pipeline(transaction=False).execute(raise_on_error=False)``
    does, minus the command-stack bookkeeping that costs a pipeline about as
    much per command as the wire work: the commands are packed and written at
    once, then each reply is read in turn, a ``ResponseError`` reply standing
    as that command's result. A connection failure is retried, the whole batch
    on a fresh connection, as the client's ``retry`` policy says (the same
    at-least-once rule as a redis-py pipeline); a connection that may hold
    unread replies is closed, never returned to the pool.

    Args:
        client: a ``redis.asyncio.Redis`` (a Sentinel master client included).
        response_error: ``redis.exceptions.ResponseError``.
    """

    def __init__(self, client: Any, response_error: type[Exception]) -> None:
        self._pool = client.connection_pool
        self._callbacks = client.response_callbacks
        self._response_error = response_error
        # redis-py before 5.3 requires a command name here, later ones warn on it.
        parameter = inspect.signature(self._pool.get_connection).parameters.get("command_name")
        needs_name = parameter is not None and parameter.default is inspect.Parameter.empty
        self._connection_args: tuple[str, ...] = ("PIPELINE",) if needs_name else ()

    async def __call__(self, commands: Sequence[Command]) -> list[Any]:
        pool = self._pool
        connection = await pool.get_connection(*self._connection_args)
        replies: list[Any] = [None] * len(commands)
        clean = False
        try:
            packed: list[bytes] = []
            sent: list[int] = []
            encoder = connection.encoder
            for i, args in enumerate(commands):
                try:
                    packed.append(_pack(args, encoder) or b"".join(connection.pack_command(*args)))
                except Exception as exc:  # DataError: an argument Redis cannot take
                    replies[i] = exc
                else:
                    sent.append(i)
            answers: list[Any] = await connection.retry.call_with_retry(
                lambda: self._exchange(connection, packed, len(sent)),
                lambda error: connection.disconnect(),
            )
            clean = True
        finally:
            if not clean:
                await connection.disconnect()
            await pool.release(connection)
        for i, answer in zip(sent, answers, strict=True):
            replies[i] = await self._convert(commands[i][0], answer)
        return replies

    async def _exchange(self, connection: Any, packed: list[bytes], count: int) -> list[Any]:
        if not count:
            return []
        await connection.send_packed_command(packed)
        answers: list[Any] = []
        for _ in range(count):
            try:
                answers.append(await connection.read_response())
            except self._response_error as exc:
                answers.append(exc)
        return answers

    async def _convert(self, name: Any, answer: Any) -> Any:
        """Apply the client's response callback, as a pipeline would."""
        callback = self._callbacks.get(name)
        if callback is None or isinstance(answer, BaseException):
            return answer
        try:
            converted = callback(answer)
            return await converted if inspect.isawaitable(converted) else converted
        except Exception as exc:
            return exc


def _pack(args: Command, encoder: Any) -> bytes | None:
    """RESP for a command of str, bytes and int arguments; None for anything else.

    Session commands (GETEX, SET, EXPIRE, UNLINK) only hold those, and packing
    them here costs a fraction of redis-py's general ``pack_command``.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            raw = arg
        elif isinstance(arg, str):
            raw = arg.encode(encoder.encoding, encoder.encoding_errors)
        elif type(arg) is int:
            raw = b"%d" % arg
        else:
            return None
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class ClusterBatches:
    """Send a batch as a non-transactional pipeline of a ``redis.asyncio.RedisCluster``.

    The cluster pipeline groups the commands by node, runs the groups in
    parallel, keeps each node's commands in order, and follows ``MOVED`` and
    ``ASK`` redirections command by command.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    async def __call__(self, commands: Sequence[Command]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
