"""Match stage (entry point hashmatch): the hook implementations; the logic is in matcher.
"""

from __future__ import annotations

from typing import Any

from engine import hookimpl
from engine.config import Option, non_negative
from engine.models import StageResult
from plugins.match.matcher import (
    CRYPTO_TYPES,
    PERCEPTUAL_BITS,
    current_matcher,
)


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {"match": {
        "phash_radius": Option(type=int, default=8, check=non_negative,
                               help="default pHash Hamming radius (lists may set their own)"),
        "pdq_radius": Option(type=int, default=31, check=non_negative,
                             help="default PDQ Hamming radius"),
        "min_pdq_quality": Option(type=int, default=0, check=non_negative,
                                  help="ignore PDQ hashes of lower quality"),
        "reload_check_seconds": Option(type=float, default=0.0, check=non_negative,
                                       help="how often to check for changed lists (0: per case)"),
    }}


@hookimpl
async def ntd_match(case: Any, ctx: Any) -> StageResult:
    matcher = await current_matcher(ctx)
    state, items, detail = matcher.decide(case.items, case.data.get("mirror_hashes"))
    action = {"confirmed": "matched", "dismissed": "suppressed",
              "awaiting_assessment": "needs_assessment"}[state]
    return StageResult(state=state, action=action, items=items, detail=detail,
                       data={"match": detail} if state == "confirmed" else {})


@hookimpl
def ntd_verdict_recorded(case: Any, verdict: str, category: str | None, learn: bool,
                         actor: str, store: Any, now: str) -> None:
    if not learn:
        return
    entries = []
    for item in case.items:
        for hash_type in (*CRYPTO_TYPES, *PERCEPTUAL_BITS):
            value = item.hashes.get(hash_type)
            if value and (item.kind == "media" or item.hashes.get("phash")):
                label = f"learned from {case.id}"
                entries.append((hash_type, value,
                                category or ("baseline" if verdict == "illegal"
                                             else "not_illegal"), label, actor))
    if verdict == "illegal":
        store.add_hashlist_entries("analyst", entries, now=now, trust="auto",
                                   source="analyst verdicts")
    else:
        store.add_hashlist_entries("analyst-benign", entries, now=now, trust="auto",
                                   negative=True, source="analyst verdicts")


@hookimpl
def ntd_register_commands(cli: Any) -> None:
    from plugins.match.cli import register

    register(cli)
