"""Identifiers: short, time-ordered, URL-safe (``C`` cases, ``B`` batches, ``N`` notices)."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = 0


def _reserve(n: int) -> int:
    """First of ``n`` consecutive 80-bit values: milliseconds << 32 | a random 31-bit start.

    Values only grow within a process, so ids made here never collide with each other even
    thousands a millisecond apart; across processes the random start keeps them apart.
    """
    global _last
    value = (time.time_ns() // 1_000_000) << 32 | int.from_bytes(os.urandom(4), "big") >> 1
    with _lock:
        value = max(value, _last + 1)
        _last = value + n - 1
    return value


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> two characters


def _encode(prefix: str, value: int) -> str:
    """80 bits as 16 sortable base32 characters (same text as ``base64.b32encode``, faster)."""
    p = _PAIRS
    return (prefix + p[value >> 70 & 1023] + p[value >> 60 & 1023] + p[value >> 50 & 1023]
            + p[value >> 40 & 1023] + p[value >> 30 & 1023] + p[value >> 20 & 1023]
            + p[value >> 10 & 1023] + p[value & 1023])


def new_id(prefix: str) -> str:
    """``prefix`` + 16 chars: 48 bits of milliseconds then 32 bits, sortable by time."""
    return _encode(prefix, _reserve(1))


def new_ids(prefix: str, n: int) -> list[str]:
    """``n`` ids at once (intake makes thousands a chunk), in ascending order."""
    start = _reserve(n)
    return [_encode(prefix, start + i) for i in range(n)]
