"""CPF encrypted at rest: one codec both storage adapters map through.

- The CPF is sealed with AES-256-GCM under the *active* key; the key id is stored beside
  the ciphertext, so older keys keep decrypting until `python -m service pii rotate` has
  re-encrypted everything with the newest one.
- Uniqueness and exact lookups use a blind index: HMAC-SHA256 of the canonical CPF under
  the *index key*. That key is never rotated: rotating it would change every index value
  at once and break the unique index for the duration of a re-index. (Rotating it is a
  re-index, a different operation: export --decrypt, new key file, import.)
- The additional authenticated data binds a ciphertext to its key id and its blind index,
  so a ciphertext moved to another row (with another CPF's index) does not decrypt.

Key document (file `pii.key_file`, or the env var named by `pii.key_env`), JSON:
    {"active": "k20260101-0a1b2c", "index_key": "<base64 32 bytes>",
     "keys": {"k20260101-0a1b2c": "<base64 32 bytes>", ...}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.keyfiles import create_private_file, replace_private_file
from service.settings import Settings, SettingsError

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class PiiKeyError(Exception):
    """A ciphertext names a key this key document does not have, or does not decrypt."""


@dataclass(frozen=True)
class SealedCpf:
    """What is stored for a CPF: the ciphertext (base64 of nonce + AES-GCM output), the id
    of the key that sealed it, and the blind index (hex HMAC) the unique index compares."""

    ciphertext: str
    key_id: str
    index: str


@dataclass(frozen=True)
class Keyring:
    active: str
    index_key: bytes
    keys: Mapping[str, bytes]

    @classmethod
    def generate(cls) -> Keyring:
        key_id = new_key_id()
        return cls(key_id, secrets.token_bytes(KEY_BYTES), {key_id: secrets.token_bytes(KEY_BYTES)})

    def with_new_key(self) -> Keyring:
        """The same keys plus a fresh one, which becomes the active key (the index key stays)."""
        key_id = new_key_id()
        return Keyring(
            key_id, self.index_key, {**self.keys, key_id: secrets.token_bytes(KEY_BYTES)}
        )

    def to_json(self) -> str:
        def b64(key: bytes) -> str:
            return base64.b64encode(key).decode()

        document = {
            "active": self.active,
            "index_key": b64(self.index_key),
            "keys": {key_id: b64(key) for key_id, key in self.keys.items()},
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Keyring:
        """Parse a key document; SettingsError naming `source` and what is wrong."""
        try:
            document = json.loads(text)
            keys = {str(k): _key(v) for k, v in document["keys"].items()}
            keyring = cls(str(document["active"]), _key(document["index_key"]), keys)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SettingsError(f"{source}: not a PII key document ({exc})") from None
        if keyring.active not in keys:
            raise SettingsError(f"{source}: the active key id {keyring.active!r} is not in keys")
        bad = [key_id for key_id in keys if not _KEY_ID.fullmatch(key_id)]
        if bad:
            raise SettingsError(f"{source}: key ids must match [A-Za-z0-9_-]{{1,64}}: {bad}")
        return keyring


def _key(value: Any) -> bytes:
    key = base64.b64decode(value, validate=True)
    if len(key) != KEY_BYTES:
        raise ValueError(f"a key must be {KEY_BYTES} bytes, base64-encoded")
    return key


def new_key_id() -> str:
    """Sortable by creation day and readable in logs: `k20260101-0a1b2c`."""
    return f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"


# A server re-reads its key document when it meets a key id it lacks, at most this often;
# `pii rotate` waits until the document is older than this (service/storage/admin.py).
KEY_RELOAD_COOLDOWN_S = 30.0


class PiiCodec:
    """Seals and opens personal data with a keyring. No I/O of its own: `reload` (read the
    key document again) is called on a key id it lacks, at most every
    `KEY_RELOAD_COOLDOWN_S`, so a running server picks up `pii new-key` + `pii rotate`."""

    def __init__(
        self,
        keyring: Keyring,
        reload: Callable[[], Keyring] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._use(keyring)
        self._reload, self._clock = reload, clock
        self._last_reload = clock()

    def _use(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    def _reloaded(self) -> bool:
        """Read the key document again (cooldown allowing); whether anything changed."""
        if self._reload is None or self._clock() - self._last_reload < KEY_RELOAD_COOLDOWN_S:
            return False
        self._last_reload = self._clock()
        try:
            keyring = self._reload()
        except (SettingsError, OSError) as exc:
            log.error("pii: the key document could not be read again: %s", exc)
            return False
        if keyring.index_key != self.keyring.index_key:
            log.error("pii: the key document's index key changed; keeping the keys in use")
            return False
        if keyring == self.keyring:
            return False
        log.warning(
            "pii: key document re-read: active key %s, key ids %s",
            keyring.active,
            ", ".join(sorted(keyring.keys)),
        )
        self._use(keyring)
        return True

    @property
    def active_key_id(self) -> str:
        return self.keyring.active

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def blind_index(self, cpf: str) -> str:
        return hmac.new(self.keyring.index_key, b"cpf\0" + cpf.encode(), hashlib.sha256).hexdigest()

    def fingerprint(self, data: bytes) -> str:
        """A keyed digest of `data` (idempotency request bodies): comparable, not reversible
        by guessing the few unknown fields of a body."""
        return hmac.new(self.keyring.index_key, b"body\0" + data, hashlib.sha256).hexdigest()

    def encrypt_cpf(self, cpf: str) -> SealedCpf:
        index = self.blind_index(cpf)
        key_id = self.active_key_id
        return SealedCpf(self._seal(cpf.encode(), key_id, f"cpf:{index}"), key_id, index)

    def decrypt_cpf(self, sealed: SealedCpf) -> str:
        return self._open(sealed.ciphertext, sealed.key_id, f"cpf:{sealed.index}").decode()

    def seal(self, data: bytes, purpose: str) -> str:
        """`data` sealed with the active key, as text: `<key id>:<base64>`."""
        return f"{self.active_key_id}:{self._seal(data, self.active_key_id, purpose)}"

    def open(self, text: str, purpose: str) -> bytes:
        key_id, _, ciphertext = text.partition(":")
        return self._open(ciphertext, key_id, purpose)

    def _seal(self, data: bytes, key_id: str, purpose: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, data, f"{key_id}:{purpose}".encode())
        return base64.b64encode(nonce + sealed).decode()

    def _open(self, ciphertext: str, key_id: str, purpose: str) -> bytes:
        cipher = self._ciphers.get(key_id)
        if cipher is None and _KEY_ID.fullmatch(key_id) and self._reloaded():
            cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PiiKeyError(f"no PII key with id {key_id!r} is configured")
        try:
            raw = base64.b64decode(ciphertext, validate=True)
            return cipher.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{key_id}:{purpose}".encode()
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise PiiKeyError(f"a value sealed with key {key_id!r} does not decrypt") from None


# --- where the keys come from ---


def key_source(settings: Settings) -> tuple[str, Path | None]:
    """(`env NAME` or the key file's path as text, the key file or None when env is used)."""
    pii = settings.pii
    if os.environ.get(pii.key_env):
        return f"env {pii.key_env}", None
    path = settings.path(pii.key_file)
    return str(path), path


def load_codec(settings: Settings) -> PiiCodec:
    """The codec of the configured keys (re-read on an unknown key id); creates the key file
    (0600) when it is missing and `pii.create_key_file` allows (the embedded profile).
    SettingsError otherwise."""
    return PiiCodec(_read_keyring(settings), reload=lambda: _read_keyring(settings))


def _read_keyring(settings: Settings) -> Keyring:
    source, path = key_source(settings)
    if path is None:
        return Keyring.from_json(os.environ[settings.pii.key_env], source)
    if not path.exists():
        if not settings.pii.create_key_file:
            raise SettingsError(
                f"pii.key_file: {path} does not exist (and pii.create_key_file is false): "
                f"restore it from your backup, or set {settings.pii.key_env}"
            )
        create_private_file(path, Keyring.generate().to_json().encode())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"pii.key_file: cannot read {path}: {exc.strerror}") from None
    return Keyring.from_json(text, f"pii.key_file {path}")


def add_key(settings: Settings) -> Keyring:
    """Append a fresh key to the key file and make it the active one."""
    source, path = key_source(settings)
    if path is None:
        raise SettingsError(
            f"the keys come from {source}: add a key there (`pii new-key --print` makes one)"
        )
    keyring = load_codec(settings).keyring.with_new_key()
    replace_private_file(path, keyring.to_json().encode())
    return keyring


def check_key_ids(in_use: Iterable[str], codec: PiiCodec, source: str) -> None:
    """Refuse to run when stored values name keys the configuration lacks."""
    missing = sorted(set(in_use) - codec.key_ids)
    if missing:
        raise SettingsError(
            f"pii: stored CPFs are encrypted with key id(s) {', '.join(missing)}, which "
            f"{source} does not have: restore the key document that holds them"
        )
