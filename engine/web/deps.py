"""What the web modules share: settings, the per-app state, request helpers.

``app`` assembles the ASGI app from ``api``, ``console`` and ``form``; they and ``app`` import
their shared state from here, so no module of the package imports ``app`` back.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from engine.errors import ConfigError
from engine.web.auth import Signer
from engine.web.problems import (
    Problem,
)
from engine.web.ratelimit import AnonymousLimits, TokenBucket

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
    login_rate: float = 0.2  # sign-in attempts per second per account name (burst 5)

    def __post_init__(self) -> None:
        for name in ("form_rate", "form_burst", "window_seconds", "session_hours",
                     "max_report_bytes", "max_batch_bytes"):
            if getattr(self, name) < 0 or (name == "window_seconds" and self.window_seconds == 0):
                raise ConfigError(f"web setting {name}: must be positive")

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
        self.login_buckets: dict[str, TokenBucket] = {}
        self.accounts = accounts(runtime.store)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["static_version"] = "1"
        self.charts: dict[str, tuple[float, dict[str, bytes]]] = {}

    @property
    def store(self) -> Any:
        """The runtime's store."""
        return self.rt.store

    def now(self) -> str:
        """Current timestamp text from the runtime clock."""
        return str(self.rt.clock.now_text())

    def login_allowed(self, name: str) -> bool:
        """Per-account-name sign-in throttle (never keyed by address)."""
        key = name.casefold()[:64]
        if len(self.login_buckets) > 10_000:
            self.login_buckets.clear()
        bucket = self.login_buckets.setdefault(
            key, TokenBucket(self.settings.login_rate, 5.0))
        return bucket.take() == 0.0


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
