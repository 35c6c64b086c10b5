"""The ``asess`` command: demo server, file-session GC, token inspection, key generation.

Exit codes: 0 success, 1 the operation failed, 2 usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Sequence

import orjson

from ._exceptions import InvalidToken, SessionError

DEMO_HOST = "127.0.0.1"
KEYGEN_BYTES = 48  # 384 bits: well past the 256 bits the codecs' keys need

_EPILOG = "Exit codes: 0 success, 1 the operation failed, 2 usage error."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asess",
        description="asess: async-native sessions for Python web apps.",
        epilog=f"Run 'asess COMMAND --help' for a command's options. {_EPILOG}",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="serve the spec's counter app at /counter",
        description="Serve the counter demo: /counter, /big?size=N, /whoami, /logout.",
        epilog="Cookie sessions use $ASESS_DEMO_KEY as key, or a random one for this run.",
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
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--path", default="sessions", help="directory for the files backend")
    demo.add_argument("--redis-url", default=None, help="Redis URL (default: $REDIS_URL)")
    demo.add_argument("--workers", type=int, default=1, help="server processes (default: 1)")
    demo.add_argument("--locking", action="store_true", help="serialize requests per session")

    gc = sub.add_parser(
        "gc",
        help="remove expired file sessions and orphan temporary files",
        description="Remove expired file sessions and orphan temporary files; print counts.",
        epilog=_EPILOG,
    )
    gc.add_argument("--path", required=True, help="the sessions directory")
    gc.add_argument(
        "--expire",
        type=int,
        default=None,
        help="idle lifetime in seconds (default: the one each file was saved with)",
    )
    gc.add_argument(
        "--filename-template",
        default="emt_%s.sess",
        help="the store's filename_template; other files are never touched",
    )

    inspect = sub.add_parser(
        "inspect",
        help="decode a session cookie and print its JSON",
        description=(
            "Decode a session cookie and print its data and times as JSON, "
            "or say why it does not decode."
        ),
        epilog=f"Chunked cookies: pass the values of name, name.1, ... in order. {_EPILOG}",
    )
    inspect.add_argument(
        "token",
        nargs="+",
        help="the cookie value; chunks in order (put -- before values that start with -)",
    )
    inspect.add_argument(
        "--key",
        action="append",
        default=None,
        help="the secret key (default: $ASESS_KEY); repeat it to try each key of a rotation",
    )
    inspect.add_argument("--mode", choices=("legacy", "modern"), default="legacy")
    inspect.add_argument("--cookie-name", default="asess_session", help="tokens are bound to it")
    inspect.add_argument("--compression-level", type=int, default=0)

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
        print("asess: uvicorn is not installed: pip install uvicorn", file=sys.stderr)
        return 1
    uvicorn.run(
        "asess.demo:app_from_env",
        host=args.host,
        port=args.port,
        factory=True,
        workers=args.workers,
        log_level="info",
    )
    return 0


def _gc(args: argparse.Namespace) -> int:
    from ._gc import collect_garbage

    if not os.path.isdir(args.path):
        print(f"asess: {args.path} is not a directory", file=sys.stderr)
        return 1
    result = asyncio.run(
        collect_garbage(args.path, filename_template=args.filename_template, ttl=args.expire)
    )
    print(f"expired sessions removed: {result.expired}")
    print(f"orphan temporary files removed: {result.orphans}")
    print(f"idle lock files removed: {result.locks}")
    print(f"live sessions kept: {result.kept}")
    return 0


def _inspect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ._backends.cookie import build_codec
    from ._keys import KeyRing

    keys = args.key or [os.environ.get("ASESS_KEY", "")]
    if not all(keys):
        parser.error("inspect needs the secret key: pass --key KEY or set $ASESS_KEY")
    codec = build_codec(args.mode, KeyRing(keys), args.cookie_name, args.compression_level)
    # Cookie values may arrive quoted (Emmett quotes values holding "=").
    token = "".join(part.strip().strip('"') for part in args.token)
    try:
        record = codec.decode(token, time.time())
    except InvalidToken as exc:
        print(f"asess: the token does not decode: {exc}", file=sys.stderr)
        print(
            f"asess: tried --mode {args.mode} with {len(keys)} key(s)"
            + f" for cookie {args.cookie_name!r}"
            + "; check the key, the mode and that the value is complete",
            file=sys.stderr,
        )
        return 1
    meta = {
        "created_at": record.created_at,
        "issued_at": record.issued_at,
        "expires_at": record.expires_at,
        "lifetime": record.lifetime,
        "needs_reissue": record.reissue,
    }
    out = {"data": record.data, "meta": meta}
    options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    print(orjson.dumps(out, option=options, default=str).decode())
    return 0
