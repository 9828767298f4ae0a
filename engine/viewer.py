"""The safe viewer: what an analyst sees of an item, and nothing else leaves the process.

:meth:`Viewer.preview` re-fetches the item live through the SSRF-safe fetcher with the fetch
stage's policy and caps (``engine.context.fetch_policy``: the same ``[fetch]`` and ``[lab]``
settings the fetch stage's ``ctx.fetcher`` is built from), checks the body's SHA-256 against the
one recorded, and renders it (:func:`engine.media.preview.render_preview`: safe decode under
``[fetch] max_decode_mb``, no metadata, downscaled, blurred, greyscale) off the event loop.

Bytes live in memory only: the fetched body is dropped as soon as the preview is rendered, and
the rendered previews are held in a small LRU bounded in bytes and minutes
(``[assessment] preview_cache_mb`` / ``preview_cache_minutes``) — never a file, never the
database. Content that changed sends its waiting case back to be fetched again (``new``);
content that is gone schedules a re-check (``unreachable`` with a retry time). Every preview is
an audit entry ``view_media case:ID item:N`` (detail ``revealed`` when unblurred).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from engine import clock as clocks
from engine.context import fetch_policy
from engine.errors import FetchError, NtdError
from engine.media.decode_budget import VideoLimits
from engine.media.hashing import MediaError
from engine.media.items import IMAGE_TYPES
from engine.media.preview import PREVIEW_SIDES, render_preview
from engine.safe_fetch import VIDEO_TYPES, SafeFetcher

GONE_STATUSES = frozenset({404, 410, 451})
WAITING = "awaiting_assessment"
PREVIEWABLE = IMAGE_TYPES | VIDEO_TYPES  # a video is shown as a blurred contact sheet of frames


class PreviewError(NtdError):
    """Why there is no preview: ``reason`` is a problem kind (``not-found``,
    ``content-changed``, ``content-offline``, ``not-an-image``, ``invalid-input``)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PreviewCache:
    """Rendered previews by key, bounded in bytes and age (thread-safe, memory only)."""

    def __init__(self, max_bytes: int, max_seconds: float) -> None:
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.size = 0
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        """A fresh entry (refreshed as most recently used), else None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if time.monotonic() - found[0] > self.max_seconds:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: tuple[Any, ...], data: bytes) -> None:
        """Keep a rendered preview, evicting the oldest beyond the byte bound."""
        if len(data) > self.max_bytes or self.max_seconds <= 0:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (time.monotonic(), data)
            self.size += len(data)
            while self.size > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[Any, ...]) -> None:
        _, data = self._entries.pop(key)
        self.size -= len(data)

    def clear(self) -> None:
        """Forget every preview."""
        with self._lock:
            self._entries.clear()
            self.size = 0


class Viewer:
    """Previews of one runtime's items (one per web app)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        settings = rt.config.section("assessment")
        self.cache = PreviewCache(settings["preview_cache_mb"] * 2**20,
                                  settings["preview_cache_minutes"] * 60)
        self.policy = fetch_policy(rt.config)
        self.max_decode = int(rt.config.get("fetch", "max_decode_mb", 256) * 2**20)

    async def preview(self, case_id: str, n: int, *, max_side: int, blur: int, grey: bool,
                      actor: str) -> bytes:
        """A fresh JPEG of item ``n`` of a case, audited; raises :class:`PreviewError`."""
        if max_side not in PREVIEW_SIDES:
            raise PreviewError(f"max: one of {PREVIEW_SIDES}", reason="invalid-input")
        store = self.rt.store
        case = await asyncio.to_thread(store.get_case, case_id, events=False)
        if case is None or not 0 <= n < len(case["items"]):
            raise PreviewError(f"case {case_id!r} has no item {n}", reason="not-found")
        item = case["items"][n]
        sha256 = (item.get("hashes") or {}).get("sha256")
        if item.get("content_type") not in PREVIEWABLE or not sha256:
            raise PreviewError(f"item {n} of {case_id} is not a recorded image or video",
                               reason="not-an-image")
        revealed = blur == 0
        key = (case_id, n, sha256, max_side, blur, grey)
        outcome = "cached"
        try:
            data = self.cache.get(key)
            if data is None:
                outcome = "fetched"
                data = await self._render(case, item, n, sha256, max_side, blur, grey, actor)
                self.cache.put(key, data)
        except PreviewError as exc:
            outcome = exc.reason
            raise
        finally:
            detail: dict[str, Any] = {"outcome": outcome, "max": max_side, "blur": blur,
                                      "grey": grey}
            if revealed:
                detail["revealed"] = True
            await asyncio.to_thread(store.audit, actor=actor, action="view_media",
                                    obj=f"case:{case_id} item:{n}",
                                    now=self.rt.clock.now_text(), detail=detail)
        return data

    async def _render(self, case: dict[str, Any], item: dict[str, Any], n: int, sha256: str,
                      max_side: int, blur: int, grey: bool, actor: str) -> bytes:
        url = item["url"]
        try:
            async with SafeFetcher(self.policy) as fetcher:
                resp = await fetcher.fetch(url)
        except FetchError as exc:
            await self._gone(case, actor, exc.reason or "fetch_error")
            raise PreviewError(f"the item cannot be fetched now ({exc.reason}); a re-check "
                               "is scheduled", reason="content-offline") from exc
        body = resp.body
        try:
            if resp.status in GONE_STATUSES or resp.status >= 400:
                await self._gone(case, actor, f"http_{resp.status}")
                raise PreviewError(f"the item answers HTTP {resp.status}; a re-check is "
                                   "scheduled", reason="content-offline")
            if hashlib.sha256(body).hexdigest() != sha256:
                await self._changed(case, actor)
                raise PreviewError("the item's content changed since it was hashed; the case "
                                   "is fetched again", reason="content-changed")
            try:
                if item.get("content_type") in VIDEO_TYPES:
                    body = await asyncio.to_thread(self._contact_sheet, body)
                return await asyncio.to_thread(render_preview, body, max_side=max_side,
                                               blur=blur, grey=grey, max_bytes=self.max_decode)
            except MediaError as exc:
                raise PreviewError(f"the image cannot be decoded safely ({exc.reason})",
                                   reason="not-an-image") from exc
        finally:
            del body  # the original's bytes are not kept a moment longer

    def _contact_sheet(self, data: bytes) -> bytes:
        """A video's frames as one sheet (in memory), under the fetch stage's video limits;
        it is then blurred and greyed like an image."""
        # deferred: PyAV is loaded only when a video is previewed
        from engine.media.video import contact_sheet

        get = self.rt.config.get
        return contact_sheet(data, limits=VideoLimits(
            max_seconds=get("fetch", "max_video_seconds", 3600.0),
            max_frames=get("fetch", "max_video_frames", 216_000),
            max_pixels=get("fetch", "max_video_pixels", 4096 * 2304),
            max_bytes=self.max_decode))

    async def _changed(self, case: dict[str, Any], actor: str) -> None:
        if case["state"] != WAITING:
            return
        await asyncio.to_thread(
            self.rt.store.move_cases, [{
                "case_id": case["id"], "state": "new", "stage": "assessment", "actor": actor,
                "action": "content_changed", "expect": [WAITING],
                "detail": {"reason": "content-changed"}}], self.rt.clock.now_text())

    async def _gone(self, case: dict[str, Any], actor: str, why: str) -> None:
        if case["state"] != WAITING:
            return
        minutes = self.rt.config.get("fetch", "retry_minutes", 60.0)
        retry_at = clocks.fmt(clocks.parse(self.rt.clock.now_text())
                              + timedelta(minutes=minutes))
        await asyncio.to_thread(
            self.rt.store.move_cases, [{
                "case_id": case["id"], "state": "unreachable", "stage": "assessment",
                "actor": actor, "action": "content_offline", "expect": [WAITING],
                "reason": "content_offline", "retry_at": retry_at,
                "detail": {"seen": why}}], self.rt.clock.now_text())
