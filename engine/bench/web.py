"""``ntd bench api``: requests/s of ``POST /api/reports`` against a loopback uvicorn.

The server runs in a child process (its own interpreter and GIL, as in production) on a fresh
SQLite database with the channel-wide token bucket off (it would cap the figure by design);
the per-URL fingerprint limit stays on. The client is aiohttp with a bounded number of requests
in flight, each request a distinct URL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.errors import NtdError
from engine.stats import percentile
from engine.web.server import free_port


def _child(db: str, port: int) -> None:
    """The server process: open the store, serve until terminated."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.runtime import Runtime

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.app import WebSettings, create_app

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.web.server import serve

    rt = Runtime.open(db=db)
    app = create_app(rt, WebSettings(secret=os.urandom(32), form_rate=0))
    serve(app, "127.0.0.1", port, log_level="warning")


async def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import aiohttp  # deferred: keeps `ntd` start-up fast (loaded when the command runs)

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NtdError(f"bench api: the server exited with code {proc.returncode}")
            try:
                async with session.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise NtdError(f"bench api: the server did not answer within {timeout:.0f}s")


async def _drive(base: str, requests: int, concurrency: int) -> dict[str, Any]:
    import aiohttp  # deferred: keeps `ntd` start-up fast (loaded when the command runs)

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            for i in next_index:
                body = {"url": f"http://site-{i % 500}.example.test/page/{i}.html"}
                start = time.perf_counter()
                async with session.post(base + "/api/reports", json=body) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - start)
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"requests": requests, "concurrency": concurrency, "seconds": round(seconds, 3),
            "requests_per_second": round(requests / seconds, 1),
            "latency_ms_p50": round(1000 * (percentile(latencies, 50) or 0), 2),
            "latency_ms_p99": round(1000 * (percentile(latencies, 99) or 0), 2),
            "statuses": statuses}


def bench_api(*, requests: int = 2000, concurrency: int = 16,
              db: str | None = None) -> dict[str, Any]:
    """Start a loopback server in a child process, POST ``requests`` reports, report req/s."""
    with tempfile.TemporaryDirectory(prefix="ntd-bench-api-") as folder:
        path = db or str(Path(folder) / "bench.db")
        port = free_port()
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        proc = subprocess.Popen([sys.executable, "-m", "engine.bench.web", path, str(port)],
                                env=env, stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(_wait_ready(base, proc, 60.0))
            # A short warm-up (imports, first transactions) that is not measured.
            asyncio.run(_drive(base, min(100, requests), min(4, concurrency)))
            result = asyncio.run(_drive(base, requests, concurrency))
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    result["server"] = "uvicorn (1 process), SQLite WAL, one batch per report"
    return result


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
