"""``ntd bench recheck``: re-checks/s for N due cases against a loopback web server.

The server runs in a child process; the cases are seeded with bulk SQL (set-up only: the stage
code path, one sweep of the built-in re-check stage, is what is timed).

Every case carries a stored resolution. With re-resolution (the default) each check that
finds the material online resolves the host again (``[resolve.hosts]``: loopback); the cases of
``MOVED_HOSTS`` of the hosts were noticed on another network, so their check re-resolves them
through a loopback RDAP registry (in a thread of this process), routes them (the DE partner
hotline) and queues the new notice. ``re_resolve=False`` (``--no-re-resolve``) measures the
same cases without it.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plugins.recheck.cli import run_sweep

BENCH_HOSTS = 64
BENCH_IMAGES = 8
MOVED_HOSTS = 7  # h0 … h6: noticed on the "old" network, now on loopback's (≈ 11 % of hosts)
OLD_NETWORK = {"ips": ["127.0.0.9"], "network": "185.4.0.0/22", "asn": 64501, "country": "NL",
               "org": "Bench Old Hosting"}
NEW_NETWORK = {"cidr": "46.20.0.0/20", "key": "46.20.1.9", "asn": 64502, "country": "DE"}


def _bench_case(i: int) -> str:
    """What case ``i`` of the benchmark finds: removed / online / replaced / soft_404."""
    kind = i % 10
    return "removed" if kind < 5 else "online" if kind < 8 else "replaced" if kind == 8 \
        else "soft_404"


def _bench_server(n: int, port_out: Any, stop: Any) -> None:
    """Child process: a loopback lab server with the content of ``n`` benchmark cases."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import demo_image_bytes

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.webserver import LabWebServer, Route

    images = [demo_image_bytes(seed) for seed in range(BENCH_IMAGES + 1)]
    soft = Route(body=b"<html><body><h1>Not found</h1></body></html>", content_type="text/html")
    srv = LabWebServer()
    for i in range(n):
        host, outcome = f"h{i % BENCH_HOSTS}.bench.test", _bench_case(i)
        if outcome == "online":
            srv.set(host, f"/m/{i}.jpg", (images[i % BENCH_IMAGES], "image/jpeg"))
        elif outcome == "replaced":
            srv.set(host, f"/m/{i}.jpg", (images[BENCH_IMAGES], "image/jpeg"))
        elif outcome == "soft_404":
            srv.set(host, f"/m/{i}.jpg", soft)
            srv.set(host, f"/p/{i}.html", soft)
    srv.start_in_thread()
    port_out.put(srv.port)
    stop.wait()
    srv.stop()


def seed_bench_cases(store: Any, n: int, *, port: int, now: str) -> None:
    """Store ``n`` noticed cases, due now, each with one matched media item (bulk SQL)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import demo_image_bytes

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.media.items import hash_bytes

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.store import IntakeRow

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.urls import canonicalize

    hashes = [hash_bytes(demo_image_bytes(seed), "image/jpeg") for seed in range(BENCH_IMAGES)]
    for h in hashes:
        h.pop("pdq_quality", None)
    batch = store.create_batch(channel="analyst", source="bench", at=now)
    ids: list[str] = []
    for start in range(0, n, 5000):
        rows = []
        for i in range(start, min(n, start + 5000)):
            c = canonicalize(f"http://h{i % BENCH_HOSTS}.bench.test:{port}/p/{i}.html")
            rows.append(IntakeRow(raw_url=c.url, canonical_url=c.url, host=c.host,
                                  domain=c.domain, line=i + 1))
        ids += store.add_reports(batch, "analyst", now, rows).case_ids
    route = {"action": "notice", "recipient_kind": "hosting", "target": "abuse@h.bench.test",
             "channel": "email", "country": "NL", "deadline_hours": 24,
             "decided_by": "bench:rule", "reason": "bench"}
    with store.transaction() as tx:  # benchmark set-up only: the stage code path is what is timed
        tx("UPDATE cases SET state = 'noticed', retry_at = ?", (now,))
        tx.many(
            "INSERT INTO items(case_id, url, kind, status, content_type, hashes, matches,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            [(cid, f"http://h{i % BENCH_HOSTS}.bench.test:{port}/m/{i}.jpg", "media", 200,
              "image/jpeg", json.dumps(hashes[i % BENCH_IMAGES]),
              json.dumps([{"list": "bench", "category": "baseline", "hash_type": "sha256",
                           "distance": 0}]), now, now) for i, cid in enumerate(ids)])
        tx.many("INSERT INTO case_data(case_id, key, value) VALUES (?,?,?)",
                         [(cid, "routes", json.dumps([route])) for cid in ids])
        tx.many("INSERT INTO case_data(case_id, key, value) VALUES (?,?,?)",
                [(cid, "resolution", json.dumps(_bench_resolution(i)))
                 for i, cid in enumerate(ids)])
        tx.many("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                         " VALUES (?,?,?,?,?,?)",
                         [(cid, now, "notify", "bench", "noticed", "{}") for cid in ids])


def _bench_resolution(i: int) -> dict[str, Any]:
    """The stored resolution of case ``i``: the old network for the moved hosts, else the
    loopback address the host still has."""
    base = {"host": f"h{i % BENCH_HOSTS}.bench.test", "cnames": [], "contacts": [],
            "dns_outcome": "ok", "dns_source": "static"}
    if i % BENCH_HOSTS < MOVED_HOSTS:
        return {**base, **OLD_NETWORK}
    return {**base, "ips": ["127.0.0.1"], "network": "127.0.0.0/8", "asn": 64500,
            "country": "NL", "org": "Bench Hosting"}


def _rdap_registry() -> tuple[Any, Any]:
    """The loopback RDAP registry of the moved hosts' new network, on its own thread."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.rdap_server import LabRdapServer

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.threaded import LoopThread

    registry = LabRdapServer()
    registry.add_hoster(name="Bench New Hosting", country=NEW_NETWORK["country"],
                        cidr=NEW_NETWORK["cidr"], asn=NEW_NETWORK["asn"],
                        abuse_email="abuse@new.bench.test", style="arin")
    registry.add_registrar_domain(domain="bench.test", registrar_name="Bench Registrar",
                                  iana_id="9999", abuse_email="abuse@registrar.bench.test")
    thread = LoopThread(registry.start, registry.close, name="bench-rdap")
    thread.start()
    return registry, thread


def _resolution_overrides(registry: Any) -> dict[str, dict[str, Any]]:
    return {"lab.rdap_addresses": {"127.0.0.1": NEW_NETWORK["key"]},
            "resolve": {"origin_asn": False, "guess_abuse": False},
            "rdap": {"ip_base_url": registry.base_url, "backoff_base": 0.01, "retries": 1,
                     "domain_base_urls": {"*": registry.base_url}},
            "routing.contacts": {"hotline:DE": "email:reports@hotline-de.bench.test"}}


def bench_recheck(cases: int = 100_000, *, workers: int = 64,
                  re_resolve: bool = True) -> dict[str, Any]:
    """Re-checks/s for ``cases`` due cases against a loopback server in its own process
    (``re_resolve``: each online check resolves the host again; see the module docstring)."""

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    import plugins.recheck as recheck_plugin

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.clock import Clock

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.runtime import Runtime

    mp = multiprocessing.get_context("spawn")
    port_q, stop = mp.Queue(), mp.Event()
    server = mp.Process(target=_bench_server, args=(cases, port_q, stop), daemon=True)
    server.start()
    registry = thread = None
    try:
        extra: dict[str, dict[str, Any]] = {}
        if re_resolve:
            registry, thread = _rdap_registry()
            extra = _resolution_overrides(registry)
        port = int(port_q.get(timeout=600))
        with tempfile.TemporaryDirectory(prefix="ntd-bench-recheck-") as tmp:
            clock = Clock(fixed=datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
            hosts = {f"h{i}.bench.test": "127.0.0.1" for i in range(BENCH_HOSTS)}
            rt = Runtime.open(
                db=str(Path(tmp) / "bench.db"), clock=clock,
                extra_plugins=[("recheck", recheck_plugin)],
                overrides={"lab": {"allow_private_networks": True}, "resolve.hosts": hosts,
                           "fetch": {"allowed_ports": [port]},
                           "recheck": {"jitter": 0.0, "per_host_concurrency": 8,
                                       "re_resolve": re_resolve},
                           "pipeline": {"poll_seconds": 0.05, "queue_size": 1024}, **extra})
            try:
                started = time.perf_counter()
                seed_bench_cases(rt.store, cases, port=port, now=clock.now_text())
                seeded = time.perf_counter() - started
                cpu0 = time.process_time()
                counts, summary = asyncio.run(run_sweep(rt, workers=workers,
                                                        install_signal_handlers=False))
                cpu = time.process_time() - cpu0
                outbox = rt.store.query("SELECT count(*) AS n FROM outbox")[0]["n"]
                states = rt.store.count_by_state()
            finally:
                rt.close()
    finally:
        if thread is not None:
            thread.stop()
        stop.set()
        server.join(timeout=30)
    seconds = summary.seconds or 1e-9
    return {"cases": cases, "workers": workers, "re_resolve": re_resolve,
            "seed_seconds": round(seeded, 1),
            "seconds": round(seconds, 1), "rechecks_per_s": round(counts["checked"] / seconds),
            "rechecks_per_cpu_s": round(counts["checked"] / cpu) if cpu else None,
            **counts, "outbox_rows": outbox, "states": states}
