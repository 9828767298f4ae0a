"""A loopback HTTP server with virtual hosts, for tests, the demo and benchmarks.

Content lives in memory per (host, path); the host comes from the request's Host header (port
stripped), so one socket on 127.0.0.1 serves any number of fake hosters when the fetcher maps
their names to 127.0.0.1 (``FetchPolicy.static_hosts``). Besides plain content a route can
redirect, delay, drip bytes forever, or stream more than any cap. The server counts requests
per (host, path), the peak number of concurrent requests per host, and every TCP connection it
accepts — an SSRF "canary" asserts that count stays at zero.

Use it inside a loop (``async with LabWebServer(...) as srv``) or from synchronous code
(``srv.start_in_thread()`` ... ``srv.stop()``), which runs it on its own loop in a thread.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine.lab.distinct import distinct_copy
from engine.lab.threaded import LoopThread

__all__ = ["LabWebServer", "Route"]

ANY_HOST = "*"
_DRIP_FILL = b"A"
_STREAM_FILL = bytes(range(256)) * 256  # 64 KiB of non-compressible-looking filler


@dataclass(frozen=True, kw_only=True)
class Route:
    """What the server answers for one (host, path).

    ``redirect_to`` answers ``status`` (default 302 for redirects) with a Location header;
    ``delay`` (seconds) waits before answering; ``drip`` = (bytes, interval) sends that many
    bytes every interval, forever; ``stream_bytes`` streams that many filler bytes in chunks
    (``declare_length`` adds a Content-Length, otherwise chunked encoding); ``tag`` serves
    ``body`` as a file of its own (``engine.lab.distinct``: same pixels, other bytes), made per
    request so that a world of distinct files holds only its pool of images in memory.
    """

    body: bytes = b""
    content_type: str | None = "application/octet-stream"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    redirect_to: str | None = None
    delay: float = 0.0
    drip: tuple[int, float] | None = None
    stream_bytes: int | None = None
    declare_length: bool = False
    tag: bytes | None = None

    @classmethod
    def redirect(cls, location: str, *, status: int = 302) -> Route:
        """A redirect to ``location`` (absolute or relative)."""
        return cls(redirect_to=location, status=status, content_type=None)

    @classmethod
    def slow_drip(cls, chunk: int = 1, interval: float = 0.05) -> Route:
        """Send ``chunk`` bytes every ``interval`` seconds forever (tests total deadlines)."""
        return cls(drip=(chunk, interval))

    @classmethod
    def oversized(cls, size: int, *, declare_length: bool = False) -> Route:
        """Stream ``size`` filler bytes (tests byte caps)."""
        return cls(stream_bytes=size, declare_length=declare_length)


RouteKey = tuple[str, str]


class _CountingServer(web.Server):
    """aiohttp's low-level server, counting accepted connections for the owner."""

    def __init__(self, owner: LabWebServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owner = owner

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        self._owner.connections += 1
        super().connection_made(handler, transport)


class LabWebServer:
    """In-memory virtual-host web server on 127.0.0.1 (port chosen by the OS).

    ``routes`` maps (host, path) to a :class:`Route`, raw bytes, or (bytes, content type);
    host ``"*"`` matches any host. ``latency_ms`` is added before every answer (simulated
    network latency). Unknown (host, path) answers 404. ``ssl_context`` serves HTTPS (tests
    of SNI and certificate handling).
    """

    def __init__(
        self,
        routes: Mapping[RouteKey, Route | bytes | tuple[bytes, str]] | None = None,
        *,
        latency_ms: float = 0,
        bind: str = "127.0.0.1",
        default_host: str = "hoster-1.test",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.latency = latency_ms / 1000
        self.bind = bind
        self.default_host = default_host
        self.ssl_context = ssl_context
        self._routes: dict[RouteKey, Route] = {}
        for (host, path), route in (routes or {}).items():
            self.set(host, path, route)
        self.requests: Counter[RouteKey] = Counter()
        self.connections = 0
        self.max_concurrent: Counter[str] = Counter()
        self.last_headers: dict[RouteKey, dict[str, str]] = {}
        self.max_total_concurrent = 0
        self._in_flight: Counter[str] = Counter()
        self._in_flight_total = 0
        self._runner: web.ServerRunner | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._runner_thread: LoopThread | None = None

    # -- content --------------------------------------------------------------------------

    def set(self, host: str, path: str, route: Route | bytes | tuple[bytes, str]) -> None:
        """Register or replace what (host, path) serves; safe to call while running."""
        if isinstance(route, bytes):
            route = Route(body=route)
        elif isinstance(route, tuple):
            route = Route(body=route[0], content_type=route[1])
        self._routes[(host.lower(), path)] = route

    def set_content(
        self,
        host: str,
        path: str,
        body: bytes,
        content_type: str | None = "application/octet-stream",
        *,
        status: int = 200,
    ) -> None:
        """Shorthand for :meth:`set` with a plain body."""
        self.set(host, path, Route(body=body, content_type=content_type, status=status))

    def remove(self, host: str, path: str) -> None:
        """Stop serving (host, path) — it answers 404 from now on (simulated takedown)."""
        self._routes.pop((host.lower(), path), None)

    def hits(self, host: str, path: str) -> int:
        """How many requests reached (host, path)."""
        return self.requests[(host.lower(), path)]

    @property
    def total_requests(self) -> int:
        """Requests received across all hosts and paths."""
        return sum(self.requests.values())

    def reset_counters(self) -> None:
        """Zero request, connection and concurrency counters."""
        self.requests.clear()
        self.max_concurrent.clear()
        self.max_total_concurrent = 0
        self.last_headers.clear()
        self.connections = 0

    # -- addressing -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on (after start)."""
        if self._port is None:
            raise RuntimeError("LabWebServer is not running")
        return self._port

    def url(self, path: str = "/", host: str | None = None) -> str:
        """URL of ``path`` on virtual host ``host`` (default ``default_host``) at our port."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host or self.default_host}:{self.port}{path}"

    # -- lifecycle (async) ----------------------------------------------------------------

    async def start(self) -> LabWebServer:
        """Bind 127.0.0.1 on a free port and start serving."""
        server = _CountingServer(self, handler=self._handle, handler_cancellation=True)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.bind, 0, backlog=1024, ssl_context=self.ssl_context
        )
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        """Stop serving; cancels endless handlers (drip) first so shutdown is quick."""
        for task in list(self._handlers):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LabWebServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle (thread) ---------------------------------------------------------------

    def start_in_thread(self, timeout: float = 10.0) -> LabWebServer:
        """Run the server on its own event loop in a daemon thread; returns once it listens."""
        self._runner_thread = LoopThread(self.start, self.close, name="lab-webserver")
        try:
            self._runner_thread.start(timeout)
        except TimeoutError as exc:
            raise RuntimeError("LabWebServer did not start in time") from exc
        except Exception as exc:
            raise RuntimeError("LabWebServer failed to start") from exc
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread` and join its thread."""
        if self._runner_thread is not None:
            self._runner_thread.stop(timeout)
            self._runner_thread = None

    # -- request handling -----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw_host = request.host or ""
        if raw_host.startswith("["):  # IPv6 literal: keep the brackets, drop the port
            host = raw_host.split("]", 1)[0] + "]"
        else:
            host = raw_host.rsplit(":", 1)[0].lower()
        key = (host, request.path)
        self.requests[key] += 1
        self.last_headers[key] = dict(request.headers)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._in_flight[host] += 1
        self.max_concurrent[host] = max(self.max_concurrent[host], self._in_flight[host])
        self._in_flight_total += 1
        self.max_total_concurrent = max(self.max_total_concurrent, self._in_flight_total)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)  # simulated network latency
            route = self._routes.get(key) or self._routes.get((ANY_HOST, request.path))
            if route is None:
                return web.Response(status=404, body=b"not found", content_type="text/plain")
            return await self._answer(request, route)
        finally:
            self._in_flight[host] -= 1
            self._in_flight_total -= 1
            if task is not None:
                self._handlers.discard(task)

    async def _answer(self, request: web.BaseRequest, route: Route) -> web.StreamResponse:
        if route.delay:
            await asyncio.sleep(route.delay)
        headers = dict(route.headers)
        if route.content_type is not None:
            headers["Content-Type"] = route.content_type
        if route.redirect_to is not None:
            headers["Location"] = route.redirect_to
            return web.Response(status=route.status, headers=headers)
        if route.drip is not None:
            resp = web.StreamResponse(status=route.status, headers=headers)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            chunk, interval = route.drip
            while True:  # until the client goes away or the server closes
                await resp.write(_DRIP_FILL * chunk)
                await asyncio.sleep(interval)
        if route.stream_bytes is not None:
            resp = web.StreamResponse(status=route.status, headers=headers)
            if route.declare_length:
                resp.content_length = route.stream_bytes
            else:
                resp.enable_chunked_encoding()
            await resp.prepare(request)
            remaining = route.stream_bytes
            try:
                while remaining > 0:
                    piece = _STREAM_FILL[: min(remaining, len(_STREAM_FILL))]
                    await resp.write(piece)
                    remaining -= len(piece)
                await resp.write_eof()
            except ConnectionResetError:
                pass  # the client stopped reading (a fetcher's size cap): expected, not an error
            return resp
        body = route.body if route.tag is None else distinct_copy(route.body, route.tag)
        return web.Response(status=route.status, body=body, headers=headers)
