"""Run a lab server's asyncio ``start``/``close`` on a private event loop in a daemon thread.

The loopback servers (web, RDAP, SMTP) are asyncio code; synchronous callers (ipwhois tests,
benchmarks) run them with ``LoopThread`` instead of each server carrying its own copy.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web


class LoopThread:
    """A daemon thread whose loop runs ``start()`` then serves until ``stop()``."""

    def __init__(self, start: Callable[[], Awaitable[object]],
                 close: Callable[[], Awaitable[object]], *, name: str) -> None:
        self._start, self._close, self.name = start, close, name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread; return once the server listens (or raise its start-up error)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close())
                loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"{self.name} did not start within {timeout}s")
        if failure:
            raise failure[0]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (closing the server on it) and join the thread."""
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self.loop = self._thread = None


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Start ``app`` on 127.0.0.1 at a free port; returns its runner (``cleanup()`` stops it)
    and the port. For the lab's plain-HTTP fakes."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # noqa: SLF001 - aiohttp exposes the port only here
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
