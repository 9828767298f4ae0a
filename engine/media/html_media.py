"""Find the media an HTML page shows: img src/srcset, og:image, video poster, links to images.

Pages come from strangers, so parsing has a bounded cost whatever the markup:

* **the parser**: lxml's libxml2 HTML parser (2.14: an HTML5 tokenizer) in SAX mode — a target
  that sees start tags only, no tree. Linear in the input (~1 µs a tag): ``'<a' * 65536`` takes
  milliseconds where ``html.parser`` took 5.6 s (86 s at 250 KB), and neither deep nesting nor
  thousands of attributes make it quadratic (lexbor and lxml's tree builder both went quadratic
  on one or the other: measured in docs/hostile-input.md);
* **a byte cap**: only the first ``max_bytes`` of a page are parsed (``[fetch] max_parse_bytes``);
* **a time budget**: the page is fed in 64 KiB chunks and parsing stops, keeping what was
  found, once ``budget_seconds`` have passed (``[fetch] parse_seconds``); the fetch stage also
  runs this in the CPU pool with a hard deadline, so not even one chunk can hold the event loop;
* **length first**: a candidate longer than ``engine.urls.MAX_RAW_CHARS`` is dropped before
  ``urljoin`` or the canonicaliser sees it; at most ``4 × limit`` distinct candidates are kept.

What stopped a scan early is in :attr:`PageMedia.stopped` ("truncated", "time_budget",
"enough"; off the loop also "worker_timeout", "worker_memory", "worker_crashed" when the pool
had to stop it) so the stage can record it. URLs are resolved against the page URL (and the first
``<base href>``), canonicalised, deduplicated in page order and capped. Only http(s) URLs
survive canonicalisation, so ``data:`` and ``javascript:`` are dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import urljoin

from lxml import etree

from engine.errors import InputError, WorkerError
from engine.urls import MAX_RAW_CHARS, canonicalize, too_long

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
DEFAULT_MAX_MEDIA = 50
DEFAULT_MAX_PARSE_BYTES = 4 * 1024 * 1024
DEFAULT_PARSE_SECONDS = 2.0
CHUNK_CHARS = 64 * 1024
# Pages up to this size are scanned on the event loop: a few ms at worst (~1 µs a tag, measured
# on 4 KiB of nothing but tags), less than a round trip to the pool behind queued images.
INLINE_PAGE_BYTES = 4096
_OG_IMAGE = frozenset({"og:image", "og:image:url", "og:image:secure_url", "twitter:image"})
_SKIP_SCHEMES = ("data:", "javascript:", "blob:", "about:", "mailto:")


@dataclass(frozen=True, kw_only=True)
class PageMedia:
    """What a scan of a page found, and how much of the page it read."""

    urls: list[str] = field(default_factory=list)
    parsed_bytes: int = 0  # of the page's body
    stopped: str | None = None  # "truncated" | "time_budget" | "enough" | None (all of it)
    seconds: float = 0.0

    def to_detail(self) -> dict[str, Any]:
        """What the fetch stage records about the scan (only when it stopped early)."""
        return {"stopped": self.stopped, "parsed_bytes": self.parsed_bytes}


class _Enough(Exception):
    """Raised by the collector when it holds as many candidates as it may keep."""


class _Collector:
    """lxml parser target: collects candidate URLs from start tags (no tree is built)."""

    def __init__(self, keep: int) -> None:
        self.found: list[str] = []
        self._seen: set[str] = set()
        self.base: str | None = None
        self.keep = keep

    def _add(self, value: str) -> None:
        if too_long(value):  # length first: never stripped, joined or parsed
            return
        value = value.strip()
        if not value or value in self._seen or value[:11].lower().startswith(_SKIP_SCHEMES):
            return
        self._seen.add(value)
        self.found.append(value)
        if len(self.found) >= self.keep:
            raise _Enough

    def start(self, tag: str, attrib: Any) -> None:
        if tag in ("img", "source"):
            src = attrib.get("src")
            if src:
                self._add(src)
            for key in ("srcset", "data-srcset"):
                srcset = attrib.get(key)
                if srcset:  # (bounded: a candidate list longer than this is not a browser's)
                    for part in srcset[: 4 * MAX_RAW_CHARS].split(","):
                        url = part.strip().split(" ")[0]
                        if url:
                            self._add(url)
            data_src = attrib.get("data-src")
            if data_src:
                self._add(data_src)
        elif tag == "meta":
            prop = (attrib.get("property") or attrib.get("name") or "").lower()
            if prop in _OG_IMAGE:
                content = attrib.get("content")
                if content:
                    self._add(content)
        elif tag == "video":
            poster = attrib.get("poster")
            if poster:
                self._add(poster)
        elif tag == "a":
            href = attrib.get("href")
            if href and not too_long(href):
                path = href.split("?", 1)[0].split("#", 1)[0].lower()
                if path.endswith(IMAGE_EXTENSIONS):
                    self._add(href)
        elif tag == "base" and self.base is None:
            href = attrib.get("href")
            if href and not too_long(href):
                self.base = href

    def close(self) -> None:
        return None


def scan_page(html: str | bytes, page_url: str, *, limit: int = DEFAULT_MAX_MEDIA,
              max_bytes: int = DEFAULT_MAX_PARSE_BYTES,
              budget_seconds: float = DEFAULT_PARSE_SECONDS) -> PageMedia:
    """Canonical media URLs referenced by a page (at most ``limit``, page order, no repeats).

    ``html`` is the body (bytes are decoded as UTF-8, invalid bytes replaced) or text; only its
    first ``max_bytes`` are parsed, for at most about ``budget_seconds``. Never raises for any
    input: what stopped the scan early is in the result.
    """
    started = time.monotonic()
    stopped: str | None = None
    if isinstance(html, bytes):
        size = len(html)
        if size > max_bytes:
            html, stopped = html[:max_bytes], "truncated"
        text = html.decode("utf-8", errors="replace")
    else:
        size = len(html)
        text = html
        if size > max_bytes:
            text, stopped = html[:max_bytes], "truncated"
        if not text.isascii():  # lone surrogates (no server sends them) would stop lxml cold
            text = text.encode("utf-8", errors="replace").decode("utf-8")
    parsed = min(size, max_bytes)
    collector = _Collector(keep=4 * max(1, limit))
    parser = etree.HTMLParser(target=collector, recover=True, no_network=True)
    try:
        for start in range(0, len(text), CHUNK_CHARS):
            if start and time.monotonic() - started > budget_seconds:  # (one chunk at least)
                stopped, parsed = "time_budget", len(text[:start].encode("utf-8"))
                break
            parser.feed(text[start:start + CHUNK_CHARS])
        else:
            parser.close()
    except _Enough:
        stopped = stopped or "enough"
    except (etree.LxmlError, ValueError):  # an empty or hopeless document: keep what was found
        pass
    base = page_url
    if collector.base:
        try:
            base = urljoin(page_url, collector.base)
        except ValueError:
            pass
    out: list[str] = []
    seen: set[str] = set()
    for raw in collector.found:
        if len(out) >= limit:
            break
        try:
            url = canonicalize(urljoin(base, raw)).url
        except (InputError, ValueError):
            continue
        if url not in seen and url != page_url:
            seen.add(url)
            out.append(url)
    return PageMedia(urls=out, parsed_bytes=parsed, stopped=stopped,
                     seconds=round(time.monotonic() - started, 4))


def extract_media_urls(html: str | bytes, page_url: str, *, limit: int = DEFAULT_MAX_MEDIA,
                       max_bytes: int = DEFAULT_MAX_PARSE_BYTES,
                       budget_seconds: float = DEFAULT_PARSE_SECONDS) -> list[str]:
    """The URLs of :func:`scan_page` alone."""
    return scan_page(html, page_url, limit=limit, max_bytes=max_bytes,
                     budget_seconds=budget_seconds).urls


async def scan_page_off_loop(ctx: Any, body: bytes, page_url: str, *,
                             limit: int = DEFAULT_MAX_MEDIA) -> PageMedia:
    """:func:`scan_page` in ``ctx``'s CPU pool under ``[fetch] max_parse_bytes`` and
    ``parse_seconds`` (the pool stops a worker at twice that plus a second); only a page of at
    most ``INLINE_PAGE_BYTES`` is scanned here. Never raises: a stopped worker is the result's
    ``stopped`` reason, with no URLs."""
    max_bytes = int(ctx.config.get("fetch", "max_parse_bytes", DEFAULT_MAX_PARSE_BYTES))
    budget = float(ctx.config.get("fetch", "parse_seconds", DEFAULT_PARSE_SECONDS))
    if len(body) <= min(INLINE_PAGE_BYTES, max_bytes):
        return scan_page(body, page_url, limit=limit, max_bytes=max_bytes,
                         budget_seconds=budget)
    head = body if len(body) <= max_bytes else body[:max_bytes]  # only what will be parsed
    scan_fn = partial(scan_page, limit=limit, max_bytes=max_bytes, budget_seconds=budget)
    try:
        scan: PageMedia = await ctx.run_cpu(scan_fn, head, page_url, timeout=2 * budget + 1)
    except WorkerError as exc:
        return PageMedia(stopped=exc.reason)
    if len(body) > max_bytes and scan.stopped is None:
        scan = replace(scan, stopped="truncated")
    return scan
