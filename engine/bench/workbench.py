"""``ntd bench workbench``: the analyst's workbench, measured.

* **preview**: latency of ``GET /api/cases/{id}/items/{n}/preview`` for 1024×768 JPEGs on
  loopback — uvicorn in a thread, the lab web server serving the originals, the preview cache
  off so that every request is a live fetch + SHA-256 check + decode + blur + encode (and the
  audit entry). p50/p99 over ``requests``; a second pass with the cache on for comparison.
* **queue**: server time of one page of ``/api/queue?group=sha256|pdq`` with ``cases`` waiting
  cases (half of them copies of 500 images, the rest singles): the first page after the queue
  changed (grouping computed) and the next ones (grouping cached).
* **exposure**: images an analyst must look at to clear ``ntd demo``'s queue: one per waiting
  case before; one per group with grouping; and with grouping and learning (a verdict with
  ``learn`` on each group's sample, the match stage run after each, until the queue is empty).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from engine.assessment import record_verdicts
from engine.demo import run_demo
from engine.intake import submit_files
from engine.lab.images import jpeg_bytes, make_image
from engine.lab.webserver import LabWebServer
from engine.pipeline import STAGES, Pipeline
from engine.runtime import Runtime
from engine.stats import percentile as _percentile
from engine.store.sql_util import dumps
from engine.web import WebSettings, create_app
from engine.web.accounts import accounts
from engine.web.auth import new_token
from engine.web.server import ServerThread
from engine.workbench import QueueGroups

HOST = "img.bench.test"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile of measured times (never empty here)."""
    found = _percentile(values, q)
    return float(found) if found is not None else float("nan")


def _quiet_env() -> None:
    os.environ["NTD_DISABLE_PLUGINS"] = "resolve,route_inhope,notify,recheck"


def _accounts(rt: Any) -> str:
    """An analyst with an API token; returns the token."""


    acc = accounts(rt.store)
    uid = acc.add_user(name="bench", role="analyst", country=None, now=rt.clock.now_text(),
                       password_hash="x")
    token, digest = new_token()
    acc.add_token(user_id=uid, token_hash=digest, now=rt.clock.now_text())
    return str(token)


def bench_preview(requests: int = 200, images: int = 40) -> dict[str, Any]:
    """Preview latency for 1024×768 JPEGs (ms), live and cached."""


    _quiet_env()
    lab = LabWebServer({(HOST, f"/{i}.jpg"): (jpeg_bytes(make_image(i, (1024, 768))),
                                              "image/jpeg") for i in range(images)})
    lab.start_in_thread()
    out: dict[str, Any] = {"images": images, "requests": requests, "size": "1024x768"}
    with tempfile.TemporaryDirectory(prefix="ntd-bench-wb-") as tmp:
        try:
            for cached in (False, True):
                rt = Runtime.open(db=str(Path(tmp) / f"p{int(cached)}.db"), overrides={
                    "lab": {"allow_private_networks": True},
                    "resolve.hosts": {HOST: "127.0.0.1"},
                    "fetch": {"allowed_ports": [lab.port]},
                    "pipeline": {"poll_seconds": 0.05},
                    "assessment": {"preview_per_minute": 10**7,
                                   "preview_cache_mb": 32 if cached else 0}})
                src = Path(tmp) / f"urls{int(cached)}.txt"
                src.write_text("".join(lab.url(f"/{i}.jpg", host=HOST) + "\n"
                                       for i in range(images)))
                ids = submit_files(rt.store, [str(src)], keep_case_ids=True).case_ids
                rt.store.import_hashlist(name="watch", source="bench", trust="review",
                                         negative=False, thresholds={},
                                         entries=[("sha256", "0" * 64, "x", None, None)],
                                         now=rt.clock.now_text())
                asyncio.run(rt.run_pipeline(until_idle=True, install_signal_handlers=False))
                token = _accounts(rt)
                server = ServerThread(create_app(rt, WebSettings(secret=os.urandom(32))))
                base = server.start()
                times = []
                try:
                    with httpx.Client(base_url=base,
                                      headers={"Authorization": f"Bearer {token}"}) as client:
                        for n in range(requests + 5):
                            t0 = time.perf_counter()
                            r = client.get(f"/api/cases/{ids[n % images]}/items/0/preview")
                            elapsed = time.perf_counter() - t0
                            if r.status_code != 200:
                                raise RuntimeError(f"preview answered {r.status_code}: "
                                                   f"{r.text[:200]}")
                            if n >= 5:  # the first few warm the connection and imports
                                times.append(elapsed * 1000)
                finally:
                    server.stop()
                    rt.close()
                key = "cached" if cached else "live"
                out[key] = {"p50_ms": round(percentile(times, 50), 2),
                            "p99_ms": round(percentile(times, 99), 2),
                            "max_ms": round(max(times), 2)}
        finally:
            lab.stop()
    return out


def _fill_queue(rt: Any, cases: int) -> None:
    """``cases`` waiting cases with one image item each (hashes only), in a few statements."""


    rng = random.Random(7)
    now = rt.clock.now_text()
    pool = [(f"{rng.getrandbits(256):064x}", f"{rng.getrandbits(256):064x}")
            for _ in range(500)]
    with rt.store.transaction() as tx:
        batch = "Bbench"
        tx("INSERT INTO batches(id, channel, source, created_at) VALUES (?,?,?,?)",
           (batch, "analyst", "bench", now))
        case_rows, item_rows, report_rows = [], [], []
        for n in range(cases):
            cid = f"CBENCH{n:08d}"
            url = f"http://{HOST}/q/{n}.jpg"
            sha, pdq = pool[n % 500] if n % 2 == 0 else (f"{rng.getrandbits(256):064x}",
                                                         f"{rng.getrandbits(256):064x}")
            case_rows.append((cid, url, url, HOST, "bench.test", "awaiting_assessment",
                              now, now))
            item_rows.append((cid, url, "url", 200, "image/jpeg", 1000,
                              dumps({"sha256": sha, "pdq": pdq, "pdq_quality": 100}), "[]",
                              now, now))
            report_rows.append((cid, batch, "analyst", now, url, 0))
        tx.many("INSERT INTO cases(id, url, canonical_url, host, domain, state, created_at,"
                " updated_at) VALUES (?,?,?,?,?,?,?,?)", case_rows)
        tx.many("INSERT INTO items(case_id, url, kind, status, content_type, size, hashes,"
                " matches, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)", item_rows)
        tx.many("INSERT INTO reports(case_id, batch_id, channel, received_at, raw_url,"
                " duplicate) VALUES (?,?,?,?,?,?)", report_rows)


def bench_queue(cases: int = 10_000, pages: int = 20) -> dict[str, Any]:
    """Server time (ms) of one queue page with ``cases`` waiting cases."""


    out: dict[str, Any] = {"waiting_cases": cases}
    with tempfile.TemporaryDirectory(prefix="ntd-bench-wbq-") as tmp:
        rt = Runtime.open(db=str(Path(tmp) / "q.db"))
        try:
            _fill_queue(rt, cases)
            token = _accounts(rt)
            app = create_app(rt, WebSettings(secret=os.urandom(32)))

            async def run() -> None:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                             base_url="http://ntd.test",
                                             headers={"Authorization": f"Bearer {token}"}
                                             ) as client:
                    for group in ("sha256", "pdq"):
                        t0 = time.perf_counter()
                        r = await client.get(f"/api/queue?group={group}&limit=50")
                        first = (time.perf_counter() - t0) * 1000
                        body = r.json()
                        times = []
                        for n in range(pages):
                            t0 = time.perf_counter()
                            r = await client.get(f"/api/queue?group={group}&limit=50"
                                                 f"&offset={50 * (n % 20)}")
                            times.append((time.perf_counter() - t0) * 1000)
                            assert r.status_code == 200
                        # a bulk verdict on the first group, then the next page: the
                        # cached grouping is pruned, not computed again
                        await client.post("/api/verdicts", json={
                            "cases": body["groups"][0]["cases"], "verdict": "not_illegal"})
                        t0 = time.perf_counter()
                        r = await client.get(f"/api/queue?group={group}&limit=50")
                        after = (time.perf_counter() - t0) * 1000
                        out[group] = {"groups": body["total_groups"],
                                      "first_page_ms": round(first, 1),
                                      "page_p50_ms": round(percentile(times, 50), 1),
                                      "page_p99_ms": round(percentile(times, 99), 1),
                                      "page_after_verdict_ms": round(after, 1)}

            asyncio.run(run())
        finally:
            rt.close()
    return out


def bench_exposure(urls: int = 300) -> dict[str, Any]:
    """Images to look at to clear ``ntd demo``'s queue: rows, groups, groups + learning."""


    with tempfile.TemporaryDirectory(prefix="ntd-bench-wbx-") as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            run_demo(urls=urls, keep=tmp)
        _quiet_env()
        rt = Runtime.open(db=str(Path(tmp) / "demo.db"))
        try:
            queue = QueueGroups(rt)
            waiting = rt.store.list_cases(state="awaiting_assessment")
            out: dict[str, Any] = {
                "demo_urls": urls, "waiting_cases": len(waiting),
                "before": len(waiting),
                "grouped_sha256": queue.page(group="sha256", limit=1)["total_groups"],
                "grouped_pdq": queue.page(group="pdq", limit=1)["total_groups"]}
            stages = tuple(s for s in STAGES if s.name == "match")

            async def match_again() -> None:
                ctx = rt.context(owner="bench-exposure")
                try:
                    await Pipeline(ctx, until_idle=True, stages=stages,
                                   install_signal_handlers=False).run()
                finally:
                    await ctx.aclose()

            looked = 0
            while True:
                page = queue.page(group="pdq", limit=1)
                if not page["groups"]:
                    break
                group = page["groups"][0]
                looked += 1  # the analyst looks at the group's sample, once
                record_verdicts(rt, group["cases"], verdict="not_illegal",
                                actor="analyst:bench", learn=True)
                asyncio.run(match_again())
            out["grouped_and_learned"] = looked
            return out
        finally:
            rt.close()
