"""Legacy tokens: ours carry a keyed tag bound to the cookie; others can be refused unopened.

With ``accept_emmett_tokens=False`` a token asess did not write (Emmett's
random salt, Emmett 2.4's format, asess 0.1's untagged salt) is refused before
any key derivation; with ``True`` (the default) it is read and re-issued in
asess's form. Emmett itself still reads every token asess writes.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
from emmett import session
from emmett.sessions import SessionManager as EmmettManager
from emmett_core.cryptography import symmetric as emmett_crypto

from asess import KeyRing, Record, SessionManager
from asess._codecs import legacy
from asess._codecs.b64 import b64decode
from asess._codecs.legacy import LegacyCodec
from asess._exceptions import InvalidToken
from asess.emmett import SessionManager as EmmettAdapter

from .emmett_helpers import new_app
from .helpers import client, cookie_value
from .test_codec_legacy import KEY, LEGACY_VECTORS, NOW, SALTED_VECTORS, emmett_token

DATA = {"user": 7}


def codec(accept: bool = True, cookie: str = "s", keys: Any = KEY) -> LegacyCodec:
    return LegacyCodec(KeyRing(keys), cookie_name=cookie, accept_emmett_tokens=accept)


def token_of(c: LegacyCodec, **times: Any) -> str:
    fields = {"created_at": NOW - 5, "issued_at": NOW, "expires_at": NOW + 600, **times}
    return c.encode(Record(dict(DATA), **fields))


def asess_0_1_token(expires: int = int(NOW) + 600) -> str:
    """A token as asess 0.1 wrote it: times in the salt, 12 random bytes, no tag."""
    salt = struct.pack(
        ">2sBBIIII12s", b"\xa5\x5e", 1, 0, int(NOW) - 5, int(NOW), expires, 0, os.urandom(12)
    )
    return emmett_token(pickle.dumps(DATA), KEY, salt)


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    real = legacy._derive
    monkeypatch.setattr(legacy, "_derive", lambda i, k, s: seen.append(s) or real(i, k, s))
    return seen


def foreign_tokens() -> dict[str, str]:
    return {
        "emmett": emmett_crypto.encrypt_b64(pickle.dumps(DATA), KEY),
        "asess-0.1": asess_0_1_token(),
        "garbage": ":".join(legacy.b64encode(os.urandom(n)) for n in (32, 32, 64)),
    }


@pytest.mark.parametrize("name", ["emmett", "asess-0.1", "garbage"])
def test_refused_before_any_key_derivation(name: str, derivations: list[bytes]) -> None:
    c = codec(accept=False)
    token = foreign_tokens()[name]
    assert c.is_expensive(token) is False  # no thread hop either: it is refused at once
    with pytest.raises(InvalidToken):
        c.decode(token, NOW)
    assert derivations == []


def test_emmett_2_4_tokens_are_refused_unopened() -> None:
    vector = LEGACY_VECTORS[0]
    assert codec(keys=vector["key"]).decode(vector["token"], NOW).data == vector["data"]
    with pytest.raises(InvalidToken, match="accept_emmett_tokens=False"):
        codec(accept=False, keys=vector["key"]).decode(vector["token"], NOW)


@pytest.mark.parametrize("vector", SALTED_VECTORS, ids=lambda v: v["writer"][:20])
def test_emmett_vectors_read_only_when_accepted(vector: dict[str, Any]) -> None:
    level = vector["compression_level"]
    accepting = LegacyCodec(KeyRing(vector["key"]), level, cookie_name="s")
    assert accepting.decode(vector["token"], NOW).reissue is True
    refusing = LegacyCodec(
        KeyRing(vector["key"]), level, cookie_name="s", accept_emmett_tokens=False
    )
    with pytest.raises(InvalidToken, match="accept_emmett_tokens=False"):
        refusing.decode(vector["token"], NOW)


@pytest.mark.parametrize("accept", [True, False])
def test_asess_tokens_read_either_way_with_one_derivation(
    accept: bool, derivations: list[bytes]
) -> None:
    token = token_of(codec(keys="old-key"))
    c = codec(accept=accept, keys=[KEY, "k2", "old-key"])
    record = c.decode(token, NOW)
    assert record.data == DATA and record.reissue is True  # an old key: re-issued
    assert record.expires_at == NOW + 600
    assert len(derivations) == 2  # the encode, then only the key the tag names


def test_asess_0_1_tokens_are_read_and_reissued_tagged() -> None:
    c = codec()
    record = c.decode(asess_0_1_token(), NOW)
    assert record.data == DATA and record.expires_at == NOW + 600
    assert record.reissue is True  # re-written tagged and bound to the cookie
    with pytest.raises(InvalidToken, match="expired"):
        c.decode(asess_0_1_token(expires=int(NOW) - 1), NOW)
    # Once re-issued, it reads under False too.
    reissued = c.encode(record)
    assert codec(accept=False).decode(reissued, NOW).data == DATA


@pytest.mark.parametrize("accept", [True, False])
def test_tokens_are_bound_to_their_cookie_name(accept: bool, derivations: list[bytes]) -> None:
    token = token_of(codec(cookie="app_a"))
    assert codec(accept=accept, cookie="app_a").decode(token, NOW).data == DATA
    derivations.clear()
    with pytest.raises(InvalidToken, match="for this cookie"):
        codec(accept=accept, cookie="app_b").decode(token, NOW)
    assert derivations == []


def test_emmett_reads_tagged_tokens() -> None:
    for cookie in ("s", "emt_session_data_shop"):
        token = token_of(codec(cookie=cookie))
        assert pickle.loads(emmett_crypto.decrypt_b64(token, KEY)) == DATA
        assert len(b64decode(token.split(":")[0])) == 32  # the salt size Emmett writes


def test_the_tag_is_checked_on_every_salt_byte() -> None:
    token = token_of(codec())
    salt, rest = token.split(":", 1)
    raw = b64decode(salt)
    for i in range(len(raw)):
        for bit in (0x01, 0x80):
            bad = bytearray(raw)
            bad[i] ^= bit
            forged = f"{legacy.b64encode(bytes(bad))}:{rest}"
            with pytest.raises(InvalidToken):
                codec(accept=False).decode(forged, NOW)


# -- through the managers ---------------------------------------------------------


@pytest.mark.parametrize("accept", [True, False])
async def test_core_manager_option(accept: bool) -> None:
    manager = SessionManager.cookies(KEY, cookie_name="s", accept_emmett_tokens=accept)
    emmett = emmett_crypto.encrypt_b64(pickle.dumps({"counter": 41}), KEY)
    async with client(manager) as c:
        c.cookies.set("s", emmett)
        response = await c.get("/")
        assert response.text == ("42" if accept else "1")
        assert cookie_value(response, "s") not in (None, emmett)


def test_core_manager_option_must_be_a_bool() -> None:
    from asess import ConfigurationError

    with pytest.raises(ConfigurationError, match="accept_emmett_tokens"):
        SessionManager.cookies(KEY, accept_emmett_tokens="no")  # type: ignore[arg-type]


@pytest.fixture
def own_loop() -> Any:
    """The loop Emmett's test client runs on, closed afterwards.

    Left to itself the client makes one and never closes it, and whichever
    later test drops it gets the ResourceWarning.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.mark.parametrize("accept", [True, False])
def test_emmett_adapter_option(accept: bool, tmp_path: Path, own_loop: Any) -> None:
    apps = []
    for where, make in (
        ("emmett", lambda: EmmettManager.cookies(KEY)),
        ("asess", lambda: EmmettAdapter.cookies(KEY, accept_emmett_tokens=accept)),
    ):
        app = new_app(tmp_path / where, "shop")
        app.pipeline = [make()]

        @app.route("/counter")
        async def counter() -> str:
            session.counter = (session.counter or 0) + 1
            return str(session.counter)

        apps.append(app.test_client())
    emmett_browser, asess_browser = apps
    assert emmett_browser.get("/counter").data == "1"
    for cookie in emmett_browser.cookie_jar:
        asess_browser.cookie_jar.set_cookie(cookie)
    assert asess_browser.get("/counter").data == ("2" if accept else "1")
    # And back: Emmett reads what asess wrote, whatever the setting.
    emmett_browser.cookie_jar.clear()
    for cookie in asess_browser.cookie_jar:
        emmett_browser.cookie_jar.set_cookie(cookie)
    assert emmett_browser.get("/counter").data == ("3" if accept else "2")
