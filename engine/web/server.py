"""Serving the app with uvicorn: ``serve`` (foreground) and ``ServerThread`` (tests, bench).

uvicorn runs with ``access_log=False`` (the access log would record client addresses),
``proxy_headers=False`` (no forwarded-for parsing) and no ``Server`` header.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def uvicorn_config(app: Any, host: str, port: int, *, log_level: str = "warning",
                   **extra: Any) -> uvicorn.Config:
    """The uvicorn configuration every ntd server uses."""
    return uvicorn.Config(app, host=host, port=port, access_log=False, proxy_headers=False,
                          server_header=False, date_header=True, log_level=log_level,
                          lifespan="off", **extra)


def serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    """Run until SIGINT/SIGTERM."""
    uvicorn.Server(uvicorn_config(app, host, port, log_level=log_level)).run()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn on loopback in a background thread; ``with ServerThread(app) as url: ...``."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(uvicorn_config(app, self.host, self.port))
        self.thread = threading.Thread(target=self.server.run, name="ntd-web", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> str:
        """Start and wait (polling) until it accepts requests; returns the base URL."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def stop(self, timeout: float = 20.0) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
