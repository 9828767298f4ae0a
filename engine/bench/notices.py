"""``ntd bench notify``: N notices through the real sender to a loopback SMTP sink.

The sink (aiosmtpd) runs in its own process (``python -m engine.lab.smtp_sink``) so it does not
share the sender's interpreter lock; the sender runs with the configured
pipeline pieces (store, aggregation, leases, rendering, MIME, aiosmtplib with pooled
connections). Every notice goes to a distinct synthetic recipient (``abuse@hoster-N.test``, a
reserved TLD) so aggregation does not merge them; one URL each.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _actions(count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        out.append({
            "kind": "notice", "version": 1, "case_id": None, "reference": f"NTD-BENCH{i}",
            "action": "notice", "recipient_kind": "hosting",
            "recipient": f"abuse@hoster-{i % 200}.test", "channel": "email",
            "country": "NL" if i % 2 else "DE", "language": "nl" if i % 2 else "en",
            "deadline_hours": 24, "decided_by": "bench:synthetic", "domain": f"site{i}.test",
            "asn": 64500, "hosting_country": "NL", "registrar": "Example Registrar",
            "entries": [{"url": f"http://site{i}.test/page/{i}.html",
                         "classification": "baseline", "detection_method": "hash_match",
                         "first_seen": "2026-01-01T00:00:00.000000Z", "host": f"site{i}.test",
                         "ip": "192.0.2.1",
                         "hashes": {"md5": f"{i:032x}", "sha256": f"{i:064x}",
                                    "phash": f"{i:016x}"}}],
            "url_count": 1})
    return out


def bench_notify(count: int, *, connections: int = 4) -> dict[str, Any]:
    """Send ``count`` notices to a loopback sink; returns figures."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    import plugins.notify as notify

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.runtime import Runtime

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.notify.sender import NoticeSender

    sink = subprocess.Popen([sys.executable, "-m", "engine.lab.smtp_sink"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline().split()[1])
        with tempfile.TemporaryDirectory(prefix="ntd-bench-notify-") as tmp:
            rt = Runtime.open(
                db=str(Path(tmp) / "bench.db"), extra_plugins=[("notify", notify)],
                overrides={"smtp": {"host": "127.0.0.1", "port": port,
                                    "connections": connections,
                                    "per_domain_concurrency": 4},
                           "notices": {"aggregate_minutes": 0.0, "max_urls_per_notice": 1,
                                       "batch_size": 256}})
            try:
                rt.store.queue_notice_actions(_actions(count), now=rt.clock.now_text())

                async def go() -> tuple[int, float]:
                    ctx = rt.context()
                    sender = NoticeSender.from_context(ctx)
                    started = time.perf_counter()
                    try:
                        await sender.drain(until_idle=True)
                    finally:
                        await sender.aclose()
                        await ctx.aclose()
                    return sender.sent, time.perf_counter() - started

                sent, seconds = asyncio.run(go())
                counts = rt.store.notice_counts()
            finally:
                rt.close()
    finally:
        sink.terminate()
        out, _ = sink.communicate(timeout=60)
    stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return {"notices": count, "sent": sent, "received_by_sink": stats.get("messages"),
            "duplicates_at_sink": stats.get("messages", 0) - stats.get("distinct", 0),
            "states": counts, "seconds": round(seconds, 2),
            "notices_per_s": round(sent / seconds, 1) if seconds else None,
            "smtp_connections": connections}
