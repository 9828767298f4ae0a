"""Commands of the re-check plugin: ``ntd recheck`` (one sweep) and ``ntd bench recheck``.

A sweep runs the engine's pipeline restricted to the recheck stage, so it reuses leases, group
commits and SIGTERM handling: a sweep stopped by SIGTERM finishes the checks in flight (their
outbox rows commit with them) and releases the rest, which the next sweep picks up — no check is
committed twice, so no escalation notice is queued twice.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from engine.pipeline import Pipeline, RunSummary, Stage

COUNT_KEYS = ("checked", "removed", "still_online", "escalated", "reappeared", "errors")


def recheck_stage() -> Stage:
    """The engine's recheck stage (its consumed states are the engine's to define)."""
    from engine import pipeline

    return next(s for s in pipeline.STAGES if s.name == "recheck")


class SweepPipeline(Pipeline):
    """The pipeline for one sweep: stops once nothing is due, or after ``limit`` cases.

    ``Pipeline(until_idle=True)`` would also wait for other plugins' pending work (e.g. notices
    to send), which a re-check sweep does not run; a sweep ends as soon as a claim finds nothing
    due while no case is in flight (``stop_when_drained``).
    """

    def __init__(self, ctx: Any, *, stage: Stage, limit: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(ctx, until_idle=False, stages=(stage,), limit=limit,
                         stop_when_drained=True, **kwargs)
        if limit is not None:
            self.workers = max(1, min(self.workers or limit, limit))


def sweep_counts(summary: RunSummary, counts: Any) -> dict[str, int]:
    """The contract's figures of one sweep."""
    return {"checked": int(summary.processed.get("recheck", 0)),
            "removed": int(counts.get("removed", 0)),
            "still_online": int(counts.get("still_online", 0)),
            "escalated": int(counts.get("escalated", 0)),
            "reappeared": int(counts.get("reappeared", 0)),
            "errors": int(summary.errors.get("recheck", 0))}


async def run_sweep(rt: Any, *, limit: int | None = None, workers: int | None = None,
                    on_progress: Callable[[RunSummary], None] | None = None,
                    install_signal_handlers: bool = True, ctx: Any = None
                    ) -> tuple[dict[str, int], RunSummary]:
    """One sweep over due cases with an opened ``Runtime``; returns (counts, summary).

    ``ctx`` may be a prepared run context (tests inject a fetcher with a fake resolver).
    """
    from plugins.recheck import run_state

    ctx = ctx or rt.context()
    try:
        state = run_state(ctx)
        pipeline = SweepPipeline(ctx, stage=recheck_stage(), limit=limit, workers=workers,
                                 on_progress=on_progress,
                                 install_signal_handlers=install_signal_handlers)
        summary = await pipeline.run()
        return sweep_counts(summary, state.counts), summary
    finally:
        await ctx.aclose()


def _progress() -> Callable[[RunSummary], None]:
    last = [0.0]

    def show(summary: RunSummary) -> None:
        import time

        now = time.monotonic()
        if now - last[0] < 0.5:
            return
        last[0] = now
        click.echo(f"\r\x1b[Krechecked {summary.processed.get('recheck', 0)}"
                   f" (errors {summary.errors.get('recheck', 0)})", nl=False, err=True)

    return show


def register(cli: click.Group) -> None:
    """Add ``recheck`` and ``bench recheck`` to the ``ntd`` group."""
    if "recheck" in cli.commands:
        return

    @cli.command("recheck")
    @click.option("--due", is_flag=True,
                  help="Only cases whose check is due (the default; for cron/systemd).")
    @click.option("--limit", type=click.IntRange(min=1), default=None,
                  help="Stop after checking N cases.")
    @click.option("--workers", type=click.IntRange(min=1), default=None,
                  help="Checks in flight (default: [pipeline] workers).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def recheck_cmd(due: bool, limit: int | None, workers: int | None, as_json: bool) -> None:
        """Re-check due noticed cases once: removed, still online, escalated, reappeared."""
        rt = click.get_current_context().find_root().obj.runtime()
        on_progress = _progress() if sys.stderr.isatty() and not as_json else None
        counts, summary = asyncio.run(run_sweep(rt, limit=limit, workers=workers,
                                                on_progress=on_progress))
        if on_progress is not None:
            click.echo("", err=True)
        if as_json:
            click.echo(json.dumps(counts))
            return
        click.echo(", ".join(f"{k} {counts[k]}" for k in COUNT_KEYS)
                   + f" in {summary.seconds:.1f}s")
        if summary.stopped_by_signal:
            click.echo(f"stopped by signal; {summary.released} queued cases released")

    bench = cli.commands.get("bench")
    if isinstance(bench, click.Group) and "recheck" not in bench.commands:
        @bench.command("recheck")
        @click.option("--cases", type=click.IntRange(min=1), default=100_000,
                      show_default=True)
        @click.option("--workers", type=click.IntRange(min=1), default=64, show_default=True)
        @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
        def bench_recheck_cmd(cases: int, workers: int, as_json: bool) -> None:
            """Re-checks/s for N due cases against a loopback web server."""
            result = bench_recheck(cases, workers=workers)
            if as_json:
                click.echo(json.dumps(result, indent=2))
            else:
                for key, value in result.items():
                    click.echo(f"{key}: {value}")


# -- benchmark ---------------------------------------------------------------------------------
BENCH_HOSTS = 64
BENCH_IMAGES = 8


def _bench_case(i: int) -> str:
    """What case ``i`` of the benchmark finds: removed / online / replaced / soft_404."""
    kind = i % 10
    return "removed" if kind < 5 else "online" if kind < 8 else "replaced" if kind == 8 \
        else "soft_404"


def _bench_server(n: int, port_out: Any, stop: Any) -> None:
    """Child process: a loopback lab server with the content of ``n`` benchmark cases."""
    from engine.lab.images import demo_image_bytes
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
    from engine.lab.images import demo_image_bytes
    from engine.store.base import IntakeRow
    from engine.urls import canonicalize
    from plugins.fetch import hash_bytes

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
    with store._write() as conn:  # benchmark set-up only: the stage code path is what is timed
        conn.execute("UPDATE cases SET state = 'noticed', retry_at = ?", (now,))
        conn.executemany(
            "INSERT INTO items(case_id, url, kind, status, content_type, hashes, matches,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            [(cid, f"http://h{i % BENCH_HOSTS}.bench.test:{port}/m/{i}.jpg", "media", 200,
              "image/jpeg", json.dumps(hashes[i % BENCH_IMAGES]),
              json.dumps([{"list": "bench", "category": "baseline", "hash_type": "sha256",
                           "distance": 0}]), now, now) for i, cid in enumerate(ids)])
        conn.executemany("INSERT INTO case_data(case_id, key, value) VALUES (?,?,?)",
                         [(cid, "routes", json.dumps([route])) for cid in ids])
        conn.executemany("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                         " VALUES (?,?,?,?,?,?)",
                         [(cid, now, "notify", "bench", "noticed", "{}") for cid in ids])


def bench_recheck(cases: int = 100_000, *, workers: int = 64) -> dict[str, Any]:
    """Re-checks/s for ``cases`` due cases against a loopback server in its own process."""
    import multiprocessing
    import tempfile
    import time
    from datetime import UTC, datetime
    from pathlib import Path

    import plugins.recheck as recheck_plugin
    from engine.clock import Clock
    from engine.runtime import Runtime

    mp = multiprocessing.get_context("spawn")
    port_q, stop = mp.Queue(), mp.Event()
    server = mp.Process(target=_bench_server, args=(cases, port_q, stop), daemon=True)
    server.start()
    try:
        port = int(port_q.get(timeout=600))
        with tempfile.TemporaryDirectory(prefix="ntd-bench-recheck-") as tmp:
            clock = Clock(fixed=datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
            hosts = {f"h{i}.bench.test": "127.0.0.1" for i in range(BENCH_HOSTS)}
            rt = Runtime.open(
                db=str(Path(tmp) / "bench.db"), clock=clock,
                extra_plugins=[("recheck", recheck_plugin)],
                overrides={"lab": {"allow_private_networks": True}, "resolve.hosts": hosts,
                           "fetch": {"allowed_ports": [port]},
                           "recheck": {"jitter": 0.0, "per_host_concurrency": 8},
                           "pipeline": {"poll_seconds": 0.05, "queue_size": 1024}})
            try:
                started = time.perf_counter()
                seed_bench_cases(rt.store, cases, port=port, now=clock.now_text())
                seeded = time.perf_counter() - started
                cpu0 = time.process_time()
                counts, summary = asyncio.run(run_sweep(rt, workers=workers,
                                                        install_signal_handlers=False))
                cpu = time.process_time() - cpu0
                store: Any = rt.store  # the SQLite store made above
                outbox = store._read("SELECT count(*) FROM outbox")[0][0]
                states = rt.store.count_by_state()
            finally:
                rt.close()
    finally:
        stop.set()
        server.join(timeout=30)
    seconds = summary.seconds or 1e-9
    return {"cases": cases, "workers": workers, "seed_seconds": round(seeded, 1),
            "seconds": round(seconds, 1), "rechecks_per_s": round(counts["checked"] / seconds),
            "rechecks_per_cpu_s": round(counts["checked"] / cpu) if cpu else None,
            **counts, "outbox_rows": outbox, "states": states}
