"""Match stage (entry point hashmatch): the hook implementations; the logic is in ``matcher``,
``stage`` (one case, the flood guard) and ``sources`` (hash sources: syncs, lookups, daemon)."""

from __future__ import annotations

import asyncio
from typing import Any

from engine import hookimpl
from engine.api import Case, StageContext
from engine.config import Option, non_negative
from engine.media.signals import (
    HASH_TYPE_NAMES,
    PERCEPTUAL_TYPES,
    VIDEO_TYPES,
    VPDQ,
    perceptually_hashed,
)
from engine.models import StageResult
from plugins.match.matcher import VPDQ_INDEX_MATCH, VPDQ_QUERY_MATCH, percent
from plugins.match.sources import close_sources, scheduled, sync_loop
from plugins.match.stage import match_case


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    # one radius per perceptual hash type (phash_radius, pdq_radius), and a quality floor for
    # those with a quality score (min_pdq_quality)
    options = {f"{t.name}_radius": Option(
        type=int, default=t.default_radius, check=non_negative,
        help=f"default {t.label} Hamming radius (lists may set their own)")
        for t in PERCEPTUAL_TYPES}
    options.update({f"min_{t.name}_quality": Option(
        type=int, default=t.default_min_quality, check=non_negative,
        help=f"ignore {t.label} hashes of lower quality")
        for t in PERCEPTUAL_TYPES if t.quality_key})
    options["vpdq_radius"] = Option(
        type=int, default=VPDQ.default_radius, check=non_negative,
        help="Hamming radius of two video frames' PDQ (vPDQ; lists may set their own)")
    options["min_vpdq_quality"] = Option(
        type=int, default=VPDQ.default_min_quality, check=non_negative,
        help="video frames of lower PDQ quality are not compared (vPDQ)")
    options["vpdq_query_match"] = Option(
        type=float, default=VPDQ_QUERY_MATCH, check=percent,
        help="share (%) of a fetched video's frames that must be found in a listed video")
    options["vpdq_index_match"] = Option(
        type=float, default=VPDQ_INDEX_MATCH, check=percent,
        help="share (%) of a listed video's frames that must be found in the fetched one")
    options["flood_guard_per_hour"] = Option(
        type=int, default=100, check=non_negative,
        help="hold a list entry for review once it matches more than this many distinct "
             "URLs within an hour (0: off)")
    options["reload_check_seconds"] = Option(
        type=float, default=0.0, check=non_negative,
        help="how often to check for changed lists (0: per case)")
    return {"match": options}


@hookimpl
async def ntd_match(case: Case, ctx: StageContext) -> StageResult:
    return await match_case(case, ctx)


@hookimpl
def ntd_verdict_recorded(case: Case, verdict: str, category: str | None, learn: bool,
                         actor: str, store: Any, now: str) -> None:
    if not learn:
        return
    entries = []
    for item in case.items:
        for hash_type in (*HASH_TYPE_NAMES, *VIDEO_TYPES):
            value = item.hashes.get(hash_type)
            if value and (item.kind == "media" or perceptually_hashed(item.hashes)):
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
def ntd_service(ctx: Any, stop: asyncio.Event) -> Any:
    """``ntd run --daemon``: sync the hash sources that have a schedule."""
    if not getattr(ctx, "daemon", False) or not scheduled(ctx):
        return None
    return sync_loop(ctx, stop)


@hookimpl
async def ntd_shutdown(ctx: Any) -> None:
    await close_sources(ctx)


@hookimpl
def ntd_register_commands(cli: Any) -> None:
    from plugins.match.cli import register  # deferred: pulls in numpy, loaded on first use

    register(cli)
