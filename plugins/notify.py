"""Built-in notify stage: routed cases become notices delivered by e-mail or HTTP API.

- ``ntd_notify`` turns each route of a ``routed`` case into an outbox action (allow-listed
  content: URLs, hashes, classification, detection method, first-seen time; never reporter data
  or media) committed in the same transaction as the case's move to ``noticed``; ``retry_at`` is
  the first re-check (the earliest route deadline, else ``[notices] recheck_hours``).
- ``ntd_service`` runs the sender (``plugins.notices.sender``) beside the stages: aggregation
  per recipient, leases, retries with backoff, idempotency keys.
- ``ntd_pending_work`` reports due notices so ``ntd run --until-idle`` waits for delivery.
- Commands: ``ntd notices [--state] [--json]``, ``notices show|retry|send``, ``ntd bench notify``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from engine import hookimpl
from engine.config import Option
from engine.ids import new_id
from engine.models import StageResult
from plugins.notices.content import build_action
from plugins.notices.settings import SCHEMA, notice_settings

_STATE_KEY = "notify"


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {section: dict(options) for section, options in SCHEMA.items()}


@hookimpl
async def ntd_startup(ctx: Any) -> None:
    from plugins.notices.sender import NoticeSender

    # Builds channels and validates every template: a broken template stops the start here.
    # Notices render in the CPU pool: the run's event loop also fetches and commits.
    ctx.cpu_preload.add("plugins.notices.message")
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
async def ntd_notify(case: Any, ctx: Any) -> StageResult:
    settings = notice_settings(ctx.config)
    from plugins.escalation import is_placeholder

    routes = [r for r in case.data.get("routes") or [] if isinstance(r, dict)]
    # A placeholder target (e.g. "police:NL" with no contact configured) is never sent: it
    # stays visible in the routes and the trail for the analyst.
    placeholders = [r["target"] for r in routes
                    if r.get("target") and is_placeholder(r.get("target"))]
    actions = [{"id": new_id("A"),
                **build_action(case, route, reference_prefix=settings.reference_prefix)}
               for route in routes
               if route.get("target") and not is_placeholder(route.get("target"))]
    hours = [a["deadline_hours"] for a in actions
             if isinstance(a.get("deadline_hours"), int | float) and a["deadline_hours"] > 0]
    first_check = min(hours) if hours else settings.recheck_hours
    channels = Counter(a["channel"] for a in actions)
    detail: dict[str, Any] = {"actions": len(actions), "channels": dict(channels),
                              "recipients": sorted({a["recipient"] for a in actions})}
    if placeholders:
        detail["skipped_unconfigured_targets"] = sorted(placeholders)
    if len(actions) + len(placeholders) < len(routes):
        detail["skipped_routes_without_target"] = len(routes) - len(actions) - len(placeholders)
    return StageResult(state="noticed", action="noticed", outbox=actions, detail=detail,
                       retry_at=ctx.clock.now() + timedelta(hours=first_check))


@hookimpl
def ntd_register_commands(cli: Any) -> None:
    from plugins.notices.cli import register

    register(cli)
