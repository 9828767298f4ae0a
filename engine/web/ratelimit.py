"""Rate limiting without addresses: a global token bucket plus per-submission fingerprints.

The anonymous channel must not learn who submits, so nothing here is keyed by a client address
(the app never even sees one: ``security.DropClientAddress``). Two limits apply instead:

- a **global bucket** for the whole anonymous channel (``rate`` tokens per second, ``burst``
  deep) caps the load any flood can put on the store;
- a **fingerprint limit**: the same normalised URL may be submitted at most ``per_window`` times
  per coarse time window (``window_seconds``, default 10 minutes). The key is
  ``HMAC(process key, window number + normalised URL)``; the table holds only these digests and
  counts, is dropped when the window turns, and is capped in size (``max_keys``) — past the cap
  only the global bucket applies. Repeats of one URL add nothing (the case is already open), so
  limiting them stops replay floods without affecting genuine reporters.

Everything is in memory and per process; nothing is written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """A classic token bucket (thread-safe)."""

    def __init__(self, rate: float, burst: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token: 0.0 if granted, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0  # disabled
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate


def normalise(text: str) -> str:
    """The fingerprint text of a submission: trimmed, case-folded, no trailing slash."""
    return text.strip().casefold().rstrip("/")


class FingerprintLimiter:
    """At most ``per_window`` submissions of one fingerprint per coarse window."""

    def __init__(self, key: bytes, *, per_window: int, window_seconds: float,
                 max_keys: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.per_window = per_window
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._window = -1
        self._counts: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def _digest(self, window: int, text: str) -> bytes:
        return hmac.new(self._key, f"{window}\n{normalise(text)}".encode("utf-8", "replace"),
                        hashlib.sha256).digest()[:16]

    def hit(self, text: str) -> float:
        """Count one submission: 0.0 if allowed, else seconds until the window turns."""
        if self.per_window <= 0:
            return 0.0  # disabled
        now = self._clock()
        window = int(now // self.window_seconds)
        with self._lock:
            if window != self._window:
                self._window = window
                self._counts = {}  # old digests are dropped, not kept
            digest = self._digest(window, text)
            count = self._counts.get(digest, 0)
            if count >= self.per_window:
                return (window + 1) * self.window_seconds - now
            if digest in self._counts or len(self._counts) < self.max_keys:
                self._counts[digest] = count + 1
            return 0.0

    def __len__(self) -> int:
        return len(self._counts)


class AnonymousLimits:
    """Both limits of the anonymous channel."""

    def __init__(self, key: bytes, *, rate: float, burst: float, per_window: int,
                 window_seconds: float) -> None:
        self.bucket = TokenBucket(rate, burst)
        self.fingerprints = FingerprintLimiter(key, per_window=per_window,
                                               window_seconds=window_seconds)

    def check(self, text: str) -> tuple[float, str]:
        """``(0.0, "")`` if a submission of ``text`` may proceed, else the seconds to wait
        (Retry-After) and which limit applied: ``"url"`` or ``"channel"``."""
        wait = self.fingerprints.hit(text)
        if wait:
            return wait, "url"
        wait = self.bucket.take()
        return (wait, "channel") if wait else (0.0, "")
