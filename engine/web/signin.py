"""Console sign-in that a stranger cannot lock, and password hashing that a flood cannot bloat.

**Throttling** (``SignInThrottle``). Failed attempts slow the next ones down — a delay that grows
with the failures (``base · 2^(n - free)``, capped at ``max_delay``) — and never refuse an account
outright. Nothing is keyed by a client address (the app never sees one); three keys instead:

- the **account** name: failures from browsers that have not signed in to the account before
  slow every such browser. So that parallel guesses gain nothing, these attempts are also
  spaced by the same delay: when the next free slot is more than ``max_delay`` away the attempt
  is answered 429 with ``Retry-After`` (no password is checked), and retried later it gets in.
- a **device** cookie (``ntd_device``, signed, sent to ``/console/login`` only) that a successful
  sign-in leaves in the browser: an attempt carrying the account's device cookie is slowed only
  by that device's own failures. A stranger's failures therefore never delay the analyst at
  their usual browser — the real user with the right password always gets in (OWASP's
  "device cookies" against lock-out).
- the **client**: the pre-session nonce cookie of the sign-in form; a browser that keeps it is
  slowed by its own failures across accounts (a script that drops it meets the account key).

Failures are forgotten ``window`` seconds after the last one; a success clears the device and
client keys. Everything is in memory, per process, and capped in size (``max_keys``: the keys
failed longest ago are dropped first).

**Work limit** (``WorkGate``). argon2id costs 64 MiB per verification with argon2-cffi's
defaults: 120 concurrent sign-ins took a server from 182 MB to 2.59 GB. At most ``limit``
verifications run at once; the others wait in order (attempts from a known device first), at
most ``max_waiting`` of them — beyond that the answer is 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What to do with one attempt: wait ``delay`` seconds, or refuse (``retry_after``)."""

    delay: float = 0.0
    retry_after: float = 0.0

    @property
    def refused(self) -> bool:
        """Answer 429 without checking the password."""
        return self.retry_after > 0


class SignInThrottle:
    """Per-account, per-device and per-client slowing of failed sign-ins (see the module)."""

    def __init__(self, *, base_delay: float = 0.5, max_delay: float = 10.0, free: int = 3,
                 window: float = 900.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.free = free
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, last failure)
        self._next_slot: dict[str, float] = {}  # account key -> when the next attempt may run

    # -- keys ----------------------------------------------------------------------------------
    @staticmethod
    def _account(name: str) -> str:
        return "a:" + name.casefold()[:64]

    def delay_for(self, failures: int) -> float:
        """The delay after ``failures`` recent failures."""
        if failures < self.free or self.base_delay <= 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(failures - self.free, 60))

    def _count(self, key: str | None, now: float) -> int:
        if key is None:
            return 0
        entry = self._failures.get(key)
        if entry is None:
            return 0
        if now - entry[1] > self.window:
            del self._failures[key]
            return 0
        return entry[0]

    # -- the three calls of an attempt ---------------------------------------------------------
    def plan(self, name: str, *, device: str | None, client: str | None) -> Decision:
        """Before checking a password: how long to wait, or whether to refuse for now.

        ``device`` is the device id of a valid device cookie *for this account* (else None);
        ``client`` the sign-in form's nonce cookie, if the browser sent one."""
        now = self._clock()
        if device is not None:
            return Decision(delay=self.delay_for(self._count("d:" + device, now)))
        account = self._account(name)
        spacing = self.delay_for(self._count(account, now))
        delay = max(spacing, self.delay_for(self._count(_client(client), now)))
        if spacing <= 0:
            return Decision(delay=delay)
        start = max(now + delay, self._next_slot.get(account, 0.0))
        if start - now > self.max_delay:
            return Decision(retry_after=start - now - self.max_delay)
        self._next_slot[account] = start + spacing
        return Decision(delay=start - now)

    def failed(self, name: str, *, device: str | None, client: str | None) -> None:
        """Count a wrong password (or an unknown account, which looks the same)."""
        now = self._clock()
        keys = ["d:" + device] if device is not None else [self._account(name), _client(client)]
        for key in keys:
            if key is not None:
                count = self._count(key, now)
                self._failures[key] = (count + 1, now)
        self._trim(now)

    def succeeded(self, name: str, *, device: str | None, client: str | None) -> None:
        """A right password: the device and client start afresh (the account key does not — a
        stranger's failures keep slowing unknown browsers until they stop)."""
        for key in ("d:" + device if device else None, _client(client)):
            if key is not None:
                self._failures.pop(key, None)

    def _trim(self, now: float) -> None:
        if len(self._failures) <= self.max_keys:
            return
        for key in [k for k, (_, last) in self._failures.items() if now - last > self.window]:
            del self._failures[key]
        while len(self._failures) > self.max_keys:  # oldest failure first
            del self._failures[min(self._failures, key=lambda k: self._failures[k][1])]
        self._next_slot = {k: v for k, v in self._next_slot.items() if v > now}


def _client(nonce: str | None) -> str | None:
    return "c:" + nonce[:64] if nonce else None


class GateFull(Exception):
    """More attempts are waiting for the password check than the gate admits."""


class WorkGate:
    """At most ``limit`` holders at once; waiters queue by (priority, arrival)."""

    def __init__(self, limit: int, *, max_waiting: int = 256) -> None:
        if limit < 1:
            raise ValueError("WorkGate limit must be >= 1")
        self.limit = limit
        self.max_waiting = max_waiting
        self.running = 0
        self.peak = 0  # the most holders there ever were at once (tests, benchmarks)
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        """Attempts queued right now."""
        return sum(1 for *_, fut in self._waiting if not fut.done())

    @asynccontextmanager
    async def slot(self, priority: int = 1) -> AsyncIterator[None]:
        """Hold one slot (lower ``priority`` goes first); ``GateFull`` if the queue is full."""
        if self.running >= self.limit or self._waiting:
            if self.waiting >= self.max_waiting:
                raise GateFull(f"{self.waiting} sign-ins are waiting")
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._order), fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._release()  # granted just as we were cancelled: pass it on
                raise
        else:
            self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the next waiter
                return
        self.running -= 1


def retry_after_header(seconds: float) -> dict[str, str]:
    """A ``Retry-After`` header of whole seconds (at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
