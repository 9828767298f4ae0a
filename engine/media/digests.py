"""Cryptographic digests of fetched bytes (light: no imaging stack, safe to import anywhere)."""

from __future__ import annotations

import hashlib


def crypto_hashes(data: bytes) -> dict[str, str]:
    """Return the lower-case hex ``md5``, ``sha1`` and ``sha256`` of ``data``.

    The cryptographic hash types of ``engine.media.signals``, computed together for
    ``engine.media.hashing`` (which cannot import those types: their ``compute`` imports it);
    ``tests/test_signals.py`` checks that the two agree, key for key.
    """
    return {
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
