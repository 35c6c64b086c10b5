"""The Emmett cookie format: read and write what ``SessionManager.cookies`` puts on the wire.

Tokens are written as Emmett 2.8 (emmett-core ``encrypt_b64``) writes them:
``b64(salt):b64(HMAC-SHA256):b64(AES-256-CTR ciphertext)``, keys and nonce from
PBKDF2-HMAC-SHA256(key, salt, 1000 rounds), over a (zlib-compressed) pickle.
Emmett treats the 32-byte salt as opaque random bytes and it is covered by the
MAC, so asess stores its own times there, with a keyed tag binding the token to
its cookie name (:mod:`.legacy_salt`): Emmett still reads these tokens, and
asess gets server-side expiry and can tell its own tokens from others before
any PBKDF2. Tokens without that tag (written by Emmett, or by asess 0.1) and
the older Emmett 2.3/2.4 "legacy" tokens (``hex(HMAC-MD5):b64(AES-CFB
ciphertext)``) are read and flagged for reissue, unless
``accept_emmett_tokens=False`` refuses them unopened.
Derived keys of recent tokens are cached, so reading back a token just issued
skips PBKDF2; ``is_expensive`` tells the cookie store when it cannot.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from .._exceptions import ConfigurationError, InvalidToken, SessionError
from .._keys import KeyRing
from .._record import Record
from . import legacy_salt
from .b64 import b64decode, b64encode
from .base import TokenCodec
from .unpickle import dumps_plain, restricted_loads

#: Longest token text decoded; real cookies are far shorter.
MAX_TOKEN_LENGTH = 256 * 1024
#: Largest payload a token may inflate to (defeats zlib bombs).
MAX_PAYLOAD = 1024 * 1024

_PBKDF2_ROUNDS = 1000
_MAC_SIZE = 32
_LEGACY_HEX_MAC = re.compile(r"[0-9a-f]{32}")


class _Derived(NamedTuple):
    key_index: int
    aes_key: bytes
    mac_key: bytes
    nonce: bytes
    # The signature of the one ciphertext under this salt known good (this
    # process pickled it, or scanned its opcodes): a decode of exactly that
    # token skips the scan. Another ciphertext under the same salt has another
    # signature (HMAC-SHA256), so it is scanned, whoever sealed it.
    vetted: bytes | None = None
    # The salt carries asess's tag (checked when this entry was made).
    tagged: bool = False


class _LegacyKey(NamedTuple):
    aes_key: bytes
    iv: bytes
    mac_key: bytes


def _derive(index: int, secret: bytes, salt: bytes) -> _Derived:
    # cryptography's PBKDF2 measured 0.32 ms a call here against 0.56 ms for
    # hashlib.pbkdf2_hmac, with identical output (python -m bench.kdf).
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=80, salt=salt, iterations=_PBKDF2_ROUNDS)
    material = kdf.derive(secret)
    return _Derived(index, material[:32], material[32:64], material[64:])


def _legacy_key(secret: bytes) -> _LegacyKey:
    # Emmett 2.4 padded the key with "." to 32 bytes and reused its head as IV;
    # the MAC key is the *text* of the key's SHA-1 hex digest.
    aes_key = secret[:32].ljust(32, b".")
    mac_key = hashlib.sha1(secret).hexdigest().encode("ascii")  # noqa: S324 - Emmett's format
    return _LegacyKey(aes_key, aes_key[:16], mac_key)


def _ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return cipher.update(data) + cipher.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _cfb64_decrypt(key: _LegacyKey, ciphertext: bytes) -> bytes:
    """AES-CFB with 64-bit segments, which ``cryptography`` does not offer.

    Segment i is XORed with the first half of AES(register_i), and on
    decryption every register is known: (IV || ciphertext)[8i : 8i + 16]. So
    one ECB call over all registers replaces a Python loop over segments.
    """
    stream = key.iv + ciphertext
    count = len(ciphertext) // 8
    registers = b"".join(stream[8 * i : 8 * i + 16] for i in range(count))
    ecb = Cipher(algorithms.AES(key.aes_key), modes.ECB()).encryptor()  # noqa: S305 - builds CFB
    blocks = ecb.update(registers) + ecb.finalize()
    keystream = b"".join(blocks[16 * i : 16 * i + 8] for i in range(count))
    return _xor(ciphertext, keystream)


def _is_zlib(payload: bytes) -> bool:
    # Pickles start with 0x80 (protocol 2+) or an opcode, and "x" is no
    # opcode, so a valid zlib header is unambiguous: both forms are read
    # whatever compression_level says.
    return len(payload) >= 2 and payload[0] == 0x78 and (payload[0] << 8 | payload[1]) % 31 == 0


def _inflate(payload: bytes, padding: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(payload, MAX_PAYLOAD + 1)
    except zlib.error as exc:
        raise InvalidToken(f"bad zlib data: {exc}") from exc
    if len(out) > MAX_PAYLOAD:
        raise InvalidToken(f"payload inflates past {MAX_PAYLOAD} bytes")
    if not inflater.eof:
        raise InvalidToken("truncated zlib data")
    if inflater.unused_data.strip(padding):
        raise InvalidToken("data after the zlib stream")
    return out


class LegacyCodec(TokenCodec):
    """Cookie tokens in Emmett's wire format, readable by Emmett 2.8 itself.

    Args:
        keys: the first key encrypts; every key decrypts (a token read with
            another key is flagged for reissue).
        compression_level: zlib level for new tokens, 0 for none; it must
            match Emmett's setting if Emmett reads the same cookies.
        mapping_factory: called with a plain dict for every nested Emmett
            ``sdict`` (default: keep the plain dict).
        extra_classes: more ``(module, name) -> object`` globals the unpickler
            admits, and whose instances are written as themselves; read at
            every use, so a mapping may compute its entries (classes created
            after the codec, such as Emmett's ORM rows).
        cache_size: how many derived keys to remember (0 disables the cache).
        cookie_name: the cookie the tokens travel in; the salt's tag binds it.
        accept_emmett_tokens: read tokens asess did not write (Emmett's, asess
            0.1's, Emmett 2.4's); with False they are refused before any key
            derivation, and only tokens tagged by these keys for this cookie
            are opened.
    """

    def __init__(
        self,
        keys: KeyRing,
        compression_level: int = 0,
        *,
        mapping_factory: Callable[[dict[Any, Any]], Any] | None = None,
        extra_classes: Mapping[tuple[str, str], Any] | None = None,
        cache_size: int = 1024,
        cookie_name: str = "asess_session",
        accept_emmett_tokens: bool = True,
    ) -> None:
        if not 0 <= compression_level <= 9:
            raise ConfigurationError(
                f"compression_level must be 0 (off) to 9, not {compression_level!r}"
            )
        if cache_size < 0:
            raise ConfigurationError(f"cache_size must be 0 or more, not {cache_size!r}")
        self._secrets = tuple(secret.value for secret in keys)
        self._legacy_keys = tuple(_legacy_key(secret) for secret in self._secrets)
        self._level = compression_level
        self._mapping_factory = mapping_factory
        self._extra_classes = extra_classes
        self._cache_size = cache_size
        self._tags = legacy_salt.SaltTags(self._secrets, cookie_name)
        self._foreign = accept_emmett_tokens
        # salt -> derived keys. The key index lives in the value: a salt we
        # issued belongs to exactly one key, so a cache hit whose MAC fails is
        # refused at once instead of running PBKDF2 for the other keys.
        self._cache: OrderedDict[bytes, _Derived] = OrderedDict()
        self._lock = threading.Lock()

    # -- cache -------------------------------------------------------------

    def _cached(self, salt: bytes) -> _Derived | None:
        with self._lock:
            derived = self._cache.get(salt)
            if derived is not None:
                self._cache.move_to_end(salt)
            return derived

    def _remember(self, salt: bytes, derived: _Derived) -> None:
        if not self._cache_size:
            return
        with self._lock:
            self._cache[salt] = derived
            self._cache.move_to_end(salt)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def is_expensive(self, token: str | None) -> bool:
        if token is None:
            return True  # a fresh salt always needs PBKDF2
        if len(token) > MAX_TOKEN_LENGTH or token.count(":") != 2:
            return False  # refused at once, or a legacy token (no key derivation)
        try:
            salt = b64decode(token.partition(":")[0])
        except ValueError:
            return False
        with self._lock:
            if salt in self._cache:
                return False
        try:
            ours = self._tags.owner(salt) is not None
        except InvalidToken:
            return False  # refused by its tag, without a key derivation
        return ours or self._foreign

    # -- encode ------------------------------------------------------------

    def encode(self, record: Record) -> str:
        extra = self._extra_classes
        types = [v for v in extra.values() if isinstance(v, type)] if extra else ()
        try:
            payload = dumps_plain(record.data, extra_classes=types)
        except TypeError as exc:
            raise SessionError(
                f"the session holds data that cannot be stored in a legacy cookie ({exc}); "
                "keep to plain data (str, numbers, bool, None, lists, tuples, dicts, sets, "
                "bytes, datetimes, Decimal, UUID), or store its id or str() instead"
            ) from exc
        if self._level:
            payload = zlib.compress(payload, self._level)
        salt = self._salt(record)
        derived = _derive(0, self._secrets[0], salt)
        ciphertext = _ctr(derived.aes_key, derived.nonce, payload)
        signature = hmac.digest(derived.mac_key, ciphertext, "sha256")
        self._remember(salt, derived._replace(vetted=signature, tagged=True))
        return f"{b64encode(salt)}:{b64encode(signature)}:{b64encode(ciphertext)}"

    def _salt(self, record: Record) -> bytes:
        return self._tags.new_salt(record)

    # -- decode ------------------------------------------------------------

    def decode(self, token: str, now: float) -> Record:
        try:
            return self._decode(token, now)
        except InvalidToken:
            raise
        except Exception as exc:  # the contract: a bad token never raises anything else
            raise InvalidToken(f"undecodable token ({type(exc).__name__})") from exc

    def _decode(self, token: str, now: float) -> Record:
        if not isinstance(token, str):
            raise InvalidToken("token is not text")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"token longer than {MAX_TOKEN_LENGTH} characters")
        parts = token.split(":")
        if len(parts) == 3:
            return self._decode_current(parts, now)
        if len(parts) == 2:
            return self._decode_legacy(parts[0], parts[1], now)
        raise InvalidToken("not an Emmett token")

    def _decode_current(self, parts: list[str], now: float) -> Record:
        try:
            salt, signature, ciphertext = (b64decode(part) for part in parts)
        except ValueError as exc:
            raise InvalidToken(f"bad base64: {exc}") from exc
        if len(salt) != legacy_salt.SIZE or len(signature) != _MAC_SIZE or not ciphertext:
            raise InvalidToken("wrong salt, signature or ciphertext length")
        derived = self._cached(salt)
        if derived is not None:
            expected = hmac.digest(derived.mac_key, ciphertext, "sha256")
            if not hmac.compare_digest(expected, signature):
                raise InvalidToken("bad signature")
        else:
            # The tag names the one key to derive, or refuses the salt unopened.
            owner = self._tags.owner(salt)
            if owner is None and not self._foreign:
                raise InvalidToken("not written by asess (accept_emmett_tokens=False)")
            keys = range(len(self._secrets)) if owner is None else (owner,)
            derived = self._verify(salt, signature, ciphertext, keys)._replace(
                tagged=owner is not None
            )
        # The salt is authenticated now: check expiry before any unpickling.
        times = legacy_salt.times(salt, now, tagged=derived.tagged)
        plaintext = _ctr(derived.aes_key, derived.nonce, ciphertext)
        known = derived.vetted is not None and hmac.compare_digest(derived.vetted, signature)
        data = self._load(plaintext, b"", scan=not known)
        self._remember(salt, derived._replace(vetted=signature))
        if times is None:
            # Written by Emmett: a random salt, so no times; rewrite it as ours.
            return Record(data, created_at=now, issued_at=now, reissue=True)
        created, issued, expires, lifetime = times
        # An untagged asess salt (0.1) is rewritten once, tagged and bound to the cookie.
        reissue = derived.key_index > 0 or not derived.tagged
        return Record(data, created, issued, expires, lifetime, reissue=reissue)

    def _verify(
        self, salt: bytes, signature: bytes, ciphertext: bytes, keys: range | tuple[int]
    ) -> _Derived:
        for index in keys:
            secret = self._secrets[index]
            derived = _derive(index, secret, salt)
            expected = hmac.digest(derived.mac_key, ciphertext, "sha256")
            if hmac.compare_digest(expected, signature):
                return derived
        raise InvalidToken("bad signature (tampered, or written with an unknown key)")

    def _decode_legacy(self, mac_hex: str, body: str, now: float) -> Record:
        if not self._foreign:
            raise InvalidToken("Emmett 2.4 token refused (accept_emmett_tokens=False)")
        if not _LEGACY_HEX_MAC.fullmatch(mac_hex):
            raise InvalidToken("bad legacy signature encoding")
        try:
            ciphertext = b64decode(body)
        except ValueError as exc:
            raise InvalidToken(f"bad base64: {exc}") from exc
        if not ciphertext or len(ciphertext) % 32:
            raise InvalidToken("legacy ciphertext is not whole 32-byte blocks")
        message = body.encode("ascii")
        for key in self._legacy_keys:
            expected = hmac.digest(key.mac_key, message, "md5").hex()
            if hmac.compare_digest(expected, mac_hex):
                break
        else:
            raise InvalidToken("bad legacy signature (tampered, or written with an unknown key)")
        # Emmett 2.4 padded the plaintext with "." to 32-byte blocks; a pickle
        # stops reading at its STOP opcode, and zlib leaves the dots unused.
        data = self._load(_cfb64_decrypt(key, ciphertext), b".", scan=True)
        return Record(data, created_at=now, issued_at=now, reissue=True)

    def _load(self, payload: bytes, padding: bytes, *, scan: bool) -> dict[str, Any]:
        if _is_zlib(payload):
            payload = _inflate(payload, padding)
        if len(payload) > MAX_PAYLOAD:
            raise InvalidToken(f"payload larger than {MAX_PAYLOAD} bytes")
        try:
            data = restricted_loads(
                payload,
                mapping_factory=self._mapping_factory,
                extra_classes=self._extra_classes,
                scan=scan,
            )
        except pickle.UnpicklingError as exc:
            raise InvalidToken(f"refused pickle: {exc}") from exc
        if not isinstance(data, Mapping):
            raise InvalidToken(f"payload is a {type(data).__name__}, not a dict")
        if not all(type(key) is str for key in data):
            raise InvalidToken("payload has non-text keys")
        return dict(data)
