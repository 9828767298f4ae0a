"""Notice stage (entry point notify): the hook implementations.

The notice content and the outbox sender are the modules beside this one (sender,
message, render, channels); cli holds ntd notices.
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine import hookimpl
from engine.config import Option
from engine.models import StageResult
from plugins.notify.notifier import (
    _STATE_KEY,
    notify_case,
)
from plugins.notify.settings import SCHEMA, notice_settings


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {section: dict(options) for section, options in SCHEMA.items()}


@hookimpl
async def ntd_startup(ctx: Any) -> None:
    from plugins.notify.sender import NoticeSender

    # Builds channels and validates every template: a broken template stops the start here.
    # Notices render in the CPU pool: the run's event loop also fetches and commits.
    ctx.cpu_preload.add("plugins.notify.message")
    ctx.state[_STATE_KEY] = NoticeSender.from_context(ctx, render_in_pool=True)


@hookimpl
async def ntd_shutdown(ctx: Any) -> None:
    sender = ctx.state.pop(_STATE_KEY, None)
    if sender is not None:
        await sender.aclose()


@hookimpl
def ntd_service(ctx: Any, stop: asyncio.Event) -> Any:
    sender = ctx.state.get(_STATE_KEY)
    return sender.run(stop) if sender is not None else None


@hookimpl
async def ntd_pending_work(ctx: Any) -> int:
    settings = notice_settings(ctx.config)
    return int(await ctx.store.notice_work_due(now=ctx.clock.now_text(),
                                               window_seconds=settings.window_seconds))




@hookimpl
def ntd_register_commands(cli: Any) -> None:
    from plugins.notify.cli import register

    register(cli)


@hookimpl
async def ntd_notify(case: Any, ctx: Any) -> StageResult:
    return await notify_case(case, ctx)
