"""``asess sessions list|revoke --user U``: a user's sessions in a files or Redis store.

The same per-user index the application keeps (``user_key=``), read and
changed from a shell: list a user's live sessions (handle, created, last
seen, expires, device), or end them all but ``--keep HANDLE``, for example
after an account was compromised. The store is named with the options
``gc`` and ``inspect`` take (``--path`` and ``--filename-template``,
``--redis-url`` and ``--prefix``, or ``--postgres`` and ``--table``).
Revoked sessions are dead at once, with a logout's guarantees.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from typing import Any


def add_parser(sub: Any, epilog: str) -> None:
    sessions = sub.add_parser(
        "sessions",
        help="list or revoke a user's sessions (files, Redis or PostgreSQL)",
        description="List or revoke the sessions of one user, from the per-user index "
        "the application keeps with user_key=.",
        epilog=epilog,
    )
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="print the user's live sessions as JSON lines")
    revoke = actions.add_parser("revoke", help="end the user's sessions (all but --keep)")
    revoke.add_argument(
        "--keep", default=None, metavar="HANDLE", help="a session to keep (--keep=HANDLE)"
    )
    for action in (listing, revoke):
        action.add_argument("--user", required=True, help="the user id (as user_key gives it)")
        where = action.add_mutually_exclusive_group(required=True)
        where.add_argument("--path", help="the files store's directory")
        where.add_argument("--redis-url", help="the Redis store's URL")
        where.add_argument("--postgres", metavar="DSN", help="the PostgreSQL store's DSN")
        action.add_argument("--filename-template", default="emt_%s.sess")
        action.add_argument("--prefix", default="emtsess:", help="with --redis-url")
        action.add_argument("--table", default="asess_sessions", help="with --postgres")


def run(args: argparse.Namespace) -> int:
    from ._exceptions import SessionError

    try:
        return asyncio.run(_run(args))
    except SessionError as exc:
        print(f"asess: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    from ._manager import SessionManager

    # user_key only has to be set: the index is read and changed, never rebuilt here.
    if args.path is not None:
        manager = SessionManager.files(
            path=args.path, filename_template=args.filename_template, user_key="user"
        )
    elif args.postgres is not None:
        manager = SessionManager.postgres(
            args.postgres, table=args.table, user_key="user", create_table=False
        )
    else:
        manager = SessionManager.redis(args.redis_url, prefix=args.prefix, user_key="user")
    try:
        if args.action == "list":
            for info in await manager.sessions_of(args.user):
                print(json.dumps(_row(info)))
            return 0
        ended = await manager.revoke_user(args.user, keep=args.keep)
        kept = f", kept {args.keep}" if args.keep else ""
        print(f"revoked {ended} session(s) of user {args.user!r}{kept}")
        return 0
    finally:
        await manager.aclose()


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def _row(info: Any) -> dict[str, Any]:
    return {
        "handle": info.handle,
        "created": _iso(info.created_at),
        "last_seen": _iso(info.last_seen),
        "expires": _iso(info.expires_at),
        "user_agent": info.user_agent,
        "address": info.address,
    }
