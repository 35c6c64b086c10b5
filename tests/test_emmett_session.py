"""``EmmettSession`` and the adapter's helpers, without a running app.

The session is driven through a real lifecycle on the memory store: Emmett's
``SessionData`` interface (``_sid``, ``_modified``, ``_expiration``,
``_expires_after``), sdict reads and copies, rows flattened before a save, and
synchronous Redis clients (as Emmett's docs pass them) turned into async ones.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import emmett.orm.models
import pytest
import redis
import redis.asyncio as aioredis
from emmett.datastructures import sdict
from emmett.orm.objects import Row, StructuredRow
from emmett.security import CSRFStorage

import asess.emmett
from asess import SessionManager as CoreManager
from asess.emmett import EmmettSession
from asess.emmett._data import EmmettClasses, flatten_rows, to_emmett
from asess.emmett._manager import _async_redis


def test_all_is_sorted_and_complete() -> None:
    public = {n for n in dir(asess.emmett) if not n.startswith("_")}
    assert asess.emmett.__all__ == sorted(asess.emmett.__all__)
    assert set(asess.emmett.__all__) == public


async def saved_session(manager: CoreManager, data: dict[str, Any]) -> str:
    lifecycle = manager.lifecycle(None, session_factory=EmmettSession)
    async with lifecycle as s:
        s.update(data)
        lines = await lifecycle.commit()
    return lines[0].partition("=")[2].partition(";")[0]


async def test_sessiondata_interface() -> None:
    manager = CoreManager.memory()
    sid = await saved_session(manager, {"n": 1})
    lifecycle = manager.lifecycle(f"asess_session={sid}", session_factory=EmmettSession)
    async with lifecycle as s:
        assert isinstance(s, EmmettSession)
        assert s._sid == sid == s.id
        assert s._modified is False
        assert s._expiration is None
        s._expires_after(600)
        assert s._expiration == 600 and s._modified is True
        lines = await lifecycle.commit()
    assert "Max-Age=600" in lines[0]

    lifecycle = manager.lifecycle(f"asess_session={sid}", session_factory=EmmettSession)
    async with lifecycle as s:
        assert s._expiration == 600
        s._expires_after(600.0)  # the same lifetime: nothing to save
        assert s._modified is False
        s._expires_after(0)  # falsy: back to the manager's expire, as in Emmett
        assert s._expiration is None and s._modified is True
        lines = await lifecycle.commit()
    assert "Max-Age=3600" in lines[0]


async def test_sdict_reads_and_copies() -> None:
    lifecycle = CoreManager.memory().lifecycle(None, session_factory=EmmettSession)
    async with lifecycle as s:
        s.cart = {"items": [{"sku": "a"}]}
        assert s["missing"] is None and s.missing is None
        shallow, deep = copy.copy(s), copy.deepcopy(s)
        assert type(shallow) is sdict and type(deep) is sdict and type(s.copy()) is sdict
        deep.cart["items"].append("x")
        assert s.cart == {"items": [{"sku": "a"}]}
        assert shallow.cart is s.cart


async def test_underscore_keys_read_as_none_like_sdict() -> None:
    """Emmett keeps ``_flashes`` and ``_csrf`` in the session under such names."""
    lifecycle = CoreManager.memory().lifecycle(None, session_factory=EmmettSession)
    async with lifecycle as s:
        assert s._flashes is None
        s._flashes = [("info", "hi")]
        assert s["_flashes"] == [("info", "hi")]
        assert s._modified is True
        with pytest.raises(AttributeError):
            s.__missing_dunder__  # protocols probing dunders get an error


def test_csrf_storage_comes_back_as_itself() -> None:
    loaded = to_emmett({"_csrf": {"t1": 1, "t2": 2}, "other": {"_csrf": {}}})
    assert type(loaded._csrf) is CSRFStorage
    assert list(loaded._csrf) == ["t1", "t2"]  # oldest first, as CSRFStorage expects
    assert type(loaded.other._csrf) is sdict  # only the session's own key
    kept = CSRFStorage(t=1)
    assert to_emmett({"_csrf": kept})._csrf is kept


def test_loaded_data_gets_sdicts_everywhere() -> None:
    data = {"a": {"b": [{"c": 1}, ({"d": 2},)]}, "n": 1}
    converted = to_emmett(data)
    assert type(converted) is sdict
    assert converted.a.b[0].c == 1
    assert converted.a.b[1][0].d == 2
    assert type(data["a"]) is dict  # the input is not modified


def test_rows_are_flattened_once_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    class PlainRowForTest(Row):
        pass

    user = PlainRowForTest(id=3, email="a@b.c", nested=PlainRowForTest(x=1))
    data = {"auth": sdict(user=user, remember=True), "other": [1]}
    with caplog.at_level(logging.WARNING, logger="asess.emmett"):
        assert flatten_rows(data) is True
        assert flatten_rows({"again": PlainRowForTest(id=4)}) is True
    assert caplog.text.count("PlainRowForTest is stored in the session as an sdict") == 1
    flat = data["auth"].user
    assert type(flat) is sdict and flat == {"id": 3, "email": "a@b.c", "nested": {"x": 1}}
    assert type(flat.nested) is sdict
    assert data["other"] == [1]
    assert flatten_rows(data) is False


def test_row_classes_are_looked_up_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    classes = EmmettClasses()
    assert ("emmett.orm.objects", "Row") in classes
    assert ("emmett.orm.objects", "StructuredRow") in classes
    assert classes["emmett.security", "CSRFStorage"] is CSRFStorage
    assert ("emmett.orm.models", "LateModelRow") not in classes
    # What Emmett does when a model is defined, after the pipe exists.
    late = type("LateModelRow", (StructuredRow,), {"__module__": "emmett.orm.models"})
    monkeypatch.setattr(emmett.orm.models, "LateModelRow", late, raising=False)
    assert classes["emmett.orm.models", "LateModelRow"] is late
    assert ("emmett.orm.models", "Model") not in classes  # not a row class


@pytest.mark.parametrize(
    ("sync_client", "expected"),
    [
        (
            redis.Redis(host="10.0.0.5", port=6390, db=3, password="pw", username="u"),
            {"host": "10.0.0.5", "port": 6390, "db": 3, "password": "pw", "username": "u"},
        ),
        (
            redis.Redis(unix_socket_path="/run/redis.sock", db=1),
            {"path": "/run/redis.sock", "db": 1},
        ),
        (
            redis.Redis(host="cache", port=6380, ssl=True, ssl_cert_reqs="none"),
            {"host": "cache", "port": 6380, "ssl_cert_reqs": "none"},
        ),
    ],
    ids=["tcp", "unix", "tls"],
)
async def test_a_sync_redis_client_becomes_an_async_one(
    sync_client: redis.Redis, expected: dict[str, Any]
) -> None:
    client, close = _async_redis(sync_client)
    assert isinstance(client, aioredis.Redis) and close is not None
    pool = client.connection_pool
    assert pool.connection_class.__name__ == sync_client.connection_pool.connection_class.__name__
    assert pool.connection_class.__module__ == "redis.asyncio.connection"
    for key, value in expected.items():
        assert pool.connection_kwargs[key] == value
    await close()


async def test_an_async_redis_client_is_used_as_given() -> None:
    given = aioredis.Redis()
    assert _async_redis(given) == (given, None)
    await given.aclose()
