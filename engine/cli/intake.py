"""``ntd intake``: run one intake source alone, list the sources plugins offer."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import click

from engine.cli.common import JSON_OPT, Obj, emit_json
from engine.cli.root import cli
from engine.errors import InputError, NtdError
from engine.intake_driver import IntakeDriver, collect_sources
from engine.plugin_manager import call_all


@cli.group()
def intake() -> None:
    """Intake sources (mailbox, chat bots): run one, list them."""


@intake.command("list")
@JSON_OPT
@click.pass_obj
def intake_list(obj: Obj, as_json: bool) -> None:
    """The intake sources the configuration enables."""
    rt = obj.runtime()

    async def names() -> list[str]:
        ctx = rt.context()
        try:
            return [s.name for s in await collect_sources(ctx)]
        finally:
            await ctx.aclose()

    found = asyncio.run(names())
    emit_json(found) if as_json else click.echo("\n".join(found) or "no intake sources")


@intake.command("run")
@click.argument("name")
@click.option("--once", is_flag=True, help="Hand in what is waiting now, then stop.")
@JSON_OPT
@click.pass_obj
def intake_run(obj: Obj, name: str, once: bool, as_json: bool) -> None:
    """Run intake source NAME (until SIGINT/SIGTERM, or one pass with --once)."""
    rt = obj.runtime()
    result = asyncio.run(_run_one(rt, name, once))
    emit_json(result) if as_json else click.echo(
        f"{name}: handed in {result['messages']} message(s)")


async def _run_one(rt: Any, name: str, once: bool) -> dict[str, Any]:
    ctx = rt.context()
    try:
        await call_all(rt.pm, "ntd_startup", ctx=ctx)
        sources = await collect_sources(ctx)
        chosen = [s for s in sources if s.name == name]
        if not chosen:
            known = ", ".join(s.name for s in sources) or "none configured"
            raise InputError(f"no intake source {name!r} (known: {known})")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        driver = IntakeDriver(ctx, chosen)
        await driver.drive(chosen[0], stop, once=once)
        if name in driver.failed:  # exit 1 (cron sees it); the messages wait for the next run
            raise NtdError(f"intake source {name}: {driver.failed[name]}")
        return {"source": name, "messages": driver.handled.get(name, 0)}
    finally:
        try:
            await call_all(rt.pm, "ntd_shutdown", ctx=ctx)
        finally:
            await ctx.aclose()
