"""The shared skeleton of the lab's JSON API fakes (HMA, EOKM HashDB): a loopback aiohttp
server with a request log and an optional credential check.

Subclasses add routes in ``routes(app)``. Every request is logged (``requests``) before it is
answered, so a test asserts on what a client really sent: how many requests a sync took, and
that a credential went in its header.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from engine.lab.threaded import LoopThread, serve_on_loopback


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    credential: str | None  # the value of the credential header, if any
    body: bytes


class JSONAPIFake:
    """Base of the JSON API fakes. ``await start()`` on a running loop, or
    ``start_in_thread()``; ``base_url`` is the root to configure."""

    name = "api-fake"

    def __init__(self, *, credential_header: str = "Authorization",
                 credential: str | None = None) -> None:
        self.credential_header = credential_header
        self.credential = credential
        self.requests: list[LoggedRequest] = []
        self.lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._thread: LoopThread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """The API root (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        """Add the fake's routes."""
        raise NotImplementedError

    def count(self, path_prefix: str = "") -> int:
        """Requests logged whose path starts with ``path_prefix``."""
        with self.lock:
            return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    @web.middleware
    async def _log(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        sent = request.headers.get(self.credential_header)
        with self.lock:
            self.requests.append(LoggedRequest(request.method, request.path,
                                               dict(request.query), sent, body))
        if self.credential is not None and sent != self.credential:
            return web.json_response({"message": "unauthorized"}, status=401)
        return await handler(request)

    async def start(self) -> JSONAPIFake:
        """Listen on 127.0.0.1 (a free port)."""
        app = web.Application(middlewares=[self._log])
        self.routes(app)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> JSONAPIFake:
        """Serve on a private loop in a daemon thread (for synchronous callers)."""
        self._thread = LoopThread(self.start, self.close, name=self.name)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop a fake started with ``start_in_thread``."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
