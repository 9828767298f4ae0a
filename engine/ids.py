"""Identifiers: short, time-ordered, URL-safe (``C`` cases, ``B`` batches, ``N`` notices)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``prefix`` + 10 chars of milliseconds + 6 random chars: sortable by creation time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(4), "big") & ((1 << 30) - 1)
    return f"{prefix}{_b32(millis, 10)}{_b32(rand, 6)}"
