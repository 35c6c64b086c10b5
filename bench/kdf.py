"""``python -m bench.kdf``: what one PBKDF2 of Emmett's legacy format costs, per library.

Emmett's cookie format derives 80 bytes with PBKDF2-HMAC-SHA256 over 1000
iterations for every token it writes and every token it reads. The cost of that
one call decides the legacy codec's figures, so this compares the
implementations at hand (``hashlib``, ``cryptography``, emmett-core's Rust
one) on this thread's CPU time, and checks they agree byte for byte.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable

KEY = b"bench-secret-key-0123456789abcdef0123456789abcdef"


def implementations() -> dict[str, Callable[[bytes], bytes]]:
    import hashlib

    impls: dict[str, Callable[[bytes], bytes]] = {
        "hashlib.pbkdf2_hmac": lambda salt: hashlib.pbkdf2_hmac("sha256", KEY, salt, 1000, 80),
    }
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

        impls["cryptography PBKDF2HMAC"] = lambda salt: PBKDF2HMAC(
            hashes.SHA256(), 80, salt, 1000
        ).derive(KEY)
    except ImportError:
        pass
    try:
        core = importlib.import_module("emmett_core._emmett_core")
        impls["emmett-core pbkdf2_sha256"] = lambda salt: bytes(
            core.pbkdf2_sha256(KEY, salt, 1000, 80)
        )
    except ImportError:
        pass
    return impls


def main() -> int:
    impls = implementations()
    salt = os.urandom(32)
    outputs = {name: fn(salt) for name, fn in impls.items()}
    if len(set(outputs.values())) != 1:
        print("implementations disagree:", outputs)
        return 1
    for _ in range(3):
        cells = []
        for name, fn in impls.items():
            start, n = time.thread_time(), 0
            while time.thread_time() - start < 0.3:
                fn(os.urandom(32))
                n += 1
            cells.append(f"{name} {(time.thread_time() - start) / n * 1000:.3f} ms")
        print("   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
