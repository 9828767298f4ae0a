"""Built-in fetch stage: fetch the reported URL safely, find media on pages, hash, drop bytes.

Every request goes through ``ctx.fetcher`` (the SSRF-safe fetcher). Bytes live only in memory:
they are hashed in the process pool and dropped; items keep hashes, size, sniffed content type,
status and final URL. A direct image URL is one item; an HTML page is an item (its own bytes get
cryptographic hashes) plus one item per media URL found on it (capped, default 50).

Hostile input has a bounded cost: pages are parsed in the CPU pool (``[fetch] max_parse_bytes``,
``parse_seconds``), images are refused above ``[fetch] max_decode_mb`` before decoding, every
pool task has a deadline (``hash_seconds``) and every pool process a memory share
(``cpu_pool_mb``). What was refused is the item's ``error`` (``over_budget``,
``worker_timeout``, ``worker_memory``, ``worker_crashed``) and, for a page scan that stopped
early, ``page_scan`` in the ``fetched`` event's detail.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from engine.api import Case, StageContext
from engine.config import Option, non_negative, positive
from engine.errors import FetchError, InputError, WorkerError
from engine.media.decode_budget import VideoLimits, set_max_decode_mb
from engine.media.digests import crypto_hashes
from engine.media.html_media import scan_page_off_loop  # here, not at the first page: no stall
from engine.media.items import IMAGE_TYPES, MIRROR_KEYS, VIDEO_MEDIA_TYPES, hash_bytes
from engine.media.signals import perceptually_hashed
from engine.models import Item, StageResult
from engine.urls import canonicalize
from plugins.fetch.browser import BrowserPool, BrowserSettings, browser_available

if TYPE_CHECKING:
    from engine.safe_fetch import FetchResponse

# What one page or image may cost (docs/hostile-input.md): name -> (type, default, check, help).
_HOSTILE_INPUT: dict[str, tuple[type, float, Callable[[Any], str | None], str]] = {
    "max_parse_bytes": (int, 4 * 1024 * 1024, positive, "bytes of an HTML page parsed for "
                        "media (the rest is not read; the case records it)"),
    "parse_seconds": (float, 2.0, positive, "time budget for parsing one page (what was found "
                      "by then is kept; a worker is stopped at twice this + 1 s)"),
    "max_decode_mb": (int, 256, positive, "memory one image may take to decode and hash (MiB, "
                      "from its header); larger ones are refused"),
    "hash_seconds": (float, 30.0, positive, "longest a CPU worker may hash one item before it "
                     "is stopped and restarted"),
    "max_video_seconds": (float, 3600.0, positive, "longest video hashed (seconds, from its "
                          "header and its frames); longer ones are refused as too_long"),
    "max_video_frames": (int, 216_000, positive, "most frames of one video decoded"),
    "max_video_pixels": (int, 4096 * 2304, positive, "largest video frame (pixels); the decode "
                         "memory (max_decode_mb) bounds it too"),
    "video_hash_seconds": (float, 120.0, positive, "longest a CPU worker may hash one video "
                           "before it is stopped and restarted"),
    "cpu_pool_mb": (int, 0, non_negative, "resident memory of the whole CPU pool (MiB), shared "
                    "by its processes; a worker over its share is restarted and its item "
                    "recorded; 0 = workers x (max_decode_mb + 256)"),
}
HOSTILE_INPUT_OPTIONS = {name: Option(type=kind, default=kind(default), check=check, help=text)
                         for name, (kind, default, check, text) in _HOSTILE_INPUT.items()}



# What one CPU-pool process needs besides its share of decoding: the interpreter with numpy,
# scipy, Pillow and pdqhash loaded (~80 MiB resident) and room for a page scan.
POOL_BASE_MB = 256


def configure_cpu_pool(ctx: StageContext) -> None:
    """Before the pool starts (``ntd_startup``): the imaging stack preloaded, the decode budget
    in every pool process, the pool's memory budget."""
    # Hashing runs in the CPU pool: its processes start with the imaging stack loaded.
    ctx.cpu_preload.add("engine.media.hashing")
    ctx.cpu_preload.add("engine.media.html_media")
    ctx.cpu_preload.add("engine.media.video")
    decode_mb = ctx.config.get("fetch", "max_decode_mb", 256)
    ctx.cpu_setup.append((set_max_decode_mb, (decode_mb,)))
    total = ctx.config.get("fetch", "cpu_pool_mb", 0)
    if not total:
        workers = ctx.config.get("pipeline", "cpu_workers") or os.cpu_count() or 1
        total = workers * (decode_mb + POOL_BASE_MB)
    ctx.cpu_memory_mb = float(total)


def video_limits(ctx: StageContext) -> VideoLimits:
    """What hashing one video may cost, from ``[fetch]`` (the decode budget is the pool
    process's ``max_decode_mb``)."""
    get = ctx.config.get
    return VideoLimits(max_seconds=get("fetch", "max_video_seconds", 3600.0),
                       max_frames=get("fetch", "max_video_frames", 216_000),
                       max_pixels=get("fetch", "max_video_pixels", 4096 * 2304))


class HashCache:
    """Hashes of recently seen bodies, keyed by SHA-256 (an LRU; hashes only, never bytes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = self.misses = 0
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # Hashing in progress, by key: the same file fetched again meanwhile waits for it
        # instead of being hashed twice (a popular file reported at many URLs at once).
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def get(self, sha256: str) -> dict[str, Any] | None:
        """The cached hashes of a body, refreshed as most recently used."""
        found = self._entries.get(sha256)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(sha256)
        self.hits += 1
        return dict(found)

    def put(self, sha256: str, hashes: dict[str, Any]) -> None:
        """Remember the hashes of a body."""
        if self.size <= 0:
            return
        self._entries[sha256] = dict(hashes)
        self._entries.move_to_end(sha256)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def _hash_cache(ctx: StageContext) -> HashCache:
    cache = ctx.state.get("fetch.hash_cache")
    if cache is None:
        cache = HashCache(ctx.config.get("fetch", "hash_cache_entries", 50_000))
        ctx.state["fetch.hash_cache"] = cache
    return cache


_INLINE_BYTES = 64 * 1024  # hashing this much on the event loop costs well under a millisecond


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _off_loop_if_large(fn: Any, body: bytes) -> Any:
    """``fn(body)`` here when small, else on a thread (hashlib releases the GIL there)."""
    return fn(body) if len(body) <= _INLINE_BYTES else await asyncio.to_thread(fn, body)


async def hash_cached(ctx: StageContext, body: bytes, content_type: str) -> dict[str, Any]:
    """``hash_bytes`` in the process pool, skipped when the same bytes were hashed before.

    Only images need the pool (decoding, perceptual hashes). Anything else gets its
    cryptographic hashes here: shipping an HTML page to another process cost more than
    hashing it. Large bodies are hashed on a thread (hashlib releases the GIL).
    """
    if content_type not in IMAGE_TYPES and content_type not in VIDEO_MEDIA_TYPES:
        return await _off_loop_if_large(crypto_hashes, body)
    digest = await _off_loop_if_large(_sha256_hex, body)
    cache = _hash_cache(ctx)
    key = f"{content_type}:{digest}"
    found = cache.get(key)
    if found is not None:
        return found
    task = cache.pending.get(key)
    if task is None:
        task = cache.pending[key] = asyncio.ensure_future(_hash_in_pool(ctx, body, content_type))

        def done(t: asyncio.Future[dict[str, Any]]) -> None:
            cache.pending.pop(key, None)
            if not t.cancelled() and t.exception() is None:
                cache.put(key, t.result())

        task.add_done_callback(done)
    # shield: one waiter's cancellation (shutdown) does not cancel the others' result
    return dict(await asyncio.shield(task))


async def _hash_in_pool(ctx: StageContext, body: bytes, content_type: str) -> dict[str, Any]:
    """``hash_bytes`` in the pool under ``[fetch] hash_seconds``; a task the pool had to stop
    (time, memory, a crashed worker) gives the crypto hashes and that reason as ``error``.
    (The result is cached by content: the same bomb at a thousand URLs costs one stop.)"""
    if content_type in VIDEO_MEDIA_TYPES:
        limits: VideoLimits | None = video_limits(ctx)
        timeout = ctx.config.get("fetch", "video_hash_seconds", 120.0)
    else:
        limits, timeout = None, ctx.config.get("fetch", "hash_seconds", 30.0)
    try:
        return await ctx.run_cpu(hash_bytes, body, content_type, True, limits, timeout=timeout)
    except WorkerError as exc:
        return {**await _off_loop_if_large(crypto_hashes, body), "error": exc.reason}


async def _fetch_item(ctx: StageContext, url: str,
                      kind: str) -> tuple[Item, FetchResponse | None, dict[str, str]]:
    """Fetch and hash one URL; returns the item, the response when it is an HTML page, and the
    perceptual hashes of the mirror image (``{"pdq": ..}``; empty if none)."""
    try:
        resp = await ctx.fetcher.fetch(url)
    except FetchError as exc:
        return Item(url=url, kind=kind, error=exc.reason), None, {}
    return await _item_from_response(ctx, url, kind, resp)


async def _item_from_response(ctx: StageContext, url: str, kind: str, resp: FetchResponse,
                              ) -> tuple[Item, FetchResponse | None, dict[str, str]]:
    """:func:`_fetch_item` for a response in hand (the browser mode's network images)."""
    html = None
    hashes: dict[str, Any] = {}
    mirror: dict[str, str] = {}
    error = None
    if 200 <= resp.status < 300:
        hashes = await hash_cached(ctx, resp.body, resp.content_type)
        error = hashes.pop("error", None)
        for key, hash_type in MIRROR_KEYS.items():
            value = hashes.pop(key, None)
            if value:
                mirror[hash_type] = value
        if resp.content_type == "text/html" and kind == "url":
            html = resp  # its body is scanned for media off the loop (decoded there too)
    else:
        error = f"http_{resp.status}"
    item = Item(url=url, kind=kind, status=resp.status, content_type=resp.content_type,
                size=len(resp.body), final_url=resp.final_url, error=error, hashes=hashes)
    return item, html, mirror  # resp.body goes out of scope here: media bytes are never kept


#: Fetch outcomes no retry can change: the URL's port is not allowed ([fetch] allowed_ports)
#: or its scheme is not http(s), and a 404/410 answer (``gone``). The case fails at once.
FINAL_REASONS = frozenset({"blocked_port", "blocked_scheme", "gone"})
GONE_STATUSES = frozenset({404, 410})


async def fetch_case(case: Case, ctx: StageContext, *, browser: bool = False) -> StageResult:
    """Fetch one case and hash what it serves (the ``ntd_fetch`` hook).

    ``browser``: render the page in the browser whatever its HTML holds (``ntd fetch CASE
    --browser``); otherwise browser mode runs for ``[fetch.browser] domains`` and for pages
    whose HTML names no media but has scripts (``plugins.fetch.browser``)."""
    settings = ctx.config.section("fetch")
    page, doc, page_mirror = await _fetch_item(ctx, case.canonical_url, "url")
    if page.status is None or page.status >= 400:
        reason = page.error or "error"
        attempts = case.attempts + 1
        if page.status in GONE_STATUSES:
            reason = "gone"  # the server says so: asking again five times changes nothing
        if reason in FINAL_REASONS or attempts >= settings["max_attempts"]:
            return StageResult(state="failed", action="unreachable", reason=reason,
                               items=[page], detail={"attempts": attempts, "final": True,
                                                     **({"status": page.status}
                                                        if page.status else {})})
        delay = settings["retry_minutes"] * 60 * 2 ** (attempts - 1)
        return StageResult(state="unreachable", action="unreachable", reason=reason,
                           items=[page], retry_at=ctx.clock.now() + timedelta(seconds=delay),
                           detail={"attempts": attempts})
    items = [page]
    mirrors = {page.hashes["sha256"]: page_mirror} if page_mirror else {}
    media: list[str] = []
    scan_detail: dict[str, Any] = {}
    if doc is not None:
        page_url = page.final_url or case.canonical_url
        limit = settings["max_media_per_page"]
        scan = await scan_page_off_loop(ctx, doc.body, page_url, limit=limit)
        media = scan.urls
        if scan.stopped is not None and scan.stopped != "enough":
            scan_detail = {"page_scan": scan.to_detail()}
            if scan.stopped.startswith("worker_"):  # nothing could be read: the page says why
                items[0] = replace(page, error=scan.stopped)
        gate = asyncio.Semaphore(settings["media_concurrency"])

        async def one(url: str) -> Item:
            async with gate:
                item, _, mirror = await _fetch_item(ctx, url, "media")
                if mirror:
                    mirrors[item.hashes["sha256"]] = mirror
                return item

        mode = browser_mode(ctx, page_url, doc.body, media, forced=browser)
        if mode is not None:
            found, browser_detail = await _render(ctx, page_url, doc, mode, media, mirrors)
            if browser_detail["browser"].get("stopped") == "pool_busy":
                # Every browser was busy for a third of the lease: try again soon rather than
                # hold the case past its lease (the static fetch is repeated then).
                wait = browser_settings(ctx).page_seconds * 3
                return StageResult(state=case.state, action="deferred", reason="browser_busy",
                                   retry_at=ctx.clock.now() + timedelta(seconds=wait),
                                   detail={"browser": browser_detail["browser"]})
            scan_detail.update(browser_detail)
            items += found
            media += [i.url for i in found if i.url not in media]
        del doc  # the page's bytes are not kept a moment longer than needed
        rendered = {i.url for i in items[1:]}
        items += await asyncio.gather(*(one(u) for u in media if u not in rendered))
    detail = {"status": page.status, "content_type": page.content_type, "size": page.size,
              "media_found": len(media),
              "media_hashed": sum(1 for i in items[1:] if perceptually_hashed(i.hashes)),
              **scan_detail}
    # The mirror images' hashes go to the case's data for the match stage (an item's hashes are
    # those of the bytes it served).
    return StageResult(state="fetched", action="fetched", items=items, detail=detail,
                       data={"mirror_hashes": mirrors}
                       if mirrors or "mirror_hashes" in case.data else {})


# ---------------------------------------------------------------------------------------------
# Browser mode (the browser itself is in plugins.fetch.browser)
# ---------------------------------------------------------------------------------------------

_SCRIPT_TAG = re.compile(rb"<script[\s>/]", re.IGNORECASE)
POOL_KEY = "fetch.browser_pool"


def browser_settings(ctx: StageContext) -> BrowserSettings:
    """``[fetch.browser]`` of this run."""
    found = ctx.state.get("fetch.browser_settings")
    if found is None:
        found = ctx.state["fetch.browser_settings"] = BrowserSettings.from_config(
            ctx.config.section("fetch.browser"))
    return found


def browser_mode(ctx: StageContext, page_url: str, body: bytes, media: list[str], *,
                 forced: bool = False) -> str | None:
    """Why this page is rendered in the browser (``forced``, ``domain``, ``scripts``), or
    None: asked for, listed in ``[fetch.browser] domains``, or (when ``enabled``) a page
    whose HTML names no media but has a ``<script>`` in the part the parser reads."""
    settings = browser_settings(ctx)
    if forced:
        return "forced"
    if settings.always_for(urlsplit(page_url).hostname or ""):
        return "domain"
    max_parse = int(ctx.config.get("fetch", "max_parse_bytes", 4 * 1024 * 1024))
    if settings.enabled and not media and _SCRIPT_TAG.search(body, 0, max_parse):
        return "scripts"
    return None


def browser_pool(ctx: StageContext) -> BrowserPool:
    """The run's browser pool (created on first use; ``ntd_shutdown`` closes it)."""
    pool = ctx.state.get(POOL_KEY)
    if pool is None:
        pool = ctx.state[POOL_KEY] = BrowserPool(browser_settings(ctx))
    return pool


async def close_browser_pool(ctx: StageContext) -> None:
    """Stop the run's browsers, if any were started (``ntd_shutdown``)."""
    pool = ctx.state.pop(POOL_KEY, None)
    if pool is not None:
        await pool.aclose()


async def _render(ctx: StageContext, page_url: str, doc: FetchResponse, mode: str,
                  media: list[str], mirrors: dict[str, dict[str, str]],
                  ) -> tuple[list[Item], dict[str, Any]]:
    """Render the page; returns the items of the images it loaded (those of ``media`` among
    them are not fetched again) or shows (those the DOM names but the page never loaded are
    fetched here, unless in ``media``) and the event detail: ``browser`` (counters) and
    ``refused`` (each refused request)."""
    settings = browser_settings(ctx)
    why_not = browser_available(settings)
    if why_not is not None:
        return [], {"browser": {"mode": mode, "unavailable": why_not}}
    limit = ctx.config.get("fetch", "max_media_per_page", 50)
    known = set(media)
    found: dict[str, Item] = {}

    async def on_image(url: str, resp: FetchResponse) -> None:
        canon = _canonical(url)
        if canon is None or canon in found or canon == page_url:
            return
        if canon not in known and len(known | found.keys()) >= limit:
            return  # (an image the HTML named is taken from the browser, not fetched again)
        item, _, mirror = await _item_from_response(ctx, canon, "media", resp)
        found[canon] = item
        if mirror:
            mirrors[item.hashes["sha256"]] = mirror

    wait = ctx.config.get("pipeline", "lease_seconds", 300) / 3
    page = await browser_pool(ctx).render(page_url, ctx.fetcher, max_images=limit,
                                          on_image=on_image, document=doc, wait=wait)
    items = list(found.values())
    asked = set(filter(None, map(_canonical, page.asked)))  # answered (or refused) already
    shown = [u for u in dict.fromkeys(filter(None, map(_canonical, page.dom_urls)))
             if u not in known and u not in found and u not in asked and u != page_url]
    room = max(0, limit - len(known | found.keys()))
    gate = asyncio.Semaphore(ctx.config.get("fetch", "media_concurrency", 8))

    async def shown_only(url: str) -> Item:
        async with gate:
            item, _, mirror = await _fetch_item(ctx, url, "media")
            if mirror:
                mirrors[item.hashes["sha256"]] = mirror
            return item

    items += await asyncio.gather(*(shown_only(u) for u in shown[:room]))
    detail: dict[str, Any] = {"browser": {"mode": mode, **page.to_detail()}}
    if page.refused:
        detail["refused"] = page.refused
    return items, detail


def _canonical(url: str) -> str | None:
    try:
        return canonicalize(url).url
    except (InputError, ValueError):
        return None
