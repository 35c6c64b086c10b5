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
