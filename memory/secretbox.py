"""Tool environment variables encrypted at rest (Fernet: AES-128-CBC with an HMAC-SHA256 tag).

The key comes from `MEMPROXY_SECRET_KEY` (a Fernet key, or any other string, stretched with SHA-256).
Without it the embedded backend generates `secret.key` (0600) in its data dir on first start; PostgreSQL
stores the values unencrypted (said at start), since replicas must share one key the operator gives.
A stored value is `fernet:<token>` around the JSON object; a plain JSON object (written before
encryption, or by a store opened without a key, as unit tests of the store do) is still read, and is
encrypted the next time the agent is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from typing import Any
import orjson
from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger("memproxy")

KEY_FILE = "secret.key"
PREFIX = "fernet:"


class SecretKeyError(RuntimeError):
    """The stored secrets cannot be read with this key."""


def fernet_key(configured: str) -> bytes:
    """A Fernet key as given, or one derived from any other secret string."""
    raw = configured.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def load_key(data_dir: str, configured: str | None) -> bytes:
    """The key to use: the configured one, else the data dir's key file (created 0600 when missing)."""
    if configured:
        return fernet_key(configured)
    path = os.path.join(data_dir, KEY_FILE)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    if not os.path.exists(path):
        # Written whole under a private name, then linked into place: a process starting alongside
        # either wins the link or reads the complete key the other one linked.
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    with open(path, "rb") as handle:
        return fernet_key(handle.read().decode())


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, values: dict[str, Any]) -> str:
        if not values:
            return "{}"
        return PREFIX + self._fernet.encrypt(orjson.dumps(values)).decode()

    def open_text(self, text: str) -> str:
        try:
            return self._fernet.decrypt(text[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SecretKeyError("stored tool variables cannot be decrypted with this MEMPROXY_SECRET_KEY "
                                 "(or data dir secret.key)") from None


def seal(values: dict[str, Any], box: SecretBox | None) -> str:
    """The stored form of secret-bearing JSON (tool variables, MCP config); plain JSON without a box."""
    return box.seal(values) if box is not None else orjson.dumps(values).decode()


def unseal_text(text: str | None, box: SecretBox | None) -> str | None:
    """The JSON text of stored variables; SecretKeyError when encrypted under another key (or with no box)."""
    if text is None or not text.startswith(PREFIX):
        return text
    if box is None:
        raise SecretKeyError("stored tool variables are encrypted but no secret key is configured")
    return box.open_text(text)
