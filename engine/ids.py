"""Identifiers: short, time-ordered, URL-safe (``C`` cases, ``B`` batches, ``N`` notices)."""

from __future__ import annotations

import base64
import os
import time

# base32 with an alphabet in ASCII order (Crockford's: no I, L, O, U) so ids sort by time.
_TO_SORTABLE = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
                               b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id(prefix: str) -> str:
    """``prefix`` + 16 chars: 48 bits of milliseconds then 32 random bits, sortable by time."""
    raw = (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(4)
    return prefix + base64.b32encode(raw).translate(_TO_SORTABLE).decode("ascii")
