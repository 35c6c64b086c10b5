"""Every hostile pickle of the test suite, loaded in a child interpreter that must survive.

A pickle that crashes the C unpickler (SIGSEGV, abort) would take the pytest
process down with it, or pass unseen when the fault is intermittent. Here each
one is fed, validly sealed, to the legacy codec and to the restricted
unpickler in a fresh interpreter that reports one line per payload and exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from . import test_codec_legacy, test_hostile, test_unpickle
from .test_fuzz import TRUNCATED_BYTEARRAY_IN_FRAME

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import hmac, json, pickle, sys, time
from asess import KeyRing, Record
from asess._codecs import legacy
from asess._codecs.b64 import b64encode
from asess._codecs.legacy import LegacyCodec
from asess._codecs.unpickle import restricted_loads
from asess._exceptions import InvalidToken

def seal(payload):
    now = time.time()
    salt = codec._salt(Record({}, now, now, now + 60))
    derived = legacy._derive(0, b"hostile-key", salt)
    ciphertext = legacy._ctr(derived.aes_key, derived.nonce, payload)
    signature = hmac.digest(derived.mac_key, ciphertext, "sha256")
    return ":".join(b64encode(part) for part in (salt, signature, ciphertext))

codec = LegacyCodec(KeyRing("hostile-key"))
for name, hexed in json.load(sys.stdin).items():
    payload = bytes.fromhex(hexed)
    try:
        restricted_loads(payload)
        loads = "loaded"
    except pickle.UnpicklingError:
        loads = "refused"
    try:
        codec.decode(seal(payload), time.time())
        token = "loaded"
    except InvalidToken:
        token = "refused"
    print(name, loads, token, flush=True)
"""


def _every_hostile_pickle(tmp_path: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for param in test_unpickle.CALLABLE_PAYLOADS:
        found[f"callable:{param.id}"] = param.values[0]
    for i, raw in enumerate(test_unpickle.MALFORMED_PAYLOADS):
        found[f"malformed:{i}"] = raw
    for i, raw in enumerate(test_unpickle.MEMO_BOMBS):
        found[f"memo-bomb:{i}"] = raw
    found.update({f"deep:{k}": v for k, v in test_unpickle.DEEP_PAYLOADS.items()})
    found.update({f"legacy:{k}": v for k, (v, _) in test_codec_legacy.HOSTILE.items()})
    found.update({f"app:{k}": v for k, v in test_hostile._payloads(tmp_path / "pwned").items()})
    found["fuzz:truncated-bytearray-in-frame"] = TRUNCATED_BYTEARRAY_IN_FRAME
    # The deep ones again as they travel: compressed, a 1.4 kB token for a million levels.
    for name in ("tuple-key-1e6", "tuple-in-set-1e6"):
        found[f"deep:{name}:zlib"] = zlib.compress(test_unpickle.DEEP_PAYLOADS[name], 9)
    return found


@pytest.mark.timeout(300)
def test_every_hostile_pickle_is_refused_by_a_surviving_process(tmp_path: Path) -> None:
    payloads = _every_hostile_pickle(tmp_path)
    assert len(payloads) > 40
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps({k: v.hex() for k, v in payloads.items()}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=280,
        check=False,
    )
    reported = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    missing = [name for name in payloads if name not in reported]
    assert done.returncode == 0, (done.returncode, missing[:3], done.stderr[-2000:])
    assert not missing
    # No sealed token gets through; the unpickler alone admits only the two that
    # are plain data but no session (a list, a dict with int keys).
    assert {name for name, how in reported.items() if how.endswith("loaded")} == set()
    plain = {name for name, how in reported.items() if how.startswith("loaded")}
    assert plain == {"legacy:list", "legacy:int-keys"}
    assert not (tmp_path / "pwned").exists()
