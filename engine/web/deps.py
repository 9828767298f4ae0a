"""What the web modules share: settings, the per-app state, request helpers.

``app`` assembles the ASGI app from ``api``, ``console`` and ``form``; they and ``app`` import
their shared state from here, so no module of the package imports ``app`` back.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from engine.errors import ConfigError
from engine.viewer import Viewer
from engine.web.auth import Signer
from engine.web.problems import (
    Problem,
)
from engine.web.ratelimit import AnonymousLimits, TokenBucket
from engine.web.sessions import Sessions
from engine.web.signin import SignInThrottle, WorkGate
from engine.workbench import QueueGroups

HERE = Path(__file__).resolve().parent
SECRET_ENV = "NTD_WEB_SECRET"
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    """Options of ``ntd serve`` (validated on construction)."""

    secret: bytes = b""  # empty: $NTD_WEB_SECRET, else random per process (sessions end on exit)
    https: bool = False  # cookies always Secure and HSTS (set behind a TLS-terminating proxy)
    form_rate: float = 20.0  # anonymous reports per second, whole channel (0: no limit)
    form_burst: float = 100.0
    per_url_window: int = 3  # submissions of one URL per window (0: no limit)
    window_seconds: float = 600.0
    max_report_bytes: int = 16_384
    max_batch_bytes: int = 10 * 1024 * 1024
    session_hours: float = 8.0
    # Sign-in (engine.web.signin): failures slow later attempts, never lock the account.
    login_free_failures: int = 3  # failures before any delay
    login_delay_seconds: float = 0.5  # the first delay; doubles with each further failure
    login_max_delay_seconds: float = 10.0
    login_window_seconds: float = 900.0  # failures are forgotten this long after the last
    login_concurrency: int = 2  # argon2 verifications at once (64 MiB each)
    login_max_waiting: int = 256  # sign-ins queued for a verification; more answer 503
    device_days: float = 90.0  # lifetime of the device cookie a sign-in leaves

    def __post_init__(self) -> None:
        for name in ("form_rate", "form_burst", "window_seconds", "session_hours",
                     "max_report_bytes", "max_batch_bytes", "login_free_failures",
                     "login_delay_seconds", "login_max_delay_seconds", "login_window_seconds",
                     "login_max_waiting", "device_days"):
            if getattr(self, name) < 0 or (name == "window_seconds" and self.window_seconds == 0):
                raise ConfigError(f"web setting {name}: must be positive")
        if self.login_concurrency < 1:
            raise ConfigError("web setting login_concurrency: must be at least 1")

    def resolved_secret(self) -> bytes:
        """The signing secret: explicit, else ``$NTD_WEB_SECRET``, else random."""
        if self.secret:
            return self.secret
        env = os.environ.get(SECRET_ENV)
        if env:
            return env.encode()
        return secrets.token_bytes(32)


class WebState:
    """What every request handler shares: runtime, settings, signer, limits, templates."""

    def __init__(self, runtime: Any, settings: WebSettings) -> None:
        # deferred: pulls in jinja2, starlette, argon2, tldextract, loaded on first use
        from engine.web.accounts import accounts

        self.rt = runtime
        self.settings = settings
        self.signer = Signer(settings.resolved_secret(),
                             session_seconds=settings.session_hours * 3600)
        self.limits = AnonymousLimits(self.signer.fingerprint_key(), rate=settings.form_rate,
                                      burst=settings.form_burst,
                                      per_window=settings.per_url_window,
                                      window_seconds=settings.window_seconds)
        self.accounts = accounts(runtime.store)
        self.sessions = Sessions(store=runtime.store, accounts=self.accounts,
                                 signer=self.signer, clock=runtime.clock,
                                 lifetime_seconds=settings.session_hours * 3600)
        self.signin = SignInThrottle(base_delay=settings.login_delay_seconds,
                                     max_delay=settings.login_max_delay_seconds,
                                     free=settings.login_free_failures,
                                     window=settings.login_window_seconds)
        self.password_gate = WorkGate(settings.login_concurrency,
                                      max_waiting=settings.login_max_waiting)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests: no real waits
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["static_version"] = "1"
        self.charts: dict[str, tuple[float, dict[str, bytes]]] = {}
        # The workbench: the safe viewer, the grouped queue, previews per account and minute.
        self.viewer = Viewer(runtime)
        self.queue = QueueGroups(runtime)
        self._preview_limits: dict[str, TokenBucket] = {}
        self._limits_lock = threading.Lock()

    def preview_wait(self, account: str) -> float:
        """0 when the account may open another preview now, else seconds to wait."""
        per_minute = self.rt.config.get("assessment", "preview_per_minute", 240)
        with self._limits_lock:
            bucket = self._preview_limits.get(account)
            if bucket is None:
                bucket = self._preview_limits[account] = TokenBucket(per_minute / 60.0,
                                                                     float(per_minute))
        return bucket.take()

    @property
    def store(self) -> Any:
        """The runtime's store."""
        return self.rt.store

    def now(self) -> str:
        """Current timestamp text from the runtime clock."""
        return str(self.rt.clock.now_text())


def state(request: Request) -> WebState:
    """The app's shared state."""
    return request.app.state.ntd  # type: ignore[no-any-return]


async def run_sync(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking store/engine work off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Problem("bad-request", "Content-Length is not a number") from None
        if size > limit:
            raise Problem("too-large", f"the body is {size} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise Problem("too-large", f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def wants_html(request: Request) -> bool:
    """Whether the client is a browser asking for a page (else problem JSON)."""
    return "text/html" in request.headers.get("accept", "")
