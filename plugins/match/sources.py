"""The match plugin's side of hash sources: find them, sync them, ask them at match time, and
the daemon's sync loop (``docs/hash-sources.md``).

Sources come from the ``ntd_hash_sources`` hook (one interface for built-in and partners'
sources); this module never imports a source's plugin. A sync's changes are applied through
``Store.sync_hashlist`` (a diff keyed by the source's ids, so a re-sync that brings nothing new
changes nothing and the matchers do not reload) and the source's cursor is kept per list in
``hashsource_state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from engine.errors import InputError, NtdError, PluginError
from engine.hash_sources import HashSource, ListChanges, RemoteMatch, entries_of
from engine.media.signals import perceptually_hashed

log = logging.getLogger("ntd.hashsource")
STATE_KEY = "hashsources"
LOOKUP_TIMEOUT = 30.0


def collect_sources(pm: Any, config: Any) -> dict[str, HashSource]:
    """Every source the plugins offer, by name (two of one name: ``PluginError``)."""
    found: dict[str, HashSource] = {}
    for answer in pm.hook.ntd_hash_sources(config=config):
        for source in answer or ():
            if source.name in found:
                raise PluginError(f"two hash sources are named {source.name!r}")
            found[source.name] = source
    return found


def sources_of(ctx: Any) -> dict[str, HashSource]:
    """This run's sources (built once per run, closed by ``close_sources``)."""
    state = ctx.state.setdefault(STATE_KEY, {})
    if "sources" not in state:
        state["sources"] = collect_sources(ctx.pm, ctx.config)
    found: dict[str, HashSource] = state["sources"]
    return found


async def close_sources(ctx: Any) -> None:
    """Close the clients the sources opened in this run."""
    for source in (ctx.state.get(STATE_KEY) or {}).pop("sources", {}).values():
        await source.aclose()


def format_source(ctx: Any, fmt: str) -> HashSource:
    """The source that reads file format ``fmt`` (``InputError`` naming the known ones)."""
    known = {f: s for s in sources_of(ctx).values() for f in s.formats}
    if fmt not in known:
        raise InputError(f"--format {fmt!r}: expected csv, ndjson"
                         + "".join(f", {f}" for f in sorted(known)))
    return known[fmt]


async def apply_changes(ctx: Any, changes: ListChanges, *, name: str | None = None,
                        state_source: str | None = None) -> dict[str, Any]:
    """Apply one list's changes; the sync report of that list."""
    target = name or changes.list
    counts = await ctx.store.sync_hashlist(
        target, source=changes.source, trust=changes.trust, negative=changes.negative,
        entries=list(entries_of(changes)), removed=list(changes.removed),
        replace=changes.replace, cursor=changes.cursor, state_source=state_source,
        now=ctx.clock.now_text())
    return {"list": target, "transferred": changes.transferred, **counts,
            "notes": list(changes.notes)}


async def sync_source(ctx: Any, name: str, *, full: bool = False) -> dict[str, Any]:
    """``ntd hashlist sync NAME``: pull what changed since the last sync (everything with
    ``full``) and apply it. Returns ``{"source", "requests", "lists": [...]}``."""
    sources = sources_of(ctx)
    source = sources.get(name)
    if source is None or not source.can_sync:
        pullable = sorted(n for n, s in sources.items() if s.can_sync)
        if source is not None:
            raise InputError(f"hash source {name!r} does not sync (not configured, or a "
                             f"lookup/file source); configured to sync: "
                             f"{', '.join(pullable) or 'none'}")
        raise InputError(f"no hash source {name!r} (known: {', '.join(sorted(sources))})")
    cursors: dict[str, str | None] = {}
    if not full:
        cursors = {s["list"]: s["cursor"] for s in await ctx.store.hashsource_states()
                   if s["source"] == name}
    before = source.request_count()
    changes = await source.sync(ctx, cursors)
    reports = [await apply_changes(ctx, c, state_source=name) for c in changes]
    requests = source.request_count() - before
    for report in reports:
        # Counts only: entries are confidential, and a source's credential never reaches here.
        log.info("hash source %s: list %s: %d transferred, %d added, %d updated, %d removed",
                 name, report["list"], report["transferred"], report["added"],
                 report["updated"], report["removed"])
    return {"source": name, "requests": requests, "lists": reports}


async def remote_matches(ctx: Any, items: Iterable[Any]) -> dict[str, list[RemoteMatch]]:
    """Ask every configured lookup source about each hashed item: ``{item url: matches}``.

    A source that fails is logged (without the hash) and skipped: the case is matched on what
    the local lists say, and waits for an analyst if that is nothing."""
    lookups = [s for s in sources_of(ctx).values() if s.can_lookup]
    out: dict[str, list[RemoteMatch]] = {}
    if not lookups:
        return out
    for item in items:
        if not item.hashes or (item.kind == "url" and not perceptually_hashed(item.hashes)):
            continue  # a page's own bytes are nobody's business: only media is asked about
        for source in lookups:
            try:
                async with asyncio.timeout(LOOKUP_TIMEOUT):
                    found = await source.lookup(ctx, item.hashes)
            except (NtdError, TimeoutError) as exc:
                log.warning("hash source %s: lookup failed: %s", source.name,
                            getattr(exc, "message", None) or type(exc).__name__)
                continue
            if found:
                out.setdefault(item.url, []).extend(found)
    return out


def scheduled(ctx: Any) -> list[HashSource]:
    """The sources ``ntd run --daemon`` syncs on a schedule."""
    return [s for s in sources_of(ctx).values() if s.can_sync and s.sync_minutes > 0]


async def sync_loop(ctx: Any, stop: asyncio.Event) -> None:
    """``ntd run --daemon``: sync each scheduled source every ``sync_minutes`` (the first
    round at start), like the ICCAM poll; an error is logged and retried next round."""
    due = {s.name: 0.0 for s in scheduled(ctx)}
    try:
        while not stop.is_set() and due:
            now = time.monotonic()
            for source in scheduled(ctx):
                if due[source.name] > now:
                    continue
                try:
                    await sync_source(ctx, source.name)
                except NtdError as exc:
                    log.warning("hash source %s: sync failed: %s", source.name, exc.message)
                except Exception:  # a bug must not end the run; the next round tries again
                    log.exception("hash source %s: sync failed", source.name)
                due[source.name] = time.monotonic() + source.sync_minutes * 60
            left = max(0.05, min(due.values()) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=left)
    finally:
        await close_sources(ctx)
