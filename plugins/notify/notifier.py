"""Built-in notify stage: routed cases become notices delivered by e-mail or HTTP API.

- ``ntd_notify`` turns each route of a ``routed`` case into an outbox action (allow-listed
  content: URLs, hashes, classification, detection method, first-seen time; never reporter data
  or media) committed in the same transaction as the case's move to ``noticed``; ``retry_at`` is
  the first re-check (the earliest route deadline, else ``[notices] recheck_hours``).
- ``ntd_service`` runs the sender (``plugins.notify.sender``) beside the stages: aggregation
  per recipient, leases, retries with backoff, idempotency keys.
- ``ntd_pending_work`` reports due notices so ``ntd run --until-idle`` waits for delivery.
- Police first (``[routing] police_first``, or the case's own ``police_first`` set by an analyst
  with ``ntd police-first CASE``): the police report is queued as usual and every other action
  of the case is held (``held = "police"``); the case waits in ``held_for_police`` until the
  police liaison releases it (``ntd release CASE``) or declines (the case is closed).
- Commands: ``ntd notices [--state] [--json]``, ``notices show|retry|send``, ``ntd bench notify``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from engine.api import Case, StageContext
from engine.ids import new_id
from engine.models import StageResult
from engine.notice_content import build_action
from engine.routes import is_placeholder
from engine.takedown import POLICE_HOLD, first_recheck
from plugins.notify.settings import notice_settings
from plugins.notify.windows import AUTHORITY_KINDS

_STATE_KEY = "notify"


async def notify_case(case: Case, ctx: StageContext) -> StageResult:
    """Queue the notices of one routed case (the ``ntd_notify`` hook)."""
    settings = notice_settings(ctx.config)
    routes = [r for r in case.data.get("routes") or [] if isinstance(r, dict)]
    # A placeholder target (e.g. "police:NL" with no contact configured) is never sent: it
    # stays visible in the routes and the trail for the analyst.
    placeholders = [r["target"] for r in routes
                    if r.get("target") and is_placeholder(r.get("target"))]
    actions = [{"id": new_id("A"),
                **build_action(case, route, reference_prefix=settings.reference_prefix)}
               for route in routes
               if route.get("target") and not is_placeholder(route.get("target"))]
    channels = Counter(a["channel"] for a in actions)
    detail: dict[str, Any] = {"actions": len(actions), "channels": dict(channels),
                              "recipients": sorted({a["recipient"] for a in actions})}
    if placeholders:
        detail["skipped_unconfigured_targets"] = sorted(placeholders)
    if len(actions) + len(placeholders) < len(routes):
        detail["skipped_routes_without_target"] = len(routes) - len(actions) - len(placeholders)
    if police_first(case, ctx.config):
        held = [a for a in actions if a.get("recipient_kind") not in AUTHORITY_KINDS]
        for action in held:
            action["held"] = POLICE_HOLD
        detail["held_for_police"] = len(held)
        return StageResult(state="held_for_police", action="held_for_police", outbox=actions,
                           detail=detail)
    return StageResult(state="noticed", action="noticed", outbox=actions, detail=detail,
                       retry_at=first_recheck(actions, ctx.config, ctx.clock.now()))


def police_first(case: Case, config: Any) -> bool:
    """Whether the case's police report must go out (and be released) before other notices.

    The case's own ``police_first`` (an analyst's or a rule's ``true``/``false``) wins over
    ``[routing] police_first``: ``always``; ``national`` for content hosted in the home
    country; ``never``."""
    own = case.data.get("police_first")
    if isinstance(own, bool):
        return own
    mode = config.get("routing", "police_first", "never")
    if mode == "always":
        return True
    if mode == "national":
        country = (case.data.get("resolution") or {}).get("country")
        return bool(country) and country == config.get("routing", "home_country", "NL")
    return False
