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
import time
from collections.abc import Callable
from typing import Any

import click

from engine.pipeline import Pipeline, RunSummary, Stage
from engine.plugin_manager import call_all

COUNT_KEYS = ("checked", "removed", "still_online", "escalated", "reappeared", "moved",
              "errors")


def recheck_stage() -> Stage:
    """The engine's recheck stage (its consumed states are the engine's to define)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
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
            "moved": int(counts.get("moved", 0)),
            "errors": int(summary.errors.get("recheck", 0))}


async def run_sweep(rt: Any, *, limit: int | None = None, workers: int | None = None,
                    on_progress: Callable[[RunSummary], None] | None = None,
                    install_signal_handlers: bool = True, ctx: Any = None,
                    deliver: bool = False) -> tuple[dict[str, int], RunSummary]:
    """One sweep over due cases with an opened ``Runtime``; returns (counts, summary).

    ``ctx`` may be a prepared run context (tests inject a fetcher with a fake resolver).
    ``deliver``: afterwards, send what the sweep queued (``ntd_deliver``); the counts then
    include ``notices_sent``.
    """
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.recheck.checking import run_state

    ctx = ctx or rt.context()
    try:
        state = run_state(ctx)
        pipeline = SweepPipeline(ctx, stage=recheck_stage(), limit=limit, workers=workers,
                                 on_progress=on_progress,
                                 install_signal_handlers=install_signal_handlers)
        summary = await pipeline.run()
        counts = sweep_counts(summary, state.counts)
        if deliver and not summary.stopped_by_signal:
            sent = await call_all(ctx.pm, "ntd_deliver", ctx=ctx)
            counts["notices_sent"] = sum(int(n or 0) for n, _plugin in sent)
        return counts, summary
    finally:
        # Not ``ntd_startup`` (that would start e.g. the notice sender's service in a sweep),
        # but ``ntd_shutdown``: plugins whose hooks the sweep called (the resolve plugin when a
        # host is resolved again) close what they opened on first use.
        try:
            await call_all(ctx.pm, "ntd_shutdown", ctx=ctx)
        finally:
            await ctx.aclose()


def _progress() -> Callable[[RunSummary], None]:
    last = [0.0]

    def show(summary: RunSummary) -> None:
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
    @click.option("--no-send", is_flag=True,
                  help="Leave the notices the sweep queued to the sender (`ntd run`).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def recheck_cmd(due: bool, limit: int | None, workers: int | None, no_send: bool,
                    as_json: bool) -> None:
        """Re-check due noticed cases once: removed, still online, escalated, reappeared."""
        rt = click.get_current_context().find_root().obj.runtime()
        on_progress = _progress() if sys.stderr.isatty() and not as_json else None
        counts, summary = asyncio.run(run_sweep(rt, limit=limit, workers=workers,
                                                on_progress=on_progress,
                                                deliver=not no_send))
        if on_progress is not None:
            click.echo("", err=True)
        if as_json:
            click.echo(json.dumps(counts))
            return
        click.echo(", ".join(f"{k} {counts[k]}" for k in COUNT_KEYS)
                   + f" in {summary.seconds:.1f}s"
                   + (f"; {counts['notices_sent']} notice(s) sent" if "notices_sent" in counts
                      else ""))
        if summary.stopped_by_signal:
            click.echo(f"stopped by signal; {summary.released} queued cases released")
