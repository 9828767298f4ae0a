"""``ntd bench notify``: N notices through the real sender to a loopback SMTP sink.

The sink (aiosmtpd) runs on its own loop in a thread; the sender runs with the configured
pipeline pieces (store, aggregation, leases, rendering, MIME, aiosmtplib with pooled
connections). Every notice goes to a distinct synthetic recipient (``abuse@hoster-N.test``, a
reserved TLD) so aggregation does not merge them; one URL each.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.lab.smtp_sink import SMTPSink


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
    from engine.runtime import Runtime
    from plugins import notify
    from plugins.notices.sender import NoticeSender

    sink = SMTPSink().start_in_thread()
    try:
        with tempfile.TemporaryDirectory(prefix="ntd-bench-notify-") as tmp:
            rt = Runtime.open(
                db=str(Path(tmp) / "bench.db"), extra_plugins=[("notify", notify)],
                overrides={"smtp": {"host": "127.0.0.1", "port": sink.port,
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
        sink.stop()
    received = len(sink.messages)
    return {"notices": count, "sent": sent, "received_by_sink": received,
            "duplicates_at_sink": received - len(sink.by_message_id()),
            "states": counts, "seconds": round(seconds, 2),
            "notices_per_s": round(sent / seconds, 1) if seconds else None,
            "smtp_connections": connections}
