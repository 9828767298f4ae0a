"""Browser fetch mode: pages built by scripts, rendered in headless Chromium, the safe fetcher
answering every request.

Playwright drives Debian's ``chromium`` (``[fetch.browser] executable``; no browser download).
The browser never opens a connection of its own:

* **every request is answered by ntd**: ``context.route("**/*")`` hands each request to the
  run's :class:`~engine.safe_fetch.SafeFetcher` (same vetted and pinned addresses, ports, byte
  cap, deadline and redirect rules — redirects are followed by the fetcher under its rules and
  the final answer is served at the requested URL, because a redirect the route answered would
  be followed by the browser's own network stack, not intercepted again). Only GET and HEAD
  are fetched; a refusal aborts the request and is recorded (URL and reason);
* **its own network is a dead end**: the proxy is a loopback port ntd holds bound but never
  listens on (every connection is refused), ``<-loopback>`` sends even loopback through it,
  and the host resolver maps every name to "not found";
* WebSocket is answered by ``route_web_socket`` (closed, recorded), WebRTC may use no UDP that
  bypasses the proxy and its constructors are removed, QUIC is off, service workers are
  blocked, downloads refused, pop-ups closed, iframes deeper than one level aborted.

**No disk**: one browser process per pool slot whose profile, artifacts, ``HOME`` and
``TMPDIR`` live in a fresh ``/dev/shm`` directory removed when the slot closes; every page gets
a fresh incognito context (cache and cookies in memory, gone with the context); nothing is
screenshotted or downloaded. Image bytes stay in memory: the fetch stage hashes them as they
arrive (:attr:`BrowserPage.images`) and drops them.

**Bounded**: ``[fetch.browser] pool`` slots (default 1), one page at a time each, so a slot's
process tree *is* its page's cost: a watcher samples its resident memory (psutil, on a
thread; proportional set size, see :func:`tree_memory_mb`) and a page whose browser passes
``max_rss_mb`` is killed with its browser
(``browser_memory``). Each page has a deadline (``page_seconds``), a request cap
(``max_requests``) and the stage's media cap. A browser that dies is started again for the
next page. Everything is awaited on the event loop (Playwright talks to its driver over a
pipe); nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from engine.config import Option, between, positive
from engine.errors import FetchError
from engine.urls import too_long

if TYPE_CHECKING:
    from engine.safe_fetch import FetchResponse, SafeFetcher

log = logging.getLogger("ntd.fetch.browser")

DEFAULT_EXECUTABLE = "/usr/bin/chromium"
SHM_ROOT = "/dev/shm"
# Refusals kept per page in the case's trail (the count is always complete).
MAX_RECORDED_REFUSALS = 50
# How long the page must have no request in flight to count as settled, and how often the
# memory watcher samples the browser's process tree.
QUIET_SECONDS = 0.3
SCROLL_QUIET = 0.1
WATCH_INTERVAL = 0.2
# Response headers passed to the page: the type only (no cookies, no Alt-Svc that would invite
# QUIC, no Link preconnects; the body is already decoded, so no encoding or length).
_PASS_HEADERS = ("content-type",)


def _executable_check(value: Any) -> str | None:
    return None if os.path.isabs(value) else "must be an absolute path to a chromium binary"


def _domains_check(value: Any) -> str | None:
    for item in value:
        if not isinstance(item, str) or not item.strip(".") or any(c in item for c in "/: "):
            return f"{item!r} is not a host or domain name (write \"gallery.example\")"
    return None


BROWSER_OPTIONS: dict[str, Option] = {
    "enabled": Option(type=bool, default=True,
                      help="render a page in the browser when its HTML names no media but has "
                           "scripts (when chromium is installed)"),
    "executable": Option(type=str, default=DEFAULT_EXECUTABLE, check=_executable_check,
                         help="the chromium binary (Debian's; Playwright downloads nothing)"),
    "domains": Option(type=list, default=[], check=_domains_check,
                      help="hosts (and their subdomains) always rendered in the browser"),
    "pool": Option(type=int, default=1, check=between(1, 16),
                   help="browsers rendering at once, one page each"),
    "page_seconds": Option(type=float, default=20.0, check=between(1, 600),
                           help="deadline of one page: load, scroll, collect"),
    "max_rss_mb": Option(type=int, default=1024, check=between(64, 65536),
                         help="resident memory of one browser's process tree; a page over it "
                              "is killed with its browser (recorded as browser_memory)"),
    "max_requests": Option(type=int, default=300, check=positive,
                           help="requests one page may make (the rest are aborted)"),
    "max_scrolls": Option(type=int, default=20, check=between(0, 1000),
                          help="viewport heights scrolled to load lazy images"),
    "sandbox": Option(type=bool, default=True,
                      help="chromium's sandbox (not available when ntd runs as root)"),
}


@dataclass(frozen=True, kw_only=True)
class BrowserSettings:
    """``[fetch.browser]`` as one record (see :data:`BROWSER_OPTIONS`)."""

    enabled: bool = True
    executable: str = DEFAULT_EXECUTABLE
    domains: tuple[str, ...] = ()
    pool: int = 1
    page_seconds: float = 20.0
    max_rss_mb: int = 1024
    max_requests: int = 300
    max_scrolls: int = 20
    sandbox: bool = True

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> BrowserSettings:
        """The settings from a validated ``[fetch.browser]`` section (defaults filled in)."""
        values = {k: section[k] for k in BROWSER_OPTIONS if k in section}
        values["domains"] = tuple(d.lower().strip(".") for d in values.get("domains", ()))
        return cls(**values)

    def always_for(self, host: str) -> bool:
        """Whether ``host`` is (under) a domain listed in ``domains``."""
        host = host.lower().rstrip(".")
        return any(host == d or host.endswith("." + d) for d in self.domains)


def browser_available(settings: BrowserSettings) -> str | None:
    """Why browser mode cannot run here (``None`` when it can)."""
    try:
        import playwright.async_api  # noqa: F401  # deferred: optional, heavy dependency
    except ImportError:
        return "playwright is not installed"
    if not os.access(settings.executable, os.X_OK):
        return f"no chromium at {settings.executable} (apt-get install chromium)"
    if not os.path.isdir(SHM_ROOT):
        return f"{SHM_ROOT} is missing: the browser profile would have to go to disk"
    return None


# ---------------------------------------------------------------------------------------------
# What a page gave
# ---------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class BrowserPage:
    """One rendered page: media URLs of its final DOM, refusals, counters, and why it stopped.

    Images the page loaded were handed to ``on_image`` as they arrived (the caller hashes and
    drops them); ``network_images`` lists their URLs in arrival order.
    """

    url: str
    dom_urls: list[str] = field(default_factory=list)
    network_images: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    refused_count: int = 0
    # every URL the page asked for and ntd fetched or refused (not fetched again for the DOM)
    asked: set[str] = field(default_factory=set)
    requests: int = 0
    aborted: dict[str, int] = field(default_factory=dict)  # reason -> count (not refusals)
    websockets: int = 0
    frames: int = 0
    scrolls: int = 0
    stopped: str | None = None  # deadline | browser_memory | browser_crashed | error text
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    def refuse(self, url: str, reason: str) -> None:
        """Record one request the safe fetcher (or the browser rules) refused."""
        self.refused_count += 1
        if len(self.refused) < MAX_RECORDED_REFUSALS:
            self.refused.append({"url": url[:2048], "reason": reason})

    def abort(self, reason: str) -> None:
        """Count one request dropped by a cap or rule (not an address refusal)."""
        self.aborted[reason] = self.aborted.get(reason, 0) + 1

    def to_detail(self) -> dict[str, Any]:
        """The counters for the ``fetched`` event (no URLs: those go under ``refused``)."""
        detail: dict[str, Any] = {
            "requests": self.requests, "refused": self.refused_count,
            "network_images": len(self.network_images), "dom_media": len(self.dom_urls),
            "frames": self.frames, "scrolls": self.scrolls, "websockets": self.websockets,
            "seconds": round(self.seconds, 3), "peak_rss_mb": round(self.peak_rss_mb, 1)}
        if self.aborted:
            detail["aborted"] = dict(self.aborted)
        if self.stopped:
            detail["stopped"] = self.stopped
        return detail


ImageSink = Callable[[str, "FetchResponse"], Awaitable[None]]


# ---------------------------------------------------------------------------------------------
# In the page
# ---------------------------------------------------------------------------------------------

# Run in every frame before its scripts: no WebRTC, no WebTransport (both could reach the
# network without an interceptable request; the dead proxy stops them too).
_INIT_SCRIPT = """
(() => {
  for (const name of ["RTCPeerConnection", "webkitRTCPeerConnection", "RTCDataChannel",
                      "RTCIceTransport", "RTCSctpTransport", "WebTransport"]) {
    try { Object.defineProperty(window, name, {value: undefined, configurable: false}); }
    catch (e) {}
  }
})();
"""

# Scroll one viewport, then wait two animation frames (observers of what came into view have
# run by then); says whether the bottom is reached.
_SCROLL = """async () => {
  window.scrollBy(0, window.innerHeight);
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const el = document.scrollingElement || document.documentElement;
  return el ? (window.scrollY + window.innerHeight >= el.scrollHeight - 2) : true;
}"""

# Every image the frame's final DOM shows or names: img (currentSrc, src, srcset, data-src),
# picture/source srcset, video posters, <input type=image>, SVG <image>, and CSS images
# (background, border, list, content; also ::before/::after) from the computed style.
_COLLECT = """(limit) => {
  const out = [];
  const seen = new Set();
  const add = (u) => {
    if (!u || typeof u !== "string" || out.length >= limit) return;
    let abs;
    try { abs = new URL(u.trim(), document.baseURI).href; } catch (e) { return; }
    if (!/^https?:/i.test(abs) || seen.has(abs)) return;
    seen.add(abs); out.push(abs);
  };
  const srcset = (s) => {
    if (s) for (const part of s.split(",")) add(part.trim().split(/\\s+/)[0]);
  };
  for (const img of document.querySelectorAll("img")) {
    add(img.currentSrc); add(img.getAttribute("src")); srcset(img.getAttribute("srcset"));
    add(img.getAttribute("data-src")); srcset(img.getAttribute("data-srcset"));
  }
  for (const s of document.querySelectorAll("picture source, source[srcset]")) {
    srcset(s.getAttribute("srcset")); srcset(s.getAttribute("data-srcset"));
  }
  for (const v of document.querySelectorAll("video[poster]")) add(v.getAttribute("poster"));
  for (const i of document.querySelectorAll("input[type=image][src]")) add(i.getAttribute("src"));
  for (const i of document.querySelectorAll("image")) {
    add(i.getAttribute("href") || i.getAttribute("xlink:href"));
  }
  const urlsIn = (value) => {
    if (!value || value === "none") return;
    for (const m of value.matchAll(/url\\(\\s*(['"]?)(.*?)\\1\\s*\\)/g)) add(m[2]);
  };
  const all = document.querySelectorAll("*");
  const n = Math.min(all.length, 20000);
  for (let k = 0; k < n && out.length < limit; k++) {
    for (const pseudo of [null, "::before", "::after"]) {
      const st = getComputedStyle(all[k], pseudo);
      urlsIn(st.backgroundImage); urlsIn(st.borderImageSource); urlsIn(st.listStyleImage);
      if (pseudo) urlsIn(st.content);
    }
  }
  return out;
}"""


def _frame_depth(request: Any) -> int:
    """0 for the main frame, 1 for its iframes, ...; 0 when the request has no frame."""
    try:
        frame = request.frame
    except Exception:  # a service worker's request has no frame (they are blocked anyway)
        return 0
    depth = 0
    while frame is not None and frame.parent_frame is not None:
        depth += 1
        frame = frame.parent_frame
    return depth


class _PageRun:
    """The route handlers and counters of one page (one incognito context)."""

    def __init__(self, *, fetcher: SafeFetcher, result: BrowserPage, max_requests: int,
                 max_images: int, on_image: ImageSink | None,
                 document: FetchResponse | None = None) -> None:
        self.fetcher = fetcher
        self.prefetched = {document.final_url: document} if document is not None else {}
        self.result = result
        self.max_requests = max_requests
        self.max_images = max_images
        self.on_image = on_image
        self.inflight = 0
        self.last_activity = time.monotonic()
        self.sinks: set[asyncio.Task[None]] = set()
        self._images: set[str] = set()
        self.closed = False  # the page is over: a fetch that finishes late is dropped

    async def handle(self, route: Any) -> None:
        """Answer one request of the page through the safe fetcher (or refuse it)."""
        request = route.request
        url = request.url
        self.inflight += 1
        self.last_activity = time.monotonic()
        try:
            self.result.asked.add(url)
            reason = self._gate(request, url)
            if reason is not None:
                await _quietly(route.abort("blockedbyclient"))
                return
            # the page itself was fetched by the stage already: served from memory, once
            resp = self.prefetched.pop(url, None) if request.is_navigation_request() else None
            try:
                if resp is None:
                    resp = await self.fetcher.fetch(url, method=request.method)
            except FetchError as exc:
                if self.closed:
                    return
                self.result.refuse(url, exc.reason)
                await _quietly(route.abort("blockedbyclient" if exc.reason.startswith(
                    "blocked_") else "failed"))
                return
            headers = {k: v for k, v in resp.headers.items() if k in _PASS_HEADERS}
            if "content-type" not in headers:
                headers["content-type"] = resp.content_type
            await _quietly(route.fulfill(status=resp.status, headers=headers, body=resp.body))
            self._image_seen(url, resp)
        finally:
            self.inflight -= 1
            self.last_activity = time.monotonic()

    def _gate(self, request: Any, url: str) -> str | None:
        """Why this request is not fetched at all (recorded), or None."""
        result = self.result
        if too_long(url):
            result.refuse(url[:200], "url_too_long")
            return "url_too_long"
        if request.method not in ("GET", "HEAD"):
            result.refuse(url, "blocked_method")  # page scripts may not post anywhere
            return "blocked_method"
        if _frame_depth(request) > 1:
            result.abort("iframe_depth")  # iframes one level deep only
            return "iframe_depth"
        if result.requests >= self.max_requests:
            result.abort("max_requests")
            return "max_requests"
        if request.resource_type == "image" and len(self._images) >= self.max_images:
            result.abort("max_media")
            return "max_media"
        result.requests += 1
        return None

    def _image_seen(self, url: str, resp: FetchResponse) -> None:
        if self.closed or not (200 <= resp.status < 300 and resp.content_type.startswith("image/")):
            return
        if url in self._images or len(self._images) >= self.max_images:
            return
        self._images.add(url)
        self.result.network_images.append(url)
        if self.on_image is not None:
            task = asyncio.ensure_future(self._hand_over(self.on_image, url, resp))
            self.sinks.add(task)  # awaited (or cancelled) by render(): never left behind
            task.add_done_callback(self.sinks.discard)

    async def _hand_over(self, sink: ImageSink, url: str, resp: FetchResponse) -> None:
        try:
            await sink(url, resp)
        except Exception:  # the page goes on; the image is missing from the case, logged
            log.exception("browser page %s: handing over %s failed", self.result.url[:200],
                          url[:200])

    async def websocket(self, ws: Any) -> None:
        """Every WebSocket is refused: closed in the page, never connected anywhere."""
        self.result.websockets += 1
        self.result.refuse(ws.url, "blocked_websocket")
        await _quietly(ws.close(code=1008, reason="blocked by ntd"))

    async def settle(self, until: float, quiet: float = QUIET_SECONDS) -> None:
        """Wait until no request has been in flight for ``quiet`` seconds (or ``until``)."""
        while time.monotonic() < until:
            if self.inflight == 0 and time.monotonic() - self.last_activity >= quiet:
                return
            await asyncio.sleep(0.02)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


async def _quietly(call: Awaitable[Any]) -> None:
    """A Playwright call whose failure means only that the page or browser is gone."""
    try:
        await call
    except Exception as exc:  # the route, page or browser was closed meanwhile
        log.debug("browser call failed: %s", exc)


# ---------------------------------------------------------------------------------------------
# Slots: one browser each
# ---------------------------------------------------------------------------------------------


def _pss_kib(pid: int) -> int | None:
    """A process's proportional set size (kernel-summed ``smaps_rollup``), or None."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def tree_memory_mb(pid: int) -> float:
    """Memory of a process and its descendants in MiB (0 when it is gone).

    Proportional set size where the kernel offers it: Chromium's processes share most of
    their pages, so summing RSS counts the shared ones once per process (measured: 1,193 MiB
    RSS against 439 MiB PSS for one page). RSS where ``smaps_rollup`` is missing.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        pss = _pss_kib(proc.pid)
        if pss is not None:
            total += pss * 1024
            continue
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / (1024 * 1024)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (the browser of a page over its memory)."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


class _Slot:
    """One browser process, rendering one page at a time, with its /dev/shm directory."""

    def __init__(self, pool: BrowserPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.browser: Any = None
        self.persistent: Any = None
        self.pid: int | None = None
        self.home: str | None = None
        self.killed_for_memory = False
        self.launches = 0

    @property
    def alive(self) -> bool:
        """Connected, and its process still running (a kill is seen before the driver
        reports the disconnection)."""
        if self.browser is None or not self.browser.is_connected() or self.pid is None:
            return False
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    async def ensure(self) -> None:
        """Start the browser if it is not running (first use, or after it died)."""
        if self.alive:
            return
        await self.close()
        settings = self.pool.settings
        self.home = tempfile.mkdtemp(prefix=f"ntd-browser-{os.getpid()}-{self.index}-",
                                     dir=SHM_ROOT)
        marker = f"--ntd-browser-slot={os.path.basename(self.home)}"
        env = {"HOME": self.home, "TMPDIR": self.home, "XDG_CONFIG_HOME": self.home,
               "XDG_CACHE_HOME": self.home, "XDG_DATA_HOME": self.home,
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        pw = await self.pool.playwright()
        self.persistent = await pw.chromium.launch_persistent_context(
            os.path.join(self.home, "profile"),
            executable_path=settings.executable, headless=True,
            chromium_sandbox=settings.sandbox and os.geteuid() != 0,
            args=[*self.pool.launch_args(), marker],
            env=env, artifacts_dir=os.path.join(self.home, "artifacts"),
            downloads_path=os.path.join(self.home, "artifacts"),
            accept_downloads=False, service_workers="block",
            handle_sigint=False, handle_sigterm=False, handle_sighup=False,
            timeout=30_000)
        self.browser = self.persistent.browser
        self.launches += 1
        self.pid = await asyncio.to_thread(_find_browser_pid, marker)

    async def close(self) -> None:
        """Close the browser (or kill it) and remove its directory."""
        persistent, self.persistent, self.browser = self.persistent, None, None
        if persistent is not None:
            try:
                async with asyncio.timeout(10):
                    await persistent.close()
            except Exception:  # hung or already dead: make sure it is gone
                pass
        if self.pid is not None:
            await asyncio.to_thread(_kill_tree, self.pid)
            self.pid = None
        if self.home is not None:
            await asyncio.to_thread(shutil.rmtree, self.home, True)
            self.home = None

    async def watch(self, result: BrowserPage, stop: asyncio.Event) -> None:
        """Sample the browser's memory while a page renders; kill it when over the cap."""
        limit = self.pool.settings.max_rss_mb
        while not stop.is_set() and self.pid is not None:
            rss = await asyncio.to_thread(tree_memory_mb, self.pid)
            result.peak_rss_mb = max(result.peak_rss_mb, rss)
            if rss > limit:
                self.killed_for_memory = True
                log.warning("browser page %s: %.0f MiB over max_rss_mb %d: killed",
                            result.url[:200], rss, limit)
                await asyncio.to_thread(_kill_tree, self.pid)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL)


def _find_browser_pid(marker: str) -> int | None:
    """The pid of the browser started with ``marker`` (a child of Playwright's driver)."""
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if marker in proc.cmdline():
                parent = proc.parent()
                # the browser's own helpers (zygote, renderers) inherit no switches, but be sure
                # to take the top process that carries the marker
                while parent is not None and marker in parent.cmdline():
                    proc, parent = parent, parent.parent()
                return proc.pid
    return None


class BrowserPool:
    """``[fetch.browser] pool`` browsers, started on first use; see the module docstring.

    ``async with pool.page(...)`` is not offered: :meth:`render` is the one entry point, and
    :meth:`aclose` stops every browser and the driver and removes their directories.
    """

    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self._slots = [_Slot(self, i) for i in range(settings.pool)]
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._slots:
            self._free.put_nowait(slot)
        self._pw_cm: Any = None
        self._pw: Any = None
        self._pw_lock = asyncio.Lock()
        self._dead_end: socket.socket | None = None
        self.pages = 0
        self.restarts = 0
        self.killed = 0

    async def playwright(self) -> Any:
        """The Playwright driver (one node process for all slots), started once."""
        async with self._pw_lock:
            if self._pw is None:
                # deferred: optional, heavy dependency (only runs where browser mode is used)
                from playwright.async_api import async_playwright

                self._pw_cm = async_playwright()
                self._pw = await self._pw_cm.start()
            return self._pw

    def launch_args(self) -> list[str]:
        """Chromium switches: the dead-end proxy, no resolver, no UDP, no background traffic."""
        if self._dead_end is None:
            # Bound, never listening: a connection to it is refused, and no other process can
            # take the port while ntd holds it.
            self._dead_end = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._dead_end.bind(("127.0.0.1", 0))
        port = self._dead_end.getsockname()[1]
        return [
            f"--proxy-server=http://127.0.0.1:{port}",
            "--proxy-bypass-list=<-loopback>",  # loopback too goes to the dead end
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--disable-quic", "--dns-prefetch-disable", "--no-pings",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-domain-reliability", "--disable-breakpad",
            "--disable-crash-reporter", "--disable-extensions", "--disable-default-apps",
            "--no-first-run", "--no-default-browser-check", "--disable-gpu",
            "--disk-cache-size=1", "--media-cache-size=1", "--mute-audio",
            "--disable-features=DnsOverHttps,MediaRouter,OptimizationHints,"
            "AutofillServerCommunication,InterestFeedContentSuggestions,Translate",
        ]

    async def render(self, url: str, fetcher: SafeFetcher, *, max_images: int,
                     on_image: ImageSink | None = None,
                     document: FetchResponse | None = None,
                     wait: float | None = None) -> BrowserPage:
        """Load ``url`` in a fresh incognito context, scroll, and collect its media.

        ``document``: the page as the stage already fetched it (served to the browser from
        memory when it asks for its ``final_url``). Images the page loads go to ``on_image``
        (at most ``max_images``). Never raises for what the page does: a deadline, a killed
        or crashed browser or a Playwright error is the result's ``stopped``. Waits for a free
        slot first, at most ``wait`` seconds (then ``stopped`` is ``pool_busy``: the caller
        should try later rather than hold its case's lease).
        """
        try:
            async with asyncio.timeout(wait):
                slot = await self._free.get()
        except TimeoutError:
            return BrowserPage(url=url, stopped="pool_busy")
        try:
            for attempt in (1, 2):
                run = _PageRun(fetcher=fetcher, result=BrowserPage(url=url),
                               max_requests=self.settings.max_requests, max_images=max_images,
                               on_image=on_image, document=document)
                result = await self._render_in(slot, url, run, max_images)
                # A browser found dead before the page asked for anything (it died between
                # pages): the page is not to blame; it gets one fresh browser.
                if result.stopped != "browser_crashed" or result.requests or attempt == 2:
                    return result
            raise AssertionError("unreachable")
        finally:
            self._free.put_nowait(slot)

    async def _render_in(self, slot: _Slot, url: str, run: _PageRun,
                         max_images: int) -> BrowserPage:
        settings = self.settings
        result = run.result
        started = time.monotonic()
        self.pages += 1
        stop_watch = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        context = page = None
        restarted = slot.launches > 0 and not slot.alive
        try:
            await slot.ensure()  # (a start has its own deadline: it is not the page's cost)
        except Exception as exc:  # chromium missing, broken, or out of memory at start
            await slot.close()
            result.stopped = f"browser_start_failed: {_first_line(exc)}"
            log.warning("browser did not start: %s", _first_line(exc))
            return result
        if restarted:
            self.restarts += 1
        try:
            deadline = time.monotonic() + settings.page_seconds
            slot.killed_for_memory = False
            watcher = asyncio.create_task(slot.watch(result, stop_watch))
            async with asyncio.timeout(settings.page_seconds):
                context = await slot.browser.new_context(
                    service_workers="block", accept_downloads=False,
                    viewport={"width": 1280, "height": 900}, java_script_enabled=True)
                await context.add_init_script(_INIT_SCRIPT)
                await context.route("**/*", run.handle)
                await context.route_web_socket("**/*", run.websocket)
                page = await context.new_page()

                async def no_popups(other: Any) -> None:
                    # pop-ups open in the same context (behind the same routes); not rendered
                    if other is not page:
                        await _quietly(other.close())

                context.on("page", no_popups)
                await page.goto(url, wait_until="load",
                                timeout=max(1.0, deadline - time.monotonic()) * 1000)
                await run.settle(deadline)
                for _ in range(settings.max_scrolls):
                    at_bottom = await page.evaluate(_SCROLL)
                    result.scrolls += 1
                    # what the scroll started has a moment to show up as a request
                    run.last_activity = max(run.last_activity, time.monotonic() - SCROLL_QUIET)
                    await run.settle(deadline, SCROLL_QUIET * 2)
                    if at_bottom:
                        break
                await self._collect(page, result, max_images)
        except TimeoutError:
            result.stopped = "deadline"
            if page is not None and slot.alive and not slot.killed_for_memory:
                # what the DOM shows by now still counts, if the page lets us look quickly
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await self._collect(page, result, max_images)
        except Exception as exc:  # the page or the browser went away, or Playwright failed
            result.stopped = self._why(slot, exc)
        finally:
            stop_watch.set()
            if watcher is not None:
                await asyncio.gather(watcher, return_exceptions=True)
            if slot.killed_for_memory:
                result.stopped = "browser_memory"
                self.killed += 1
            await self._finish(slot, context, run)
        result.seconds = time.monotonic() - started
        return result

    @staticmethod
    def _why(slot: _Slot, exc: Exception) -> str:
        if slot.killed_for_memory:
            return "browser_memory"
        if not slot.alive:
            return "browser_crashed"
        return f"browser_error: {_first_line(exc)}"

    async def _collect(self, page: Any, result: BrowserPage, max_images: int) -> None:
        """The final DOM's media: the page's frame and its direct iframes."""
        limit = 4 * max(1, max_images)
        frames = [page.main_frame, *page.main_frame.child_frames]
        result.frames = len(frames)
        seen = set(result.dom_urls)
        for frame in frames:
            try:
                urls = await frame.evaluate(_COLLECT, limit)
            except Exception as exc:  # a frame detached or crashed: the others still count
                log.debug("collect in %s failed: %s", frame.url[:200], exc)
                continue
            for u in urls:
                if isinstance(u, str) and u not in seen and len(result.dom_urls) < limit:
                    seen.add(u)
                    result.dom_urls.append(u)

    async def _finish(self, slot: _Slot, context: Any, run: _PageRun) -> None:
        """Close the page's context (its memory cache and cookies go with it), finish the
        image hand-offs, and drop a browser that must not serve another page."""
        if context is not None and slot.alive:
            try:
                async with asyncio.timeout(10):
                    await context.close()
            except Exception:  # a hung renderer: the browser goes, a fresh one comes next
                await slot.close()
        if not slot.alive:
            await slot.close()
        run.closed = True
        if run.sinks:
            await asyncio.gather(*list(run.sinks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop every browser and the driver; remove their /dev/shm directories."""
        for slot in self._slots:
            await slot.close()
        if self._pw_cm is not None:
            with contextlib.suppress(Exception):
                await self._pw_cm.__aexit__(None, None, None)
            self._pw_cm = self._pw = None
        if self._dead_end is not None:
            self._dead_end.close()
            self._dead_end = None
