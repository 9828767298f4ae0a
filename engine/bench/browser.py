"""``ntd bench browser``: pages/s and peak memory rendering N script-built pages.

Each page is a gallery of ``engine.lab.script_gallery`` with its own four images (inserted by a
script, lazily on scroll, in a CSS background, in an iframe), on a loopback server in a thread
of this process. The cases go through the real fetch stage (pipeline restricted to it), so a
page costs what it costs in ``ntd run``: static fetch and parse (nothing found, scripts seen),
the browser (every request through the safe fetcher), hashing in the CPU pool.
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.intake import submit_files
from engine.lab.script_gallery import add_script_gallery
from engine.lab.webserver import LabWebServer
from engine.pipeline import STAGES, Pipeline
from engine.plugin_manager import call_all
from engine.runtime import Runtime

HOSTS = 10


def bench_browser(pages: int = 100, *, pool: int = 1, page_seconds: float = 30.0,
                  executable: str | None = None) -> dict[str, Any]:
    """Render ``pages`` script-built galleries through the fetch stage; the figures."""
    server = LabWebServer()
    for i in range(pages):
        add_script_gallery(server, f"g{i % HOSTS}.bench.test", f"/g/{i}", seed=10_000 + 4 * i)
    server.start_in_thread()
    try:
        with tempfile.TemporaryDirectory(prefix="ntd-bench-browser-") as tmp:
            return asyncio.run(_run(server, pages, Path(tmp), pool=pool,
                                    page_seconds=page_seconds, executable=executable))
    finally:
        server.stop()


async def _run(server: LabWebServer, pages: int, tmp: Path, *, pool: int,
               page_seconds: float, executable: str | None) -> dict[str, Any]:
    browser: dict[str, Any] = {"pool": pool, "page_seconds": page_seconds}
    if executable:
        browser["executable"] = executable
    rt = Runtime.open(db=str(tmp / "bench.db"), overrides={
        "lab": {"allow_private_networks": True},
        "resolve.hosts": {f"g{h}.bench.test": "127.0.0.1" for h in range(HOSTS)},
        "fetch": {"allowed_ports": [server.port]},
        "fetch.browser": browser,
        "pipeline": {"poll_seconds": 0.05},
    })
    urls = tmp / "urls.txt"
    urls.write_text("".join(server.url(f"/g/{i}/index.html", host=f"g{i % HOSTS}.bench.test")
                            + "\n" for i in range(pages)))
    submit_files(rt.store, [str(urls)])
    ctx = rt.context(owner="bench-browser")
    try:
        await call_all(rt.pm, "ntd_startup", ctx=ctx)
        await ctx.start_cpu_pool()  # (not timed: `ntd run` starts it before its first case)
        started = time.perf_counter()
        try:
            fetch = tuple(s for s in STAGES if s.name == "fetch")
            summary = await Pipeline(ctx, until_idle=True, stages=fetch,
                                     install_signal_handlers=False).run()
        finally:
            seconds = time.perf_counter() - started
            await call_all(rt.pm, "ntd_shutdown", ctx=ctx)
    finally:
        await ctx.aclose()
    details = [e.detail for c in rt.store.list_cases() for e in rt.store.events(c["id"])
               if e.action == "fetched"]
    rt.close()
    rendered = [d["browser"] for d in details if "browser" in d]
    stopped: dict[str, int] = {}
    for b in rendered:
        if b.get("stopped"):
            stopped[b["stopped"]] = stopped.get(b["stopped"], 0) + 1
    seconds_per_page = sorted(b.get("seconds", 0.0) for b in rendered) or [0.0]
    return {
        "pages": pages,
        "pool": pool,
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 3) if seconds else None,
        "rendered": len(rendered),
        "images_expected": 4 * pages,
        "images_hashed": sum(int(d.get("media_hashed", 0)) for d in details),
        "page_seconds_p50": round(seconds_per_page[len(seconds_per_page) // 2], 3),
        "page_seconds_max": round(seconds_per_page[-1], 3),
        "browser_peak_mb": round(max((b.get("peak_rss_mb", 0.0) for b in rendered),
                                     default=0.0), 1),
        "ntd_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stopped": stopped,
        "errors": dict(summary.errors),
    }
