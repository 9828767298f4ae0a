"""Cryptographic digests of fetched bytes (light: no imaging stack, safe to import anywhere)."""

from __future__ import annotations

import hashlib


def crypto_hashes(data: bytes) -> dict[str, str]:
    """Return the lower-case hex ``md5``, ``sha1`` and ``sha256`` of ``data``."""
    return {
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
