"""``ntd bench iccam``: imports and exports per second against the loopback ICCAM fake.

The fake (``python -m engine.lab.iccam_fake``) runs in its own process over mutual TLS with
certificates made for the run (``engine.lab.tls``), holding N partner reports (a page and three
media each) assigned to NL. The engine side is the real plugin code with its SQLite store:

1. **import**: ``ICCAMSync.run(import)`` — list, read each report and its items, open the cases,
   set our hotline reference on every item (6 reads and writes per report);
2. **export of reports**: N cases of ours, each with its ICCAM report step queued (what the
   ``iccam`` channel does), then ``POST rest/reports`` + the read-back of the ids;
3. **export of actions**: the imported cases noticed to the hoster and the police and removed:
   per content item ReportedToISP, ReportedToLEA, Removed (plus the page's assessment).

Each phase is timed from its first request to its last commit; rates are per wall-clock second.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MEDIA = 3
_PASSWORD_ENV = "NTD_BENCH_ICCAM_PASSWORD"


def bench_iccam(reports: int, *, concurrency: int = 4) -> dict[str, Any]:
    """Run the three phases for ``reports`` reports; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="ntd-bench-iccam-") as tmp:
        return asyncio.run(_bench(Path(tmp), reports, concurrency))


def _start_fake(folder: Path, reports: int, password: str) -> tuple[subprocess.Popen[str], Any]:
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.tls import make_lab_tls

    tls = make_lab_tls(folder / "tls")
    args = {"tls": {"ca_cert": str(tls.ca_cert), "server_cert": str(tls.server_cert),
                    "server_key": str(tls.server_key)},
            "password": password, "reports": reports, "media": MEDIA}
    proc = subprocess.Popen([sys.executable, "-m", "engine.lab.iccam_fake", json.dumps(args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline() or "null")
    if not isinstance(ready, dict):
        proc.kill()
        raise RuntimeError("the ICCAM fake did not start")
    return proc, (tls, int(ready["port"]))


def _stats(proc: subprocess.Popen[str]) -> dict[str, int]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("stats\n")
    proc.stdin.flush()
    return dict(json.loads(proc.stdout.readline()))


def _our_cases(store: Any, n: int, now: str) -> list[str]:
    """N routed cases of ours hosted in NL (a page and one listed image each)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.models import Item, StageResult

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.store import Commit, IntakeRow

    batch = store.create_batch(channel="analyst", source="bench", at=now)
    rows = [IntakeRow(raw_url=f"http://ours-{i}.example.test/p.html",
                      canonical_url=f"http://ours-{i}.example.test/p.html",
                      host=f"ours-{i}.example.test", domain="example.test", line=i)
            for i in range(n)]
    ids = list(store.add_reports(batch, "analyst", now, rows).case_ids)
    claimed = set(store.claim(["new"], limit=n, owner="bench", lease_seconds=600, now=now))
    assert claimed == set(ids), "the store held other new cases"
    commits = []
    for case_id, row in zip(ids, rows, strict=True):
        page, host = row.canonical_url, row.host
        items = [Item(url=page, kind="url", status=200, content_type="text/html"),
                 Item(url=f"http://{host}/a.jpg", kind="media", status=200,
                      content_type="image/jpeg", hashes={"sha256": "ab" * 32},
                      matches=[{"list": "bench", "category": "baseline", "hash_type": "sha256",
                                "distance": 0, "negative": False}])]
        resolution = {"host": host, "ips": ["192.0.2.44"], "country": "NL", "asn": 64500,
                      "org": "Bench Hosting", "contacts": []}
        commits.append(Commit(case_id=case_id, owner="bench", stage="bench", actor="bench",
                              result=StageResult(state="noticed", action="noticed",
                                                 items=items,
                                                 data={"resolution": resolution})))
    store.apply(commits, now)
    return ids


def _removed_after_notices(store: Any, case_ids: list[str], now: str) -> None:
    """The imported cases: noticed to the hoster and the police, then removal confirmed."""
    for kind in ("hosting", "police"):
        store.queue_notice_actions([{"kind": "notice", "case_id": c, "channel": "email",
                                     "recipient": f"{kind}@bench.example.test",
                                     "recipient_kind": kind, "language": "en",
                                     "entries": [], "url_count": 1} for c in case_ids], now=now)
    store.aggregate_notices(now=now, window_seconds=0, max_urls=10_000, sendable=["email"])
    for notice in store.claim_notices(owner="bench", limit=10_000, now=now, lease_seconds=600):
        store.notice_sent(notice["id"], owner="bench", now=now, receipt="250 ok")
    for case_id in case_ids:
        store.transition(case_id, state="closed", stage="bench", actor="bench",
                         action="closed", now=now, data={
                             "assessment": {"verdict": "illegal", "category": "baseline",
                                            "by": "analyst:bench", "at": now},
                             "monitoring": {"removed_at": now}})


async def _bench(folder: Path, reports: int, concurrency: int) -> dict[str, Any]:
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.runtime import Runtime

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.iccam.settings import iccam_settings

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.iccam.sync import ICCAMSync

    password = secrets.token_urlsafe(12)
    proc, (tls, port) = _start_fake(folder, reports, password)
    os.environ[_PASSWORD_ENV] = password
    rt = Runtime.open(db=str(folder / "bench.db"), overrides={"iccam": {
        "base_url": f"https://127.0.0.1:{port}/api/", "client_cert": str(tls.client_cert),
        "client_key": str(tls.client_key), "ca_bundle": str(tls.ca_cert),
        "username": "ntd-bench", "password_env": _PASSWORD_ENV, "hotline_country": "NL",
        "concurrency": concurrency, "hosting_recheck_hours": 0.0,
        "lookback_hours": 1.0, "max_pages": 1000}})
    ctx = rt.context()
    sync = ICCAMSync(ctx, iccam_settings(rt.config))
    try:
        await sync.client.ensure_login()
        ours = set(_our_cases(rt.store, reports, rt.clock.now_text()))  # before the import
        start = time.perf_counter()
        imported = await sync.run(do_import=True, do_export=False)
        import_s = time.perf_counter() - start
        now = rt.clock.now_text()
        imported_cases = [c["id"] for c in rt.store.list_cases() if c["id"] not in ours]
        for case_id in ours:
            rt.store.iccam_queue_report(case_id, now, {"target": "iccam:NL"})
        start = time.perf_counter()
        exported = await sync.run(do_import=False, do_export=True)
        reports_s = time.perf_counter() - start
        _removed_after_notices(rt.store, imported_cases, rt.clock.now_text())
        start = time.perf_counter()
        acted = await sync.run(do_import=False, do_export=True)
        actions_s = time.perf_counter() - start
        server = _stats(proc)
    finally:
        await sync.aclose()
        await ctx.aclose()
        rt.close()
        del os.environ[_PASSWORD_ENV]
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    items = reports * (1 + MEDIA)
    errors = imported.errors + exported.errors + acted.errors
    return {
        "reports": reports, "content_items": items, "concurrency": concurrency,
        "imported": imported.imported, "import_seconds": round(import_s, 3),
        "imports_per_s": round(imported.imported / import_s, 1),
        "import_items_per_s": round(items / import_s, 1),
        "reports_created": exported.reports_created, "export_seconds": round(reports_s, 3),
        "exports_per_s": round(exported.reports_created / reports_s, 1),
        "actions_sent": acted.actions_sent, "actions_seconds": round(actions_s, 3),
        "actions_per_s": round(acted.actions_sent / actions_s, 1),
        "fake_requests": server["requests"], "fake_refused": server["refused"],
        "errors": len(errors)}
