"""Bad configuration fails at construction, saying what to change."""

import pytest

from asess import ConfigurationError, SessionManager


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"key": ""}, "empty"),
        ({"key": []}, "no session key"),
        ({"key": "k", "samesite": "Lax "}, "samesite"),
        ({"key": "k", "samesite": "None"}, "secure=True"),
        ({"key": "k", "compression_level": 10}, "compression_level"),
        ({"key": "k", "compression_level": -1}, "compression_level"),
        ({"key": "k", "encryption_mode": "rot13"}, "encryption_mode"),
        ({"key": "k", "cookie_name": "a b"}, "cookie_name"),
        ({"key": "k", "cookie_name": "é"}, "cookie_name"),
        ({"key": "k", "expire": 0}, "expire"),
        ({"key": "k", "max_age": -5}, "max_age"),
    ],
)
def test_cookie_manager_configuration_errors(kw, message):
    with pytest.raises(ConfigurationError, match=message):
        SessionManager.cookies(**kw)


def test_configuration_error_is_a_session_error_and_value_error():
    from asess import SessionError

    with pytest.raises(SessionError):
        SessionManager.memory(samesite="bogus")
    with pytest.raises(ValueError):
        SessionManager.memory(samesite="bogus")


def test_factories_return_fresh_instances():
    a, b = SessionManager.memory(), SessionManager.memory()
    assert a is not b and a.store is not b.store


def test_keys_never_show_in_repr():
    from asess import KeyRing, Secret

    assert "hunter2" not in repr(Secret("hunter2"))
    assert "hunter2" not in repr(KeyRing(["hunter2", "old"]))
