"""A small app using the public API as the README shows it, checked by ``mypy --strict``.

tests/test_typing.py runs mypy over this file (no error allowed) and also
serves it, so the sample stays a working app and not only a typed one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import asess
from asess import (
    ConfigurationError,
    KeyRing,
    Secret,
    Session,
    SessionManager,
    SessionMiddleware,
    current_session,
    get_session,
    session,
)
from asess.aiohttp import AiohttpSession, setup
from asess.aiohttp import get_session as get_aiohttp_session
from asess.fastapi import SessionDep
from asess.starlette import SessionMiddleware as StarletteSessionMiddleware

SAMESITE: asess.SameSite = "Strict"
MODE: asess.EncryptionMode = "modern"

manager: SessionManager = SessionManager.cookies(
    [Secret("a-long-random-secret-for-the-sample"), "an-older-key-still-read"],
    samesite=SAMESITE,
    encryption_mode=MODE,
    max_age=86_400,
)
ring = KeyRing(["a", "b"])
current: Secret = ring.current


# -- FastAPI: the dependency gives a typed Session --------------------------------

api = FastAPI()
api.add_middleware(SessionMiddleware, manager=manager)


@api.get("/counter")
async def counter() -> str:
    session.counter = (session.counter or 0) + 1  # Emmett's style, through the proxy
    return f"This is your {session.counter} visit"


@api.post("/login")
async def login(user: str, s: SessionDep) -> dict[str, Any]:
    s.regenerate()  # a Session method, checked by mypy
    s["user"] = user
    s.expire_after(3600)
    return {"user": s["user"], "new": s.is_new}


@api.get("/whoami")
async def whoami(request: Request) -> dict[str, Any]:
    s: Session = get_session(request)
    same: Session = current_session()
    return {"user": s.get("user"), "same": s is same, "modified": s.modified}


@api.post("/logout")
async def logout(s: SessionDep) -> dict[str, bool]:
    s.invalidate()
    return {"ok": True}


# -- Starlette: the helper does the same ------------------------------------------


async def cart(request: Request) -> JSONResponse:
    s = get_session(request)
    items: list[str] = s.setdefault("cart", [])
    items.append(request.query_params.get("item", "tea"))
    return JSONResponse({"cart": items, "id_set": s.id is not None})


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


app = SessionMiddleware(
    Starlette(routes=[Route("/cart", cart), Route("/", hello)]),
    SessionManager.files(path="sessions", samesite="Lax", locking=True),
)


def build_strict() -> SessionManager:
    try:
        return SessionManager.cookies("k" * 32, samesite="None", secure=True)
    except ConfigurationError as exc:  # a manager says what to change
        raise SystemExit(str(exc)) from exc


# -- The drop-ins: Starlette's constructor, aiohttp-session's functions ----------

dropin = Starlette(
    routes=[Route("/", hello)],
    middleware=[Middleware(StarletteSessionMiddleware, secret_key="k" * 32, max_age=None)],
)


async def aiohttp_counter(request: web.Request) -> web.Response:
    s: AiohttpSession = await get_aiohttp_session(request)
    s["n"] = s.get("n", 0) + 1
    s.max_age = 3600  # aiohttp-session's settable attribute
    created: int = s.created
    return web.Response(text=f"{s['n']} {s.new} {created > 0}")


aiohttp_app = web.Application()
setup(aiohttp_app, manager)
aiohttp_app.router.add_get("/", aiohttp_counter)
