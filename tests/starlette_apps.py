"""A small Starlette app run under either session middleware, for the drop-in tests."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def view(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


async def put(request: Request) -> JSONResponse:
    request.session.update(await request.json())
    return JSONResponse(dict(request.session))


async def clear(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({})


async def idle(request: Request) -> PlainTextResponse:
    return PlainTextResponse("idle")


async def append(request: Request) -> JSONResponse:
    request.session["items"].append(len(request.session["items"]))
    return JSONResponse(dict(request.session))


async def login(request: Request) -> JSONResponse:
    request.session.regenerate()
    request.session["user"] = "ada"
    return JSONResponse(dict(request.session))


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(dict(websocket.session))
    await websocket.close()


def make_app(middleware: type[Any], **options: Any) -> Starlette:
    routes = [
        Route("/view", view),
        Route("/put", put, methods=["POST"]),
        Route("/clear", clear, methods=["POST"]),
        Route("/idle", idle),
        Route("/append", append, methods=["POST"]),
        Route("/login", login, methods=["POST"]),
        WebSocketRoute("/ws", ws),
    ]
    return Starlette(routes=routes, middleware=[Middleware(middleware, **options)])


def client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def attributes(line: str) -> str:
    """A Set-Cookie line without its name and value: what both middlewares must agree on."""
    return line.partition(";")[2]
