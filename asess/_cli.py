"""The ``asess`` command: demo server, session GC (files, PostgreSQL), inspection, key generation.

Exit codes: 0 success, 1 the operation failed (a busy port included), 2 usage
error (argparse's own, and values argparse cannot check alone). ``inspect``
lives in :mod:`asess._inspect`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from . import __version__
from ._exceptions import InvalidToken, SessionError

DEMO_HOST = "127.0.0.1"
KEYGEN_BYTES = 48  # 384 bits: well past the 256 bits the codecs' keys need

_EPILOG = "Exit codes: 0 success, 1 the operation failed, 2 usage error."


def _positive(text: str) -> int:
    """argparse type: a whole number of seconds above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value <= 0:
        # 0 would make every session look expired, and gc would delete them all.
        raise argparse.ArgumentTypeError(f"{value} must be a positive number of seconds")
    return value


def _port(text: str) -> int:
    """argparse type: a TCP port from 1 to 65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65535")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asess",
        description="asess: async-native sessions for Python web apps.",
        epilog=f"Run 'asess COMMAND --help' for a command's options. {_EPILOG}",
    )
    parser.add_argument("--version", action="version", version=f"asess {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="serve the demo: Emmett's counter at /counter and a session page at /",
        description="Serve the demo: a session page at /, and Emmett's counter at /counter.",
        epilog=(
            "Cookie sessions use $ASESS_DEMO_KEY as key, or a random one for this run. "
            f"A port in use exits 1. {_EPILOG}"
        ),
    )
    demo.add_argument("--backend", choices=("cookies", "files", "redis", "memory"), default="files")
    demo.add_argument(
        "--mode",
        choices=("legacy", "modern"),
        default="legacy",
        help="cookie encryption for --backend cookies (default: legacy)",
    )
    demo.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    demo.add_argument("--host", default=DEMO_HOST)
    demo.add_argument("--port", type=_port, default=8000)
    demo.add_argument("--path", default="sessions", help="directory for the files backend")
    demo.add_argument("--redis-url", default=None, help="Redis URL (default: $REDIS_URL)")
    demo.add_argument("--workers", type=int, default=1, help="server processes (default: 1)")
    demo.add_argument("--locking", action="store_true", help="serialize requests per session")

    gc = sub.add_parser(
        "gc",
        help="remove expired sessions (files or PostgreSQL) and file leftovers",
        description=(
            "Remove expired sessions from a sessions directory (and orphan temporary "
            "files) or from a PostgreSQL table; print counts."
        ),
        epilog=_EPILOG,
    )
    where = gc.add_mutually_exclusive_group(required=True)
    where.add_argument("--path", help="the sessions directory")
    where.add_argument("--postgres", metavar="DSN", help="a postgresql:// DSN")
    gc.add_argument(
        "--table", default="asess_sessions", help="the PostgreSQL table (default: asess_sessions)"
    )
    gc.add_argument(
        "--expire",
        type=_positive,
        default=None,
        help="idle lifetime in seconds, above 0 (default: the one each file was saved with)",
    )
    gc.add_argument(
        "--dry-run",
        action="store_true",
        help="count what would be removed, and remove nothing",
    )
    gc.add_argument(
        "--filename-template",
        default="emt_%s.sess",
        help="the store's filename_template; other files are never touched",
    )

    inspect = sub.add_parser(
        "inspect",
        help="show a session: decode its cookie, or read it from files or Redis by id",
        description=(
            "Print a session's data and times (ISO 8601, UTC, and the time left) as JSON, "
            "or say why it cannot be shown. A cookie's format is detected from the token."
        ),
        epilog=(
            "Values may be pasted as name=value or as a whole Cookie header; chunked cookies "
            "as the values of name, name.1, ... in order. With --path or --redis-url, pass "
            f"the session id (the cookie value) instead; the session's expiry is not slid. "
            f"{_EPILOG}"
        ),
    )
    inspect.add_argument(
        "token",
        nargs="+",
        help="the cookie value(s), or the session id (put -- before values that start with -)",
    )
    inspect.add_argument(
        "--key",
        action="append",
        default=None,
        help="the secret key (default: $ASESS_KEY); repeat it to try each key of a rotation",
    )
    inspect.add_argument(
        "--mode",
        choices=("auto", "legacy", "modern"),
        default="auto",
        help="cookie format (default: told from the token)",
    )
    inspect.add_argument(
        "--cookie-name",
        default=None,
        help="the session cookie's name: modern tokens bind it (default: the pasted name, "
        "else asess_session)",
    )
    inspect.add_argument("--compression-level", type=int, default=0)
    stores = inspect.add_mutually_exclusive_group()
    stores.add_argument("--path", help="read the file session with this id from DIR")
    stores.add_argument("--redis-url", help="read the Redis session with this id from URL")
    inspect.add_argument(
        "--filename-template",
        default="emt_%s.sess",
        help="with --path: the store's filename_template",
    )
    inspect.add_argument(
        "--prefix", default="emtsess:", help="with --redis-url: the store's key prefix"
    )

    from . import _cli_sessions

    _cli_sessions.add_parser(sub, _EPILOG)

    sub.add_parser(
        "keygen",
        help="print a strong random key",
        description=f"Print a random key of {KEYGEN_BYTES * 8} bits, URL-safe base64.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args, parser)
        if args.command == "gc":
            return _gc(args)
        if args.command == "inspect":
            return _inspect(args, parser)
        if args.command == "sessions":
            from ._cli_sessions import run

            return run(args)
        print(secrets.token_urlsafe(KEYGEN_BYTES))
        return 0
    except SessionError as exc:
        print(f"asess: {exc}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.backend == "memory" and args.workers > 1:
        parser.error("--backend memory keeps sessions in one process: use --workers 1")
    os.environ["ASESS_DEMO_BACKEND"] = args.backend
    os.environ["ASESS_DEMO_MODE"] = args.mode
    os.environ["ASESS_DEMO_PATH"] = args.path
    os.environ["ASESS_DEMO_LOCKING"] = "1" if args.locking else "0"
    # Every worker must share one cookie key, or each would refuse the others' cookies.
    os.environ.setdefault("ASESS_DEMO_KEY", secrets.token_urlsafe(32))
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    busy = _port_in_use(args.host, args.port)
    if busy:
        print(f"asess: cannot listen on {args.host}:{args.port}: {busy}", file=sys.stderr)
        print("asess: stop what uses it, or pick another with --port N", file=sys.stderr)
        return 1
    print(f"asess demo ({args.backend} sessions): http://{args.host}:{args.port}/counter")
    sys.stdout.flush()
    if args.server == "granian":
        try:
            from granian import Granian
            from granian.constants import Interfaces
        except ImportError:
            print("asess: granian is not installed: pip install 'asess[granian]'", file=sys.stderr)
            return 1
        Granian(
            "asess.demo:app_from_env",
            address=args.host,
            port=args.port,
            interface=Interfaces.ASGI,
            workers=args.workers,
            factory=True,
        ).serve()
        return 0
    try:
        import uvicorn
    except ImportError:
        print("asess: uvicorn is not installed: pip install 'asess[demo]'", file=sys.stderr)
        return 1
    try:
        uvicorn.run(
            "asess.demo:app_from_env",
            host=args.host,
            port=args.port,
            factory=True,
            workers=args.workers,
            log_level="info",
        )
    except SystemExit as exc:
        # uvicorn exits 3 when startup fails (a port taken since our check): say 1, as documented.
        if exc.code not in (None, 0):
            print("asess: the demo server failed to start (see above)", file=sys.stderr)
            return 1
    return 0


def _port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None when it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host!r}: {exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the servers do: a port held only by TIME_WAIT connections is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _gc(args: argparse.Namespace) -> int:
    from ._gc import collect_garbage

    if args.postgres is not None:
        return _gc_postgres(args)
    if not os.path.isdir(args.path):
        print(f"asess: {args.path} is not a directory", file=sys.stderr)
        return 1
    result = asyncio.run(
        collect_garbage(
            args.path,
            filename_template=args.filename_template,
            ttl=args.expire,
            dry_run=args.dry_run,
        )
    )
    done = "that would be removed" if args.dry_run else "removed"
    print(f"expired sessions {done}: {result.expired}")
    print(f"orphan temporary files {done}: {result.orphans}")
    print(f"idle lock files {done}: {result.locks}")
    print(f"live sessions kept: {result.kept}")
    if args.dry_run:
        print("dry run: nothing was removed")
    return 0


def _gc_postgres(args: argparse.Namespace) -> int:
    from ._backends.postgres import PostgresStore

    if args.expire is not None or args.filename_template != "emt_%s.sess":
        print(
            "asess: --expire and --filename-template apply to --path only; "
            "PostgreSQL rows carry their own expiry",
            file=sys.stderr,
        )
        return 2

    async def collect() -> Any:
        # The table is the application's: never created from here.
        store = PostgresStore(args.postgres, table=args.table, create_table=False)
        try:
            if args.dry_run:
                return await store.count_garbage(time.time())
            return await store.gc(time.time())
        finally:
            await store.aclose()

    try:
        result = asyncio.run(collect())
    except SessionError as exc:
        print(f"asess: {exc}", file=sys.stderr)
        return 1
    done = "that would be removed" if args.dry_run else "removed"
    print(f"expired sessions {done}: {result.expired}")
    print(f"idle leases {done}: {result.locks}")
    print(f"live sessions kept: {result.kept}")
    if args.dry_run:
        print("dry run: nothing was removed")
    return 0


def _inspect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import _inspect as inspect

    now = time.time()
    out: dict[str, Any] | None
    try:
        if args.path is not None or args.redis_url is not None:
            sid = inspect.session_id(args.token)
            if args.path is not None:
                out = inspect.read_file_session(args.path, args.filename_template, sid, now)
            else:
                out = asyncio.run(inspect.read_redis_session(args.redis_url, args.prefix, sid, now))
        else:
            out = _decode_token(args, parser, now)
    except inspect.InspectError as exc:
        print(f"asess: {exc}", file=sys.stderr)
        return 1
    if out is None:
        return 1
    options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    print(orjson.dumps(out, option=options, default=str).decode())
    return 0


def _decode_token(
    args: argparse.Namespace, parser: argparse.ArgumentParser, now: float
) -> dict[str, Any] | None:
    from . import _inspect as inspect
    from ._backends.cookie import build_codec
    from ._keys import KeyRing

    keys = args.key or [os.environ.get("ASESS_KEY", "")]
    if not all(keys):
        parser.error("inspect needs the secret key: pass --key KEY or set $ASESS_KEY")
    pasted_name, token = inspect.pasted_value(args.token, args.cookie_name)
    cookie_name = args.cookie_name or pasted_name or "asess_session"
    mode = inspect.detect_mode(token) if args.mode == "auto" else args.mode
    codec = build_codec(mode, KeyRing(keys), cookie_name, args.compression_level)
    try:
        record = codec.decode(token, now)
    except InvalidToken as exc:
        print(f"asess: the token does not decode: {exc}", file=sys.stderr)
        told = "detected" if args.mode == "auto" else "given"
        print(
            f"asess: tried --mode {mode} ({told}) with {len(keys)} key(s)"
            + (f" for cookie {cookie_name!r}" if mode == "modern" else "")
            + "; check the key, the mode and that the value is complete",
            file=sys.stderr,
        )
        return None
    out = inspect.describe(record, now, source={"format": mode})
    out["meta"]["needs_reissue"] = record.reissue
    return out
