"""Notice stage (entry point notify): the hook implementations.

The notice content and the outbox sender are the modules beside this one (sender,
message, render, channels); cli holds ntd notices.
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine import hookimpl
from engine.api import Case, StageContext
from engine.config import Option
from engine.models import StageResult
from plugins.notify.cli import register
from plugins.notify.notifier import (
    _STATE_KEY,
    notify_case,
)
from plugins.notify.settings import SCHEMA, notice_settings, smtp_settings


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {section: dict(options) for section, options in SCHEMA.items()}


@hookimpl
async def ntd_startup(ctx: StageContext) -> None:
    # deferred: pulls in jinja2, httpx, aiosmtplib, loaded on first use
    from plugins.notify.sender import NoticeSender

    # Builds channels and validates every template: a broken template stops the start here.
    # Notices render in the CPU pool: the run's event loop also fetches and commits.
    ctx.cpu_preload.add("plugins.notify.message")
    ctx.state[_STATE_KEY] = NoticeSender.from_context(ctx, render_in_pool=True)


@hookimpl
async def ntd_shutdown(ctx: StageContext) -> None:
    sender = ctx.state.pop(_STATE_KEY, None)
    if sender is not None:
        await sender.aclose()


@hookimpl
def ntd_service(ctx: StageContext, stop: asyncio.Event) -> Any:
    sender = ctx.state.get(_STATE_KEY)
    return sender.run(stop) if sender is not None else None


@hookimpl
async def ntd_pending_work(ctx: StageContext) -> int:
    settings = notice_settings(ctx.config)
    return int(await ctx.store.notice_work_due(now=ctx.clock.now_text(),
                                               window_seconds=settings.window_seconds))




@hookimpl
async def ntd_deliver(ctx: StageContext) -> int:
    # deferred: pulls in jinja2, httpx, aiosmtplib, loaded on first use
    from plugins.notify.sender import NoticeSender

    sender = NoticeSender.from_context(ctx)
    try:
        await sender.drain(flush=True)
    finally:
        await sender.aclose()
    return sender.sent


@hookimpl
def ntd_register_commands(cli: Any) -> None:
    register(cli)


@hookimpl
def ntd_notice_text(notice: Any, config: Any) -> dict[str, str] | None:
    # deferred: pulls in jinja2, loaded on first use
    from plugins.notify.message import render_notice

    if notice.get("channel") not in ("email", "api") or not notice.get("actions"):
        return None
    prepared = render_notice(notice, notice_settings(config), smtp_settings(config), None,
                             False)
    return {"subject": prepared.rendered.subject, "text": prepared.rendered.text}


@hookimpl
async def ntd_notify(case: Case, ctx: StageContext) -> StageResult:
    return await notify_case(case, ctx)
