"""Middleware: no client addresses anywhere, and security headers on every response.

``DropClientAddress`` removes the peer address from the ASGI scope before any route, error
handler or log call could read it: the anonymous form cannot leak what the app never holds.
(uvicorn's access log is off in ``ntd serve``; a reverse proxy in front must not log either.)
"""

from __future__ import annotations

from typing import Any

CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'none'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

# The console's workbench runs one script of our own (static/workbench.js, keyboard triage);
# every other page, the public form above all, runs none.
CONSOLE_CSP = CSP.replace("script-src 'none'", "script-src 'self'")

Scope = dict[str, Any]


class DropClientAddress:
    """Pure ASGI middleware: ``scope["client"]`` becomes None, forwarded-for headers go."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            scope["client"] = None
            scope["headers"] = [(k, v) for k, v in scope.get("headers", [])
                                if k not in (b"x-forwarded-for", b"x-real-ip", b"forwarded")]
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Pure ASGI middleware adding CSP, nosniff, no-referrer, frame and cache headers."""

    def __init__(self, app: Any, *, https: bool = False) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = self.https or scope.get("scheme") == "https"
        path = scope.get("path", "")

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [
                    (b"content-security-policy",
                     (CONSOLE_CSP if path.startswith("/console") else CSP).encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                ]
                if not path.startswith("/static/"):
                    extra.append((b"cache-control", b"no-store"))
                if secure:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
