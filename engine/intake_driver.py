"""Driving intake sources: collect them from ``ntd_intake_sources`` and run them beside the
stages (``ntd run``, ``engine.pipeline``) or alone (``ntd intake run``). Apart from
``engine.intake_sources`` (what plugins use, re-exported by ``engine.api``) because this side
needs the plugin manager."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from engine.errors import PluginError
from engine.intake_sources import IntakeDesk, IntakeSource
from engine.plugin_manager import call_all

log = logging.getLogger("ntd.intake")


async def collect_sources(ctx: Any) -> list[IntakeSource]:
    """Every source the plugins offer (``ntd_intake_sources``); names must be unique."""
    out: list[IntakeSource] = []
    seen: dict[str, str] = {}
    for answer, plugin in await call_all(ctx.pm, "ntd_intake_sources", ctx=ctx):
        for source in answer or ():
            if not isinstance(source, IntakeSource):
                raise PluginError(f"plugin {plugin!r}: ntd_intake_sources returned "
                                  f"{type(source).__name__}, not an intake source")
            if source.name in seen:
                raise PluginError(f"plugin {plugin!r}: intake source {source.name!r} is "
                                  f"already offered by {seen[source.name]!r}")
            seen[source.name] = plugin
            out.append(source)
    return out


class IntakeDriver:
    """Runs intake sources beside the stages (``ntd run``) or alone (``ntd intake run``).

    ``once``: each source polls once and stops (``ntd run --until-idle``, ``--once``);
    ``pending`` counts sources still in that first pass, so an until-idle run waits for what
    they hand in."""

    def __init__(self, ctx: Any, sources: Sequence[IntakeSource]) -> None:
        self.ctx = ctx
        self.sources = list(sources)
        self.pending = len(self.sources)
        self.handled: dict[str, int] = {}
        self.failed: dict[str, str] = {}  # source name -> why its first pass failed

    async def drive(self, source: IntakeSource, stop: asyncio.Event, *, once: bool) -> None:
        """Drive one source until ``stop`` (or one pass when ``once``); always closes it."""
        desk = IntakeDesk(self.ctx, source.name)
        first = True
        try:
            try:
                self.handled[source.name] = await source.poll(desk)
                await desk.settle()
            except Exception as exc:  # noqa: BLE001 - one broken source must not stop the run
                reason = f"{type(exc).__name__}: {getattr(exc, 'message', '')}".rstrip(": ")
                self.failed[source.name] = reason
                log.warning("intake source %s: first poll failed: %s", source.name, reason)
            self.pending -= 1
            first = False
            if not once:
                await source.run(desk, stop)
        finally:
            if first:
                self.pending -= 1
            with contextlib.suppress(Exception):
                await source.aclose()
