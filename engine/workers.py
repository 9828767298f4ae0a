"""Worker registry and heartbeat: which ``ntd run`` processes are alive, and their leases.

Every worker (lease owner id, ``ntd run --worker-id``; default ``host:pid``) registers a row in
``workers`` and beats every ``interval`` seconds. A beat

* records ``heartbeat_at``,
* extends the leases the worker holds (cases and notices being sent) to ``now + lease_seconds``,
  so a slow stage never loses its case while the worker lives, and
* releases the leases of *registered* workers whose last beat is older than three intervals
  (crashed or killed): their cases become claimable at once instead of at lease expiry.

A worker that never registered (older ntd, a one-off command) is left alone: its leases simply
expire at ``lease_until``. A worker restarted with the same id only extends leases it took in
this incarnation (``lease_until`` at or after its start plus one lease), so the dead incarnation's
leases still expire; ``register_worker(..., release_previous=True)`` — called before the pipeline
claims anything — releases them at once.

Works on both backends through the store's public ``transaction()``: on PostgreSQL the lease
extension skips rows a committer holds locked (``SKIP LOCKED``) so it never waits or deadlocks;
on SQLite the single writer makes it exclusive anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine import clock as clock_mod

if TYPE_CHECKING:
    from engine.context import StageContext
    from engine.store import Store
    from engine.store.base import Transaction

log = logging.getLogger("ntd.workers")

LIVE_INTERVALS = 3  # a worker is live while its last beat is younger than this many intervals
STATE_KEY = "ntd.worker"  # where the registration is kept in ``ctx.state``


def beat_interval(lease_seconds: float) -> float:
    """Seconds between beats: a third of a lease (so two beats may be missed), 0.5–10 s."""
    return min(10.0, max(0.5, lease_seconds / 3))


@dataclass(frozen=True, kw_only=True)
class Registration:
    """This process's entry in the registry."""

    worker_id: str
    token: str  # unique per process incarnation
    started_at: str
    interval: float
    lease_seconds: float
    released: int  # leases of a previous incarnation released at registration


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """One registered worker as ``ntd workers`` shows it."""

    id: str
    host: str
    pid: int
    started_at: str
    heartbeat_at: str
    interval_seconds: float
    age_seconds: float  # since the last beat
    live: bool
    leases: int  # cases leased
    notice_leases: int  # notices being sent

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


# -- SQL through the store's public transaction (both dialects) ---------------------------------
def _tx(store: Store) -> AbstractContextManager[Transaction]:
    return store.transaction()


def _plus(now: str, seconds: float) -> str:
    return clock_mod.fmt(clock_mod.parse(now) + timedelta(seconds=seconds))


def _release(tx: Transaction, owners: list[str]) -> int:
    """Drop every case and notice lease of ``owners`` (notices stay ``sending``: claimable)."""
    released = 0
    for owner in owners:
        tx("UPDATE cases SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
           (owner,))
        released += tx.rowcount
        tx("UPDATE notices SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
           (owner,))
        released += tx.rowcount
    return released


# -- registry operations (synchronous; run them on the store's thread) ---------------------------
def register_worker(store: Store, worker_id: str, *, now: str, lease_seconds: float,
                    interval: float | None = None, release_previous: bool = False,
                    host: str | None = None, pid: int | None = None) -> Registration:
    """Register (or re-register) ``worker_id``; returns this incarnation's registration.

    ``release_previous``: if a previous incarnation of the same id is registered, release its
    leases now. Only safe before this process has claimed anything (call it first at start-up).
    """
    interval = interval or beat_interval(lease_seconds)
    token = uuid.uuid4().hex
    released = 0
    with _tx(store) as tx:
        before = tx("SELECT token FROM workers WHERE id = ?", (worker_id,))
        if release_previous and before:
            released = _release(tx, [worker_id])
        tx("INSERT INTO workers(id, host, pid, token, started_at, heartbeat_at,"
           " interval_seconds, lease_seconds) VALUES (?,?,?,?,?,?,?,?)"
           " ON CONFLICT(id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
           " token = excluded.token, started_at = excluded.started_at,"
           " heartbeat_at = excluded.heartbeat_at, interval_seconds = excluded.interval_seconds,"
           " lease_seconds = excluded.lease_seconds",
           (worker_id, host or socket.gethostname(), pid if pid is not None else os.getpid(),
            token, now, now, float(interval), float(lease_seconds)))
    if released:
        log.info("worker %s: released %d leases of its previous run", worker_id, released)
    return Registration(worker_id=worker_id, token=token, started_at=now, interval=interval,
                        lease_seconds=lease_seconds, released=released)


def beat(store: Store, reg: Registration, *, now: str) -> dict[str, int]:
    """One heartbeat: record it, extend this incarnation's leases, release dead workers' leases.

    Returns counts: ``extended`` (case and notice leases), ``reclaimed`` (leases of dead
    workers released), ``dead`` (workers found dead and removed from the registry).
    """
    until = _plus(now, reg.lease_seconds)
    # Leases this incarnation took end at or after its start plus one lease; a dead earlier
    # incarnation's leases end before that, so they are never kept alive by us.
    floor = _plus(reg.started_at, reg.lease_seconds)
    lock = f" ORDER BY id{store.dialect.skip_locked}"
    with _tx(store) as tx:
        tx("UPDATE workers SET heartbeat_at = ?, token = ? WHERE id = ?",
           (now, reg.token, reg.worker_id))
        if tx.rowcount == 0:  # removed (e.g. declared dead during a long pause): re-register
            tx("INSERT INTO workers(id, host, pid, token, started_at, heartbeat_at,"
               " interval_seconds, lease_seconds) VALUES (?,?,?,?,?,?,?,?)",
               (reg.worker_id, socket.gethostname(), os.getpid(), reg.token, reg.started_at,
                now, float(reg.interval), float(reg.lease_seconds)))
        tx(f"UPDATE cases SET lease_until = ? WHERE id IN (SELECT id FROM cases"
           f" WHERE lease_owner = ? AND lease_until >= ? AND lease_until < ?{lock})",
           (until, reg.worker_id, floor, until))
        extended = tx.rowcount
        tx(f"UPDATE notices SET lease_until = ? WHERE id IN (SELECT id FROM notices"
           f" WHERE lease_owner = ? AND state = 'sending' AND lease_until >= ?"
           f" AND lease_until < ?{lock})", (until, reg.worker_id, floor, until))
        extended += tx.rowcount
        dead = [r["id"] for r in tx(
            "SELECT id, heartbeat_at, interval_seconds FROM workers WHERE id <> ?",
            (reg.worker_id,))
            if _plus(r["heartbeat_at"], LIVE_INTERVALS * float(r["interval_seconds"])) < now]
        reclaimed = _release(tx, dead)
        for worker_id in dead:
            tx("DELETE FROM workers WHERE id = ?", (worker_id,))
    if dead:
        log.warning("workers %s stopped beating: released %d of their leases", dead, reclaimed)
    return {"extended": extended, "reclaimed": reclaimed, "dead": len(dead)}


def unregister_worker(store: Store, reg: Registration) -> None:
    """Remove this incarnation's registry row (a clean stop)."""
    with _tx(store) as tx:
        tx("DELETE FROM workers WHERE id = ? AND token = ?", (reg.worker_id, reg.token))


def list_workers(store: Store, *, now: str) -> tuple[list[WorkerInfo], dict[str, int]]:
    """Registered workers (newest beat first) and lease owners that are not registered.

    The second value maps each unregistered lease owner to the leases it holds (cases and
    notices): one-off commands, or workers of an ntd without the registry.
    """
    with _tx(store) as tx:
        rows = tx("SELECT id, host, pid, started_at, heartbeat_at, interval_seconds FROM workers"
                  " ORDER BY heartbeat_at DESC, id")
        cases = {r["owner"]: int(r["n"]) for r in tx(
            "SELECT lease_owner AS owner, count(*) AS n FROM cases"
            " WHERE lease_owner IS NOT NULL GROUP BY lease_owner")}
        notices = {r["owner"]: int(r["n"]) for r in tx(
            "SELECT lease_owner AS owner, count(*) AS n FROM notices"
            " WHERE lease_owner IS NOT NULL GROUP BY lease_owner")}
    moment = clock_mod.parse(now)
    out = []
    for r in rows:
        age = (moment - clock_mod.parse(r["heartbeat_at"])).total_seconds()
        interval = float(r["interval_seconds"])
        out.append(WorkerInfo(id=r["id"], host=r["host"], pid=int(r["pid"]),
                              started_at=r["started_at"], heartbeat_at=r["heartbeat_at"],
                              interval_seconds=interval, age_seconds=round(age, 3),
                              live=age <= LIVE_INTERVALS * interval,
                              leases=cases.get(r["id"], 0),
                              notice_leases=notices.get(r["id"], 0)))
    known = {w.id for w in out}
    others: dict[str, int] = {}
    for owner in sorted((set(cases) | set(notices)) - known):
        others[owner] = cases.get(owner, 0) + notices.get(owner, 0)
    return out, others


# -- the coroutine the pipeline runs -------------------------------------------------------------
async def start_worker(ctx: StageContext, *, release_previous: bool = True) -> Registration:
    """Register ``ctx.owner`` before the pipeline claims anything (kept in ``ctx.state``).

    With ``release_previous`` the leases of an earlier run with the same worker id (a crashed
    process restarted under its id) are released at once.
    """
    lease_seconds = float(ctx.config.get("pipeline", "lease_seconds", 300))
    reg: Registration = await ctx.store.call_fn(
        register_worker, ctx.owner, now=ctx.clock.now_text(), lease_seconds=lease_seconds,
        release_previous=release_previous)
    ctx.state[STATE_KEY] = reg
    return reg


async def heartbeat(ctx: StageContext, stop: asyncio.Event, *,
                    interval: float | None = None) -> None:
    """Beat for ``ctx.owner`` every few seconds until ``stop`` is set, then unregister.

    Uses the registration made by ``start_worker`` if there is one; otherwise registers now
    (without releasing anything: claims may already be in flight) and treats leases taken up to
    one interval before as its own. Database errors are logged and retried at the next beat —
    a missed beat only shortens the time until the leases expire.
    """
    reg: Registration | None = ctx.state.get(STATE_KEY)
    if reg is None or reg.worker_id != ctx.owner:
        lease_seconds = float(ctx.config.get("pipeline", "lease_seconds", 300))
        every = interval or beat_interval(lease_seconds)
        now = ctx.clock.now()
        reg = await ctx.store.call_fn(
            register_worker, ctx.owner, now=clock_mod.fmt(now - timedelta(seconds=every)),
            lease_seconds=lease_seconds, interval=every)
        ctx.state[STATE_KEY] = reg
    every = interval or reg.interval
    try:
        while not stop.is_set():
            try:
                await ctx.store.call_fn(beat, reg, now=ctx.clock.now_text())
            except Exception as exc:  # keep beating: the next one may get through
                log.warning("heartbeat of %s failed: %s", reg.worker_id, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
    finally:
        with contextlib.suppress(Exception):
            await ctx.store.call_fn(unregister_worker, reg)
