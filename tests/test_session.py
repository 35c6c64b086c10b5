import copy
import json
import pickle

import pytest

from asess import Session, SessionNotLoaded


def loaded(data=None):
    s = Session()
    s._fill(data or {}, session_id=None, lifetime=None, new=data is None)
    return s


def test_attribute_style_reads_none_when_missing():
    s = loaded()
    assert s.counter is None
    s.counter = 1
    assert s["counter"] == 1 and s.counter == 1
    del s.counter
    assert "counter" not in s
    with pytest.raises(AttributeError):
        del s.counter


def test_mapping_api_matches_dict():
    s = loaded({"a": 1})
    s |= {"b": 2}
    assert s.setdefault("c", 3) == 3
    assert s.copy() == {"a": 1, "b": 2, "c": 3}
    assert type(s.copy()) is dict
    assert json.loads(json.dumps(s)) == {"a": 1, "b": 2, "c": 3}
    assert s.popitem() == ("c", 3)
    assert s.pop("missing", None) is None
    with pytest.raises(KeyError):
        s.pop("missing")
    assert sorted(s) == ["a", "b"] and len(s) == 2
    assert dict(s.items()) == {"a": 1, "b": 2}
    s.update(a=5)
    assert s == {"a": 5, "b": 2}
    s.clear()
    assert s == {}


def test_method_names_are_never_shadowed_by_data():
    s = loaded({"items": "data", "mark_accessed": 1})
    assert callable(s.items) and callable(s.mark_accessed)
    s.mark_accessed()
    assert s.accessed
    with pytest.raises(AttributeError):
        s.id = "forged"
    with pytest.raises(AttributeError):
        s.modified = False
    with pytest.raises(AttributeError):
        s._anything


def test_modified_tracks_nested_changes():
    s = loaded({"cart": [1], "user": {"name": "a"}})
    assert not s.modified
    s.cart.append(2)
    assert s.modified
    s2 = loaded({"user": {"name": "a"}})
    s2.user["name"] = "b"
    assert s2.modified
    s3 = loaded({"x": 1})
    s3.x = 1  # same value: nothing changed
    assert not s3.modified


def test_new_empty_session_is_not_modified():
    assert not loaded().modified


def test_regenerate_invalidate_and_expire_after_are_changes():
    s = loaded({"a": 1})
    s.regenerate()
    assert s.modified
    s = loaded({"a": 1})
    s.invalidate()
    assert s == {} and s.modified
    s = loaded({"a": 1})
    s.expire_after(0)
    assert s.lifetime == 0 and s.modified
    with pytest.raises(ValueError):
        s.expire_after(-1)


def test_unloaded_session_refuses_data_access():
    s = Session(loaded=False)
    for use in (lambda: s["a"], lambda: s.a, lambda: len(s), lambda: list(s), lambda: s.get("a")):
        with pytest.raises(SessionNotLoaded, match=r"session\.load"):
            use()
    with pytest.raises(SessionNotLoaded):
        s["a"] = 1
    assert not s.modified


def test_copies_and_pickles_are_plain_dicts():
    s = loaded({"a": [1]})
    for c in (copy.copy(s), copy.deepcopy(s), pickle.loads(pickle.dumps(s))):
        assert type(c) is dict and c == {"a": [1]}
    deep = copy.deepcopy(s)
    deep["a"].append(2)
    assert s["a"] == [1]


def test_reading_marks_accessed():
    s = loaded({"a": 1})
    assert not s.accessed
    _ = s.a
    assert s.accessed


def test_data_the_digest_cannot_encode_counts_as_modified_instead_of_failing():
    s = loaded({"obj": object()})
    assert s.modified
    s2 = loaded({1: "int key"})
    assert not s2.modified


# -- change detection through the lifecycle: one encoding, no missed or spurious writes ---------


class _CountingStore:
    """Wraps a memory store's update to count writes."""

    def __init__(self, manager):
        self.updates = 0
        store = manager.store
        original = store.update

        async def update(*args, **kwargs):
            self.updates += 1
            return await original(*args, **kwargs)

        store.update = update


async def _stored(manager, payload: bytes) -> str:
    from asess._ids import new_session_id

    sid = new_session_id()
    await manager.store.create(sid, payload, 3600, manager.policy.clock.now())
    return f"{manager.cookie_name}={sid}"


@pytest.mark.parametrize(
    "data",
    [
        {"cart": [1, 2], "user": {"id": 7}},  # plain: the stored bytes are the fingerprint
        {"tags": {"a", "b", "c", "d", "e"}},  # a set may re-encode in another order
        {"when": __import__("datetime").datetime(2024, 1, 1)},
    ],
)
async def test_an_unchanged_session_is_not_written_back(data):
    from asess import Record, SessionManager
    from asess._serialize import dump_record

    manager = SessionManager.memory()
    counting = _CountingStore(manager)
    now = manager.policy.clock.now()
    header = await _stored(manager, dump_record(Record(data, now, now, now + 3600)))
    async with manager.lifecycle(header) as session:
        assert dict(session) == data
    assert counting.updates == 0
    async with manager.lifecycle(header) as session:
        session["cart" if "cart" in data else "x"] = "changed"
    assert counting.updates == 1


async def test_a_record_in_another_layout_unchanged_is_not_written_back():
    from asess import SessionManager

    manager = SessionManager.memory()
    counting = _CountingStore(manager)
    now = manager.policy.clock.now()
    spaced = {"v": 1, "c": now, "i": now, "e": now + 3600, "l": None, "d": {"a": [1, {"b": 2}]}}
    header = await _stored(manager, json.dumps(spaced, indent=1).encode())
    async with manager.lifecycle(header) as session:
        assert session["a"] == [1, {"b": 2}]
    assert counting.updates == 0


async def test_nested_and_late_changes_are_still_seen():
    from asess import SessionManager

    manager = SessionManager.memory()
    counting = _CountingStore(manager)
    lifecycle = manager.lifecycle(None)
    async with lifecycle as session:
        session["cart"] = [1]
    header = f"{manager.cookie_name}={session.id}"
    lifecycle = manager.lifecycle(header)
    session = await lifecycle.start()
    session["cart"].append(2)  # nested change, before the response
    await lifecycle.commit()
    assert counting.updates == 1
    session["cart"].append(3)  # after the response started
    await lifecycle.finish()
    assert counting.updates == 2
    async with manager.lifecycle(header) as session:
        assert session["cart"] == [1, 2, 3]
