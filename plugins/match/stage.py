"""The match stage for one case: local lists, match-time lookup sources, the flood guard.

The flood guard (``[match] flood_guard_per_hour``): every confirmation records, per list entry
that confirmed, the case's URL; an entry that has matched more than that many distinct URLs
within the last hour is held for review (``ntd hashlist held``), and from then on its matches
send cases to the analyst instead of confirming them, until an admin releases it (``ntd
hashlist release``) or disables it (``ntd hashlist disable``). The case that tipped it over
waits for the analyst too.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from engine import clock
from engine.models import StageResult
from plugins.match.matcher import current_matcher
from plugins.match.sources import remote_matches

log = logging.getLogger("ntd.match")
ACTIONS = {"confirmed": "matched", "dismissed": "suppressed",
           "awaiting_assessment": "needs_assessment"}


async def match_case(case: Any, ctx: Any) -> StageResult:
    """``ntd_match`` of the built-in plugin."""
    matcher = await current_matcher(ctx)
    mirrors = case.data.get("mirror_hashes")
    remote = await remote_matches(ctx, case.items)
    state, items, detail = matcher.decide(case.items, mirrors, remote)
    entries = detail.pop("confirming_entries", [])
    limit = ctx.config.get("match", "flood_guard_per_hour", 0)
    if state == "confirmed" and limit and entries:
        now = ctx.clock.now_text()
        since = clock.fmt(clock.parse(now) - timedelta(hours=1))
        over = await ctx.store.record_entry_hits(entries, case.url, now=now, since=since,
                                                 limit=limit)
        if over:
            # A sudden flood of matches is more likely a bad entry (a logo, a blank frame)
            # than a wave of material: hold it, and let an analyst look at this case.
            await ctx.store.hold_entries(over, now=now)
            matcher.held |= set(over)
            log.warning("flood guard: %d list entr%s held for review (more than %d distinct "
                        "URLs in an hour); `ntd hashlist held` lists them", len(over),
                        "y" if len(over) == 1 else "ies", limit)
            state, items, detail = matcher.decide(case.items, mirrors, remote)
            detail.pop("confirming_entries", None)
            detail["flood_guard_held"] = len(over)
    return StageResult(state=state, action=ACTIONS[state], items=items, detail=detail,
                       data={"match": detail} if state == "confirmed" else {})
