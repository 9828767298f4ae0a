"""The pipeline: an asyncio worker pool per stage with bounded queues between store and workers.

Each stage has a *feeder* that leases due cases from the store (never more than its queue has room
for: backpressure), N *workers* that run the stage hook, and one *committer* that commits results in
groups on the database thread. A stage's result and the case's new state commit atomically; only
then can the next stage's feeder claim the case. So a crash or ``kill -9`` loses nothing: on
restart, leases held by dead processes on this host are released and unfinished cases resume from
their last committed state, and a stage's effect is committed exactly once per case.

SIGINT/SIGTERM stop the feeders; in-flight cases finish (up to a grace period, after which they are
cancelled and requeued) and cases still waiting in a queue are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from engine import workers as worker_registry
from engine.context import StageContext
from engine.errors import ConfigError, NtdError, PluginError, StageError
from engine.intake_driver import IntakeDriver, collect_sources
from engine.models import STATES, StageResult
from engine.plugin_manager import call_all, call_first, implementations
from engine.store import Commit

log = logging.getLogger("ntd.pipeline")

MAX_ATTEMPTS = 5
COMMIT_BATCH = 256  # commits per database transaction (group commit)
EMPTY_CLAIM_GAP = 0.02  # seconds between claims of a stage that found nothing due
# Stages that mostly wait on the network get more workers unless configured otherwise.
DEFAULT_STAGE_WORKERS = {"fetch": 128, "match": 64, "recheck": 64, "resolve": 32}


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: the hook that implements it and the states it consumes."""

    name: str
    hook: str
    consumes: tuple[str, ...]


STAGES: tuple[Stage, ...] = (
    Stage("fetch", "ntd_fetch", ("new", "unreachable")),
    Stage("match", "ntd_match", ("fetched",)),
    Stage("resolve", "ntd_resolve", ("confirmed", "unresolved")),
    Stage("route", "ntd_route", ("resolved",)),
    Stage("notify", "ntd_notify", ("routed",)),
    Stage("recheck", "ntd_recheck",
          ("noticed", "monitoring", "escalated", "reappeared", "removed")),
)


def default_owner() -> str:
    """Lease owner id of this process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_local_owners(owners: list[str], me: str) -> list[str]:
    """Lease owners on this host whose process no longer exists."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        if owner == me:
            continue
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            dead.append(owner)
    return dead


class LoopMonitor:
    """Measures how long the event loop was blocked: a 10 ms ticker and its overshoot."""

    def __init__(self, interval: float = 0.01, threshold: float = 0.1) -> None:
        self.interval = interval
        self.threshold = threshold
        self.max_block = 0.0
        self.max_block_at = 0.0  # seconds after start
        self.over_threshold = 0  # stalls longer than ``threshold``
        self._started = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            late = time.perf_counter() - before - self.interval
            if late > self.threshold:
                self.over_threshold += 1
            if late > self.max_block:
                self.max_block = late
                self.max_block_at = before - self._started

    def start(self) -> None:
        """Begin measuring on the running loop.

        With ``NTD_LOOP_WATCHDOG_MS`` set, a thread also logs what the loop's thread was doing
        whenever the loop has not run for that long (a diagnostic for operators).
        """
        self._started = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._tick())
        limit = os.environ.get("NTD_LOOP_WATCHDOG_MS")
        if limit:
            self._watchdog(float(limit) / 1000)

    def _watchdog(self, limit: float) -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        beat = [time.perf_counter()]

        def on_loop() -> None:
            beat[0] = time.perf_counter()
            if self._task is not None and not self._task.done():
                loop.call_later(limit / 4, on_loop)

        def watch() -> None:
            reported = 0.0
            while self._task is not None and not self._task.done():
                time.sleep(limit / 4)
                stalled = time.perf_counter() - beat[0]
                if stalled > limit and beat[0] != reported:
                    reported = beat[0]
                    frame = sys._current_frames().get(loop_thread)
                    stack = "".join(traceback.format_stack(frame, limit=12)) if frame else "?"
                    log.warning("event loop stalled %.0f ms so far in:\n%s",
                                stalled * 1000, stack)

        on_loop()
        threading.Thread(target=watch, name="ntd-loop-watchdog", daemon=True).start()

    async def stop(self) -> None:
        """Stop measuring."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _warm_up() -> None:
    # deferred: pulls in aiohttp, loaded on first use
    import engine.safe_fetch  # noqa: F401  (imports aiohttp)
    from engine.urls import registrable_domain  # deferred: pulls in tldextract, loaded on first use

    registrable_domain("example.com")  # loads the public-suffix list


@dataclass
class RunSummary:
    """What one ``ntd run`` did."""

    processed: Counter[str] = field(default_factory=Counter)  # stage -> cases committed
    errors: Counter[str] = field(default_factory=Counter)
    parked: Counter[str] = field(default_factory=Counter)
    released: int = 0
    stopped_by_signal: bool = False
    seconds: float = 0.0
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    max_loop_block_ms: float = 0.0  # the longest the event loop could not run (LoopMonitor)
    max_loop_block_at: float = 0.0  # when, in seconds after the start
    loop_blocks_over_100ms: int = 0
    config_errors: Counter[str] = field(default_factory=Counter)  # ConfigError message -> n

    def config_failure(self) -> str | None:
        """The one configuration problem that failed every stage run of this run, if any
        (``ntd run --until-idle`` then exits 1: nothing can succeed until the file is fixed)."""
        if len(self.config_errors) != 1:
            return None
        [(message, count)] = self.config_errors.items()
        errors = sum(self.errors.values())
        if count != errors or sum(self.processed.values()) > errors:
            return None  # other errors too, or some stage run succeeded
        return message

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``ntd run --json``."""
        stages = {}
        for stage, ms in self.stage_ms.items():
            ordered = sorted(ms)
            stages[stage] = {"p50_ms": round(ordered[len(ordered) // 2], 1),
                             "p99_ms": round(ordered[min(len(ordered) - 1,
                                                         int(0.99 * len(ordered)))], 1)}
        return {"processed": dict(self.processed), "errors": dict(self.errors),
                "parked": dict(self.parked), "released": self.released,
                "stopped_by_signal": self.stopped_by_signal, "seconds": round(self.seconds, 3),
                "stages": stages, "max_loop_block_ms": round(self.max_loop_block_ms, 1),
                "max_loop_block_at_s": round(self.max_loop_block_at, 1),
                "loop_blocks_over_100ms": self.loop_blocks_over_100ms,
                "config_failure": self.config_failure()}


class _Committer:
    """Commits stage results in groups on the database thread (group commit)."""

    def __init__(self, ctx: StageContext, max_batch: int = COMMIT_BATCH) -> None:
        self.ctx = ctx
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[Commit, asyncio.Future[bool]]] = asyncio.Queue()

    async def submit(self, commit: Commit) -> bool:
        """Queue a commit and wait until it is durable; False if the lease was lost."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self.queue.put((commit, fut))
        return await fut

    async def run(self) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                lost = await self.ctx.store.apply([c for c, _ in batch], self.ctx.clock.now_text())
            except Exception as exc:  # the store failed: every waiter learns it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            lost_ids = set(lost)
            for commit, fut in batch:
                if not fut.done():
                    fut.set_result(commit.case_id not in lost_ids)


class Pipeline:
    """Runs every implemented stage until idle (``until_idle``) or until stopped."""

    def __init__(self, ctx: StageContext, *, workers: int | None = None,
                 until_idle: bool = False, stages: tuple[Stage, ...] = STAGES,
                 on_progress: Callable[[RunSummary], None] | None = None,
                 install_signal_handlers: bool = True, limit: int | None = None,
                 stop_when_drained: bool = False) -> None:
        """``limit`` stops after that many cases were claimed (and finished);
        ``stop_when_drained`` stops as soon as a claim finds nothing due while nothing is in
        flight, without waiting for services' pending work (a cron sweep of one stage)."""
        self.ctx = ctx
        self.limit = limit
        self.stop_when_drained = stop_when_drained
        cfg = ctx.config
        # None = per-stage defaults (more workers for stages that wait on the network).
        self.workers = workers or cfg.get("pipeline", "workers")
        self.concurrency = cfg.section("pipeline.concurrency")
        self.queue_size = cfg.get("pipeline", "queue_size", 256)
        self.lease_seconds = cfg.get("pipeline", "lease_seconds", 300)
        self.poll_seconds = cfg.get("pipeline", "poll_seconds", 1.0)
        self.grace = cfg.get("pipeline", "shutdown_grace_seconds", 30.0)
        self.until_idle = until_idle
        self.all_stages = stages
        self.on_progress = on_progress
        self.install_signal_handlers = install_signal_handlers
        self.summary = RunSummary()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._wakes = 0  # how often _wake was set (a feeder sees whether it missed one)
        self._in_flight = 0
        self._claiming = 0
        self._claims = 0
        self._queues: dict[str, asyncio.Queue[str]] = {}
        self._busy: set[asyncio.Task[Any]] = set()
        self._intake: IntakeDriver | None = None

    @property
    def active_stages(self) -> list[Stage]:
        """Stages at least one plugin implements."""
        return [s for s in self.all_stages if implementations(self.ctx.pm, s.hook)]

    def stop(self) -> None:
        """Ask the run to stop gracefully (what SIGTERM does)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> RunSummary:
        """Run until idle or stopped; returns the summary."""
        started = time.monotonic()
        store = self.ctx.store
        now = self.ctx.clock.now_text()
        owners = await store.lease_owners()
        dead = dead_local_owners(list(owners), self.ctx.owner)
        if self.ctx.owner in owners:
            # Leases under our own id are from an earlier life of this worker (crash/kill -9).
            dead.append(self.ctx.owner)
        if dead:
            self.summary.released = await store.release_owners(dead)
            log.info("released %d leases of dead workers %s", self.summary.released, dead)
        # Register before any claim: a restarted worker's old leases are released first.

        await worker_registry.start_worker(self.ctx)
        active = self.active_stages
        for stage in active:
            await store.unpark(stage.name, now)
        # Long-lived start-up objects (plugins, indexes, config) leave the collector's view, so
        # full collections during the run do not scan them (they showed as loop stalls).
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        if self.install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal)
        # What would otherwise load at the first case, on the loop (stalls of 100-300 ms seen by
        # NTD_LOOP_WATCHDOG_MS): aiohttp, the public-suffix list. A thread keeps the loop free.
        await asyncio.to_thread(_warm_up)
        if self.ctx.cpu_preload:  # plugins that hash or render: their pool starts now
            await self.ctx.start_cpu_pool()
        committer = _Committer(self.ctx)
        monitor = LoopMonitor()
        monitor.start()
        try:
            async with asyncio.TaskGroup() as tg:
                commit_task = tg.create_task(committer.run())
                heartbeat_stop = asyncio.Event()
                heartbeat = tg.create_task(worker_registry.heartbeat(self.ctx, heartbeat_stop))
                stage_tasks = []
                worker_tasks: list[asyncio.Task[None]] = []
                service_stop = asyncio.Event()
                service_tasks = [tg.create_task(coro) for coro, _ in await call_all(
                    self.ctx.pm, "ntd_service", ctx=self.ctx, stop=service_stop, _sync=True)]
                # Intake sources (mailbox, chat bots) hand reports in beside the stages; an
                # until-idle run polls each once and waits for what that pass hands in.
                self._intake = IntakeDriver(self.ctx, await collect_sources(self.ctx))
                service_tasks += [tg.create_task(self._intake.drive(
                    source, service_stop, once=self.until_idle))
                    for source in self._intake.sources]
                for stage in active:
                    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=self.queue_size)
                    self._queues[stage.name] = queue
                    stage_tasks.append(tg.create_task(self._feeder(stage, queue)))
                    default = self.workers or DEFAULT_STAGE_WORKERS.get(stage.name, 16)
                    n = int(self.concurrency.get(stage.name, default))
                    for _ in range(n):
                        worker = tg.create_task(self._worker(stage, queue, committer))
                        worker_tasks.append(worker)
                        stage_tasks.append(worker)
                await self._supervise(active)
                # Stop: feeders end, workers drain what they hold (bounded by the grace period).
                self._stopping.set()
                self._wake.set()
                for task in worker_tasks:
                    if task not in self._busy:
                        task.cancel()  # idle: waiting for a case that will not come
                pending: set[asyncio.Task[None]] = set()
                if stage_tasks:
                    _, pending = await asyncio.wait(stage_tasks, timeout=self.grace)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await self._release_queued()
                service_stop.set()
                if service_tasks:
                    _, late = await asyncio.wait(service_tasks, timeout=self.grace)
                    for task in late:
                        task.cancel()
                # Workers waited for their own commits, so nothing durable is pending here.
                commit_task.cancel()
                heartbeat_stop.set()
                await heartbeat
        finally:
            await monitor.stop()
            self.summary.max_loop_block_ms = monitor.max_block * 1000
            self.summary.max_loop_block_at = monitor.max_block_at
            self.summary.loop_blocks_over_100ms = monitor.over_threshold
            gc.unfreeze()
            if self.install_signal_handlers:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.remove_signal_handler(sig)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _on_signal(self) -> None:
        self.summary.stopped_by_signal = True
        log.warning("signal received: finishing in-flight work, then stopping")
        self.stop()

    async def _release_queued(self) -> None:
        ids = []
        for queue in self._queues.values():
            while not queue.empty():
                ids.append(queue.get_nowait())
        if ids:
            self._in_flight -= len(ids)
            released = await self.ctx.store.release(ids, self.ctx.owner)
            self.summary.released += released

    async def _supervise(self, active: list[Stage]) -> None:
        """Park cases of unimplemented stages; in until-idle mode, return once nothing is due."""
        inactive = [s for s in self.all_stages if s not in active]
        while not self._stopping.is_set():
            for stage in inactive:
                parked = await self.ctx.store.park(stage.consumes, stage.name,
                                                   self.ctx.clock.now_text())
                if parked:
                    self.summary.parked[stage.name] += parked
            if self.on_progress:
                self.on_progress(self.summary)
            if (self.until_idle and self._in_flight == 0 and self._claiming == 0
                    and (self._intake is None or self._intake.pending == 0)):
                claims_before = self._claims
                due = await self.ctx.store.due_count(
                    [st for s in active for st in s.consumes], self.ctx.clock.now_text())
                if (due == 0 and self._in_flight == 0 and self._claiming == 0
                        and self._claims == claims_before):
                    pending = await call_all(self.ctx.pm, "ntd_pending_work", ctx=self.ctx)
                    # Other workers' leased cases will become due work here: wait for them.
                    others = await self.ctx.store.lease_owners()
                    if (not any(n for n, _ in pending) and not others
                            and self._claims == claims_before):
                        return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=0.05)

    async def _feeder(self, stage: Stage, queue: asyncio.Queue[str]) -> None:
        while not self._stopping.is_set():
            room = queue.maxsize - queue.qsize()
            if self.limit is not None:
                room = min(room, self.limit - self._claims)
                if room <= 0:
                    if self._in_flight == 0:
                        self.stop()  # the limit is reached and its cases are done
                        return
                    await self._wait_wake(self.poll_seconds)
                    continue
            if queue.qsize() > queue.maxsize // 2:
                # Refill in batches below a low-water mark: one claim per many cases, not
                # one per finished case.
                await self._wait_wake(self.poll_seconds)
                continue
            self._claiming += 1
            wakes = self._wakes
            try:
                ids = await self.ctx.store.claim(
                    stage.consumes, limit=room, owner=self.ctx.owner,
                    lease_seconds=self.lease_seconds, now=self.ctx.clock.now_text())
                self._in_flight += len(ids)
                self._claims += len(ids)
            finally:
                self._claiming -= 1
            for case_id in ids:
                queue.put_nowait(case_id)
            if not ids:
                if self.stop_when_drained and self._in_flight == 0:
                    self.stop()  # nothing due and nothing in flight
                    return
                # Nothing due. Every finished case wakes the feeders, but an empty claim is a
                # write transaction: claim again at most every EMPTY_CLAIM_GAP (without this,
                # 1,000+ empty claims a run competed with the commits).
                gap = min(self.poll_seconds, EMPTY_CLAIM_GAP)
                await asyncio.sleep(gap)
                if self._wakes == wakes:
                    await self._wait_wake(self.poll_seconds - gap)

    async def _wait_wake(self, timeout: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _worker(self, stage: Stage, queue: asyncio.Queue[str],
                      committer: _Committer) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping.is_set():
            case_id = await queue.get()  # an idle worker is cancelled here at stop
            self._busy.add(me)
            started = time.perf_counter()
            try:
                commit = await self._run_stage(stage, case_id)
                await committer.submit(commit)
                self.summary.processed[stage.name] += 1
                self.summary.stage_ms.setdefault(stage.name, []).append(
                    (time.perf_counter() - started) * 1000)
            except asyncio.CancelledError:
                # Grace period over: the case is requeued (its lease released).
                await asyncio.shield(self.ctx.store.release([case_id], self.ctx.owner))
                raise
            finally:
                self._busy.discard(me)
                self._in_flight -= 1
                self._wakes += 1
                self._wake.set()

    async def _run_stage(self, stage: Stage, case_id: str) -> Commit:
        ctx = self.ctx
        case = await ctx.store.load_case(case_id)
        try:
            result, plugin = await call_first(ctx.pm, stage.hook, case=case, ctx=ctx)
            if result is None:
                raise PluginError(f"no plugin answered {stage.hook}")
            if not isinstance(result, StageResult):
                raise PluginError(f"plugin {plugin!r}: {stage.hook} returned "
                                  f"{type(result).__name__}, not StageResult")
            if result.state not in STATES:
                raise PluginError(f"plugin {plugin!r}: unknown state {result.state!r}")
            return Commit(case_id=case_id, owner=ctx.owner, stage=stage.name,
                          actor=result.actor or plugin or "engine", result=result)
        except Exception as exc:
            self.summary.errors[stage.name] += 1
            if isinstance(exc, ConfigError):
                self.summary.config_errors[exc.message] += 1
            return self._failure(stage, case, exc)

    def _failure(self, stage: Stage, case: Any, exc: Exception) -> Commit:
        """An unexpected error: retry later with backoff, then give up as ``failed``."""
        attempts = case.attempts + 1
        message = str(exc) if isinstance(exc, NtdError) else f"{type(exc).__name__}: {exc}"
        notes = getattr(exc, "__notes__", None)
        log.warning("stage %s failed for case %s: %s", stage.name, case.id, message)
        if attempts >= MAX_ATTEMPTS:
            result = StageResult(state="failed", action="failed", reason=message,
                                 detail={"attempts": attempts, "from_state": case.state})
        else:
            delay = min(3600, 30 * 2 ** (attempts - 1))
            result = StageResult(state=case.state, action="error", reason=message,
                                 retry_at=self.ctx.clock.now() + timedelta(seconds=delay),
                                 detail={"attempts": attempts,
                                         "reason_code": getattr(exc, "reason", "error"),
                                         "where": notes[-1] if notes else None})
        if isinstance(exc, StageError) and exc.reason:
            result.detail["reason_code"] = exc.reason
        return Commit(case_id=case.id, owner=self.ctx.owner, stage=stage.name, actor="engine",
                      result=result)
