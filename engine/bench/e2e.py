"""``ntd bench e2e``: the whole chain on a loopback world, measured.

A web server with generated images and pages under 200 simulated host names (latency, slow,
failing and oversized responses), a loopback RDAP registry, a static DNS map and an SMTP sink;
a synthetic hash list; N submitted URLs; the pipeline until idle. Reported: URLs/s end to end,
p50/p99 time per stage, notices sent, CPU utilisation, peak RSS, the longest event-loop stall and
correctness (planted matches found, false matches, every notice received once).

``hostile_share`` replaces that share of the URLs with hostile ones (``engine.lab.hostile``: tag
soup, giant attribute URLs, huge-dimension small PNGs alone and eight to a page); the report
then says what became of them (``hostile``) and the peak resident memory of the engine and all
its processes together (``peak_rss_total_mb``, sampled), next to the clean figures.

``distinct_share`` (default 0.9) makes the images realistic and mostly distinct files (see
``run_e2e``); the report then carries the machine's hashing limit for them
(``hash_limit_images_per_s``) and the run's ``images_per_s`` as ``share_of_hash_limit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from engine.cpu_pool import resident_mb
from engine.intake import submit_files
from engine.lab.world import FullLab, WorldServerProcess, bind_urls, build_world
from engine.runtime import Runtime

DISTINCT_SHARE = 0.9  # ``--distinct-share``: most reported files are shared by no other report


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round((own + children) / 1024, 1)


class _TreeRss:
    """Samples the resident memory of this process and its descendants (but ``exclude`` and
    theirs: the simulated internet) every ``interval`` seconds; ``peak_mb`` is the largest sum."""

    def __init__(self, exclude: set[int], interval: float = 0.1) -> None:
        self.exclude = exclude
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ntd-bench-rss")

    def _tree(self) -> list[int]:
        found, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            if pid in self.exclude:
                continue
            found.append(pid)
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as fh:
                        todo += [int(c) for c in fh.read().split()]
                except OSError:
                    pass
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = sum(resident_mb(pid) or 0.0 for pid in self._tree())
            self.peak_mb = max(self.peak_mb, total)

    def __enter__(self) -> _TreeRss:
        if os.path.exists("/proc/self/task"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def write_config(overrides: dict[str, dict[str, Any]], path: Path) -> None:
    """Write configuration overrides as an ``ntd.toml`` (for worker processes)."""
    lines = []
    for section, values in overrides.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                continue
            lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


async def run_e2e(*, urls: int = 1000, latency_ms: float = 50.0, image_share: float = 0.7,
                  hosters: int = 200, db: str | None = None, workers: int | None = None,
                  planted: int = 20, processes: int = 0, kill_one: bool = False,
                  hostile_share: float = 0.0,
                  distinct_share: float | None = DISTINCT_SHARE) -> dict[str, Any]:
    """Build the lab, run N URLs through every stage, and measure.

    ``distinct_share`` (default 0.9) serves realistic images (JPEG 640-1600 px, some PNG and
    WebP), that share of image URLs a file of its own; ``None`` is the older world of 220
    demo JPEGs, where the SHA-256 hash cache makes hashing nearly free."""
    args: dict[str, Any] = {"urls": urls, "hosters": hosters, "planted": planted,
                            "image_share": image_share, "latency_ms": latency_ms}
    if hostile_share:
        args["hostile_share"] = hostile_share
    if distinct_share is not None:  # a pool of 10-100 pixel sources (generation costs ~0.1 s)
        args.update(distinct_share=distinct_share, image_pool=min(100, max(10, urls // 20)))
    # The simulated internet (web, RDAP, SMTP) runs in its own process: the engine's figures
    # are its own.
    server = await asyncio.to_thread(WorldServerProcess(full=True, **args).start)
    world = build_world(**args, plan_only=True)
    world.external_port = server.port
    lab = await FullLab(world, remote=server).start()
    tmp = tempfile.TemporaryDirectory(prefix="ntd-e2e-")
    try:
        overrides = lab.config_overrides()
        overrides["pipeline"] = {"poll_seconds": 0.05}
        if processes > 1:  # each worker hashes on its share of the cores (as the README says)
            overrides["pipeline"]["cpu_workers"] = max(1, (os.cpu_count() or 1) // processes)
        if workers:
            overrides["pipeline"]["workers"] = workers
        rt = Runtime.open(db=db or str(Path(tmp.name) / "e2e.db"), overrides=overrides)
        try:
            with _TreeRss(exclude={server.proc.pid}) as rss:
                result = await _measure(
                    rt, lab, Path(tmp.name), processes=processes,
                    kill_one_after=urls // 3 if kill_one and processes else 0,
                    overrides=overrides, db=db or str(Path(tmp.name) / "e2e.db"))
            result["peak_rss_total_mb"] = round(rss.peak_mb, 1)
            result["distinct_share"] = distinct_share
            if distinct_share is not None:
                result.update(_hash_limit(world, result))
            if hostile_share:
                result["hostile"] = _hostile_outcomes(rt, lab.world)
            return result
        finally:
            rt.close()
    finally:
        await lab.close()
        server.stop()
        tmp.cleanup()


def _all_cases(rt: Runtime, page: int = 2000) -> Any:
    """Every case, a page at a time (a 100k-case list would dominate the memory figure)."""
    offset = 0
    while True:
        batch = rt.store.list_cases(limit=page, offset=offset)
        if not batch:
            return
        yield from batch
        offset += page


def _progressed(rt: Runtime) -> int:
    """Cases that have left ``new`` (for deciding when to kill a worker)."""
    counts = rt.store.count_by_state()
    return sum(counts.values()) - counts.get("new", 0)


STAGE_ACTIONS = {"fetch": ("fetched", "unreachable"), "match": ("matched", "needs_assessment",
                                                                "suppressed"),
                 "resolve": ("resolved",), "route": ("routed", "awaiting_routing"),
                 "notify": ("noticed",)}


def duplicate_stage_events(rt: Runtime) -> int:
    """Stage results committed more than once for a case (must be 0 after any crash)."""
    duplicates = 0
    for case in _all_cases(rt):
        seen: dict[tuple[str, str], int] = {}
        for event in rt.store.events(case["id"]):
            if event.action in STAGE_ACTIONS.get(event.stage, ()):
                key = (event.stage, event.action)
                seen[key] = seen.get(key, 0) + 1
        # (a run never retries an unreachable URL before its retry time, so no exceptions)
        duplicates += sum(n - 1 for n in seen.values() if n > 1)
    return duplicates


async def _run_processes(n: int, *, db: str, overrides: dict[str, dict[str, Any]],
                         folder: Path, kill_one_after: int = 0,
                         progress: Any = None) -> list[dict[str, Any]]:
    """``n`` worker processes (``ntd run --until-idle --worker-id wN``) on the shared database.

    With ``kill_one_after``, worker 0 is killed with SIGKILL once ``progress()`` reports that
    many committed stage results, then started again under the same worker id.
    """
    config = folder / "workers.toml"
    write_config(overrides, config)
    env = {**os.environ, "NTD_CONFIG": str(config)}

    async def spawn(i: int) -> asyncio.subprocess.Process:
        # Own session: a kill takes the worker's hashing processes down with it (as a crash of
        # the machine would) and they do not keep its stdout open.
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "--db", db, "run", "--until-idle", "--json",
            "--worker-id", f"bench-w{i}", env=env, stdout=asyncio.subprocess.PIPE,
            start_new_session=True)

    procs = [await spawn(i) for i in range(n)]
    if kill_one_after and progress is not None:
        while await asyncio.to_thread(progress) < kill_one_after:
            await asyncio.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(procs[0].pid, signal.SIGKILL)  # no clean-up: leases are left behind
        await procs[0].communicate()
        procs[0] = await spawn(0)
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    return [json.loads(out) for out, _ in outs if out.strip()]


async def _measure(rt: Runtime, lab: FullLab, folder: Path, *, processes: int = 0,
                   kill_one_after: int = 0,
                   overrides: dict[str, dict[str, Any]] | None = None,
                   db: str = "") -> dict[str, Any]:
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import build_demo_hashlist

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.media.hashlist_format import parse_hashlist

    world = lab.world
    list_file = folder / "list.csv"
    build_demo_hashlist(list_file, n=len(world.planted_seeds))
    rt.store.import_hashlist(
        name="lab-baseline", source="ntd lab", trust="auto", negative=False, thresholds={},
        now=rt.clock.now_text(),
        entries=((e.hash_type, e.hash, e.category, e.label, e.source)
                 for e in parse_hashlist(list_file)))
    src = folder / "urls.txt"
    src.write_text("\n".join(bind_urls(world)) + "\n", encoding="utf-8")

    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    intake_started = time.perf_counter()
    result = await asyncio.to_thread(submit_files, rt.store, [str(src)], clock=rt.clock)
    intake_seconds = time.perf_counter() - intake_started
    if processes:
        runs = await _run_processes(
            processes, db=db, overrides=overrides or {}, folder=folder,
            kill_one_after=kill_one_after,
            progress=lambda: _progressed(rt))
        stage_ms = {stage: {"p50_ms": max(r["stages"][stage]["p50_ms"] for r in runs
                                          if stage in r.get("stages", {})),
                            "p99_ms": max(r["stages"][stage]["p99_ms"] for r in runs
                                          if stage in r.get("stages", {})),
                            "cases": sum(r["processed"].get(stage, 0) for r in runs)}
                    for stage in {s for r in runs for s in r.get("stages", {})}}
        loop_block_ms = max(r.get("max_loop_block_ms", 0.0) for r in runs)
        loop_blocks = [{k: r.get(k) for k in ("max_loop_block_ms", "max_loop_block_at_s",
                                              "loop_blocks_over_100ms", "seconds")}
                       for r in runs]
    else:
        summary = await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        stage_ms = {stage: {"p50_ms": round(_pct(ms, 0.5), 1),
                            "p99_ms": round(_pct(ms, 0.99), 1), "cases": len(ms)}
                    for stage, ms in summary.stage_ms.items()}
        loop_block_ms = summary.max_loop_block_ms
        loop_blocks = [{"max_loop_block_ms": round(loop_block_ms, 1),
                        "max_loop_block_at_s": round(summary.max_loop_block_at, 1),
                        "loop_blocks_over_100ms": summary.loop_blocks_over_100ms,
                        "seconds": round(summary.seconds, 1)}]
    seconds = time.perf_counter() - wall0
    cpu = _cpu_seconds() - cpu0

    peak_rss = _peak_rss_mb()  # before the correctness pass, which reads every case
    port = str(world.port)
    planted = {u.url.replace("PORT", port) for u in world.urls if u.planted}
    matched: set[str] = set()
    images_hashed = 0
    for c in _all_cases(rt):
        images_hashed += sum(1 for item in c["items"]
                             if (item["content_type"] or "").startswith("image/")
                             and (item["hashes"] or {}).get("sha256"))
        if any(m for item in c["items"] for m in item["matches"] if not m["negative"]):
            matched.add(c["canonical_url"])
    notices = rt.store.list_notices()
    expected = [n for n in notices if n["channel"] in ("email",)]
    arrived = lab.received_message_ids()
    received = set(arrived)
    n_urls = len(world.urls)
    return {
        "urls": n_urls,
        "seconds": round(seconds, 2),
        "urls_per_s": round(n_urls / seconds, 1),
        "intake_seconds": round(intake_seconds, 3),
        "intake_urls_per_s": round(n_urls / intake_seconds),
        "stages": stage_ms,
        "processes": processes or 1,
        "by_state": rt.store.count_by_state(),
        "cpu_utilisation": round(cpu / seconds / (os.cpu_count() or 1), 2),
        "peak_rss_mb": peak_rss,
        "max_loop_block_ms": round(loop_block_ms, 1),  # the engine's loop(s), while running
        "loop_blocks": loop_blocks,  # each engine process: its longest stall, when, how many
        "images_hashed": images_hashed,
        "planted_matches": len(planted),
        "found_matches": len(planted & matched),
        "false_matches": len(matched - planted),
        "notices_expected": len(expected),
        "notices_received": len(received),
        "notices_duplicated": len(arrived) - len(received),
        "accepted": result.accepted,
        "killed_and_restarted": bool(kill_one_after),
        "duplicate_stage_events": duplicate_stage_events(rt) if processes else 0,
    }


def _hash_limit(world: Any, result: dict[str, Any], sample: int = 24) -> dict[str, Any]:
    """The machine's hashing limit for this world's images and the run's share of it.

    ``hash_limit_images_per_s`` is images per CPU-second of ``hash_media`` (what the fetch
    stage's CPU pool runs on every fetched image) on a sample of the world's pool, times the
    cores available: no engine can hash faster on this machine. ``images_per_s`` counts the
    images the run fetched and hashed (items with a SHA-256) per second of the run."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import realistic_image

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.media.hashing import hash_media

    planted = len(world.planted_seeds)
    datas = [realistic_image(planted + k)[0] for k in range(sample)]
    hash_media(datas[0])  # warm-up (imports, plugin tables)
    cpu0 = time.process_time()
    for data in datas:
        hash_media(data)
    per_cpu_s = sample / max(time.process_time() - cpu0, 1e-9)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = per_cpu_s * (cores or 1)
    images_per_s = result["images_hashed"] / max(result["seconds"], 1e-9)
    return {"hash_ms_per_image": round(1000 / per_cpu_s, 1),
            "hash_limit_images_per_s": round(limit, 1),
            "images_per_s": round(images_per_s, 1),
            "share_of_hash_limit": round(images_per_s / limit, 2)}


def _hostile_outcomes(rt: Runtime, world: Any) -> dict[str, Any]:
    """What became of the hostile URLs: how many of each kind, the item errors (refusals) and
    page scans that stopped early, and the cases' states."""
    port = str(world.port)
    kinds = {u.url.replace("PORT", port): u.kind for u in world.urls
             if u.kind.startswith("hostile_")}
    refused: Counter[str] = Counter()
    scans: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for case in _all_cases(rt):
        if case["canonical_url"] not in kinds:
            continue
        states[case["state"]] += 1
        refused.update(i["error"] for i in case["items"] if i["error"])
        for event in rt.store.events(case["id"]):
            scan = event.detail.get("page_scan") if event.action == "fetched" else None
            if scan:
                scans[scan["stopped"]] += 1
    return {"urls": dict(Counter(kinds.values())), "item_errors": dict(refused),
            "page_scans_stopped": dict(scans), "states": dict(states)}


def bench_e2e(**kwargs: Any) -> dict[str, Any]:
    """Synchronous entry point for the CLI."""
    return asyncio.run(run_e2e(**kwargs))
