"""Reporter data protection: per-record encryption, keyed MACs for lookup, the master key.

Chat-app reports may carry a reporter's app, username, names and phone number. They are kept apart
from case data, each record sealed with AES-GCM under its own random data key; the data key is
sealed ("wrapped") by the master key, which never enters the database. Deleting a record's wrapped
key shreds the record even where an old copy of the ciphertext survives somewhere. A keyed HMAC of
the normalised phone number and username (never a plain hash, which could be brute-forced over
the phone-number space) lets repeat reporters and data-subject requests find their records while
the data exists.

Master key: ``NTD_MASTER_KEY`` (base64 of 32 bytes) or ``NTD_MASTER_KEY_FILE`` (a file holding
that base64); when neither is set, a key file is created beside the database with mode 0600 and a
warning (losing that file makes existing reporter records unreadable — by design).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import ConfigError

log = logging.getLogger("ntd.privacy")

KEY_ENV = "NTD_MASTER_KEY"
KEY_FILE_ENV = "NTD_MASTER_KEY_FILE"
REPORTER_KEYS = ("app", "username", "first_name", "last_name", "phone")
APPS = ("whatsapp", "telegram", "signal", "viber", "kik")
_NONCE = 12


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise ConfigError(f"{where}: master key is not valid base64") from exc
    if len(key) != 32:
        raise ConfigError(f"{where}: master key must be 32 bytes (base64 of 32 random bytes)")
    return key


def load_master_key(db_path: str | os.PathLike[str] | None) -> bytes:
    """The master key from the environment, a key file, or a new key file beside the database."""
    if os.environ.get(KEY_ENV):
        return _decode_key(os.environ[KEY_ENV], KEY_ENV)
    if os.environ.get(KEY_FILE_ENV):
        path = Path(os.environ[KEY_FILE_ENV])
        try:
            return _decode_key(path.read_text(), str(path))
        except OSError as exc:
            raise ConfigError(f"{KEY_FILE_ENV}: cannot read {path}: {exc.strerror}") from exc
    base = Path(db_path).parent if db_path else Path(".")
    path = base / "ntd-master.key"
    if path.exists():
        return _decode_key(path.read_text(), str(path))
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode() + "\n")
    log.warning("created reporter master key %s (mode 0600): back it up, keep it off the "
                "database host if you can, or set %s / %s", path, KEY_ENV, KEY_FILE_ENV)
    return key


def normalise_phone(phone: str) -> str:
    """Digits with a leading + kept: ``+31 6-1234 5678`` → ``+31612345678``."""
    text = phone.strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("00"):
        return "+" + digits[2:]
    return ("+" if text.startswith("+") else "") + digits


def normalise_username(username: str) -> str:
    """Case-folded, without a leading ``@``."""
    return username.strip().lstrip("@").casefold()


class ReporterVault:
    """Seals and opens reporter records; computes lookup MACs."""

    def __init__(self, master_key: bytes) -> None:
        self._master = AESGCM(master_key)
        # A separate key for MACs, derived so one key never serves two purposes.
        self._mac_key = hmac.new(master_key, b"ntd reporter lookup mac v1",
                                 hashlib.sha256).digest()

    def mac(self, kind: str, value: str) -> str:
        """Keyed HMAC-SHA256 of a normalised phone number or username."""
        norm = normalise_phone(value) if kind == "phone" else normalise_username(value)
        return hmac.new(self._mac_key, f"{kind}:{norm}".encode(), hashlib.sha256).hexdigest()

    def seal(self, record: dict[str, Any], record_id: str) -> tuple[bytes, bytes]:
        """Encrypt ``record`` under a fresh data key; returns (sealed, wrapped data key)."""
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        plain = json.dumps(record, sort_keys=True).encode()
        sealed = nonce + AESGCM(data_key).encrypt(nonce, plain, record_id.encode())
        wrap_nonce = os.urandom(_NONCE)
        wrapped = wrap_nonce + self._master.encrypt(wrap_nonce, data_key, record_id.encode())
        return sealed, wrapped

    def open(self, sealed: bytes, wrapped: bytes, record_id: str) -> dict[str, Any]:
        """Decrypt a record (raises ``cryptography.exceptions.InvalidTag`` if tampered)."""
        data_key = self._master.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], record_id.encode())
        plain = AESGCM(data_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], record_id.encode())
        return dict(json.loads(plain))


def reporter_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The reporter part of a chat report (keys normalised), or {} when there is none."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        k = str(key).strip().lower()
        if k in REPORTER_KEYS and value not in (None, ""):
            out[k] = str(value)
        elif k == "contact_police":
            out[k] = value is True or str(value).strip().lower() in ("true", "1", "yes")
    if set(out) <= {"contact_police"}:
        return {}
    return out
