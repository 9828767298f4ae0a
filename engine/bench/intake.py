"""Benchmarks of the engine core (``ntd bench intake``: files, or ``--source mail|telegram``
for the intake sources on loopback peers). Stage benchmarks live with their stages."""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def generate_urls(n: int, *, hosts: int = 1000, seed: int = 0) -> list[str]:
    """``n`` synthetic report URLs over ``hosts`` lab host names (``*.example.test``)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        host = f"host-{rng.randrange(hosts)}.example.test"
        kind = rng.random()
        if kind < 0.7:
            out.append(f"http://{host}/img/{i:07d}.jpg")
        else:
            out.append(f"https://{host}/gallery/{i:07d}/index.html?p={rng.randrange(100)}")
    return out


_CHILD = """
import json, sys, time
from engine.intake import submit_files
from engine.runtime import Runtime
rt = Runtime.open(db=sys.argv[1])
started = time.perf_counter()
result = submit_files(rt.store, [sys.argv[2]], clock=rt.clock)
seconds = time.perf_counter() - started
rt.close()
print(json.dumps({"seconds": seconds, "accepted": result.accepted,
                  "duplicates": result.duplicates, "rejected": len(result.rejected)}))
"""


def bench_intake(n: int = 100_000) -> dict[str, Any]:
    """Submit ``n`` generated URLs in a fresh child process; time and peak RSS.

    ``seconds`` / ``urls_per_s`` time the submission itself (read, canonicalise, deduplicate,
    store, commit), as ``ntd submit`` runs it; ``process_seconds`` is the whole child process,
    including Python's start-up, plugin loading and closing the database.
    """
    with tempfile.TemporaryDirectory(prefix="ntd-bench-") as tmp:
        src = Path(tmp) / "urls.txt"
        src.write_text("\n".join(generate_urls(n)) + "\n", encoding="utf-8")
        db = Path(tmp) / "bench.db"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(db), str(src)],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "NTD_DISABLE_PLUGINS": ""})
        process_seconds = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise RuntimeError(f"intake failed: {proc.stderr.strip()}")
        out = json.loads(proc.stdout)
    return {"urls": n, "seconds": round(out["seconds"], 3),
            "urls_per_s": round(n / out["seconds"]),
            "process_seconds": round(process_seconds, 3),
            "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
            "accepted": out["accepted"], "duplicates": out["duplicates"],
            "rejected": out["rejected"]}


# -- intake sources: mails/s through the mailbox source, updates/s through the Telegram bot ---

def _source_runtime(tmp: str, overrides: dict[str, dict[str, Any]]) -> Any:
    # deferred: keeps `ntd bench intake` (the file benchmark) light
    from engine.runtime import Runtime

    return Runtime.open(db=str(Path(tmp) / "bench.db"), overrides={
        **overrides, "pipeline": {"cpu_workers": 1},
        "logging": {"level": "WARNING"}})


async def _drive_once(rt: Any, name: str, state: dict[str, Any] | None = None) -> Any:
    # deferred: keeps `ntd bench intake` (the file benchmark) light
    from engine.intake_driver import IntakeDriver, collect_sources

    ctx = rt.context()
    ctx.state.update(state or {})
    try:
        [source] = [s for s in await collect_sources(ctx) if s.name == name]
        started = time.perf_counter()
        await IntakeDriver(ctx, [source]).drive(source, asyncio.Event(), once=True)
        return time.perf_counter() - started, source
    finally:
        await ctx.aclose()


def bench_mail_source(n: int = 200) -> dict[str, Any]:
    """Mails/s through the mailbox source on a real Dovecot (``engine.lab.dovecot``): each mail
    DKIM-signed (generated key, DNS injected), URLs in its text and HTML and a 2-line CSV
    attachment; verified, handed in, receipted to the loopback SMTP sink, moved."""
    from engine.lab.dovecot import Dovecot  # deferred: the mail lab loads only for this bench
    from engine.lab.mail import SigningKey, compose  # deferred: dkimpy, only for this bench
    from engine.lab.smtp_sink import SMTPSink  # deferred: aiosmtpd, only for this bench

    imap = Dovecot()
    key = SigningKey("politie.test")
    previous = os.environ.get("NTD_BENCH_IMAP_PASSWORD")
    os.environ["NTD_BENCH_IMAP_PASSWORD"] = imap.password
    try:
        client = imap.client()
        for i in range(n):
            raw = compose(sender=f"desk{i % 5}@politie.test",
                          text=f"http://m{i}.example.test/a hxxp://m{i}[.]example[.]test/b\n",
                          html=f'<a href="http://m{i}.example.test/c">c</a>',
                          attachments=[("list.csv", f"url\nhttp://m{i}.example.test/d\n"
                                                    f"http://m{i}.example.test/e\n".encode(),
                                        "text/csv")])
            client.append("INBOX", "", None, key.sign(raw))
        client.logout()
        with tempfile.TemporaryDirectory(prefix="ntd-bench-") as tmp:
            sink = SMTPSink().start_in_thread()
            try:
                rt = _source_runtime(tmp, {
                    "intake.mail": {"enabled": True, "port": imap.port, "tls": False,
                                    "user": imap.user, "password_env": "NTD_BENCH_IMAP_PASSWORD",
                                    "allowed_senders": ["*@politie.test"]},
                    "smtp": {"port": sink.port}})
                try:
                    seconds, source = asyncio.run(_drive_once(
                        rt, "mail", {"intake_mail": {"dnsfunc": key.dnsfunc}}))
                    reports = rt.store.query("SELECT count(*) AS n FROM reports")[0]["n"]
                finally:
                    rt.close()
                receipts = len(sink.messages)
            finally:
                sink.stop()
    finally:
        imap.stop()
        if previous is None:
            os.environ.pop("NTD_BENCH_IMAP_PASSWORD", None)
    return {"source": "mail", "mails": n, "seconds": round(seconds, 3),
            "mails_per_s": round(n / seconds, 1), "reports": reports, "receipts": receipts,
            "refused": source.refused}


def bench_telegram_source(n: int = 1000) -> dict[str, Any]:
    """Updates/s through the Telegram source on the loopback Bot API fake: each update a
    private message with two URLs (one as a ``url`` entity), sealed sender, handed in."""
    # deferred: the Bot API fake loads only for this benchmark
    from engine.lab.telegram_fake import TelegramFake

    token = "1:bench"
    fake = TelegramFake(token).start_in_thread()
    previous = os.environ.get("NTD_BENCH_TELEGRAM_TOKEN")
    os.environ["NTD_BENCH_TELEGRAM_TOKEN"] = token
    try:
        for i in range(n):
            url = f"http://t{i}.example.test/a"
            fake.add_message(f"{url} and hxxps://t{i}[.]example[.]test/b",
                             sender=TelegramFake.user(user_id=1000 + i % 50),
                             entities=[{"type": "url", "offset": 0, "length": len(url)}])
        with tempfile.TemporaryDirectory(prefix="ntd-bench-") as tmp:
            rt = _source_runtime(tmp, {"intake.telegram": {
                "enabled": True, "api_url": fake.url, "token_env": "NTD_BENCH_TELEGRAM_TOKEN"}})
            try:
                seconds, source = asyncio.run(_drive_once(rt, "telegram"))
                reports = rt.store.query("SELECT count(*) AS n FROM reports")[0]["n"]
            finally:
                rt.close()
    finally:
        fake.stop()
        if previous is None:
            os.environ.pop("NTD_BENCH_TELEGRAM_TOKEN", None)
    return {"source": "telegram", "updates": n, "seconds": round(seconds, 3),
            "updates_per_s": round(n / seconds, 1), "reports": reports,
            "handled": source.updates}
