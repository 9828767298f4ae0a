"""Browser fetch mode: script-built pages in headless Chromium, behind the SSRF-safe fetcher.

Drives Debian's ``chromium`` through Playwright; skips with a reason where either is missing
(``.ci/run`` installs chromium where apt works). Servers are loopback only:

* the gallery (``engine.lab.script_gallery``): images inserted by a script, lazily on scroll, in a
  CSS background and in an iframe — the static parser finds none, the browser all four, and a
  listed one confirms the case; the run writes no file (temp, home and data directories compared
  before and after, and searched for the images' bytes);
* SSRF: a hostile page on a "public" server (127.0.0.2, which the address policy is patched to
  call public: the lab switch stays OFF) fetches, redirects to, iframes, beacons and opens
  WebSockets to canaries on 127.0.0.1 and [::1] by IP, decimal IP, ``localhost`` and IPv6 —
  the canaries see zero connections and every refusal is in the case's trail.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from engine import safe_fetch
from engine.intake import submit_files
from engine.lab.images import make_image, png_bytes
from engine.lab.script_gallery import ROLES, add_script_gallery, gallery_paths
from engine.lab.webserver import LabWebServer, Route
from engine.media.hashing import hash_media
from engine.media.html_media import scan_page
from engine.runtime import Runtime
from engine.safe_fetch import FetchPolicy, SafeFetcher
from plugins.fetch.browser import SHM_ROOT, BrowserPool, BrowserSettings, browser_available
from tests.conftest import run_ntd

HOST = "gallery.test"
PUBLIC = "public.test"
UNAVAILABLE = browser_available(BrowserSettings(
    executable=os.environ.get("NTD_CHROMIUM", "/usr/bin/chromium")))
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))


@pytest.fixture(autouse=True)
def _fetch_and_match_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "resolve,route_inhope,notify,recheck")


@pytest.fixture
async def gallery():
    server = LabWebServer()
    await server.start()
    server.images = add_script_gallery(server, HOST)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        await server.close()


def runtime(db: Path, ports: list[int], hosts: dict[str, str], *, lab: bool,
            browser: dict[str, object] | None = None) -> Runtime:
    return Runtime.open(db=str(db), overrides={
        "lab": {"allow_private_networks": lab},
        "resolve.hosts": hosts,
        "fetch": {"allowed_ports": ports, "retry_minutes": 1.0, "total_timeout": 5.0},
        "fetch.browser": {"page_seconds": 20.0, **(browser or {})},
        "pipeline": {"poll_seconds": 0.05, "cpu_workers": 1},
    })


def list_image(rt: Runtime, data: bytes) -> None:
    h = hash_media(data)
    rt.store.import_hashlist(name="national", source="test", trust="auto", negative=False,
                             thresholds={}, entries=[("phash", h["phash"], "baseline", None,
                                                      None)], now=rt.clock.now_text())


def submit(rt: Runtime, tmp_path: Path, url: str) -> str:
    src = tmp_path / "urls.txt"
    src.write_text(url + "\n")
    [case_id] = submit_files(rt.store, [str(src)], keep_case_ids=True).case_ids
    return case_id


def fetched_event(case: dict) -> dict:
    return next(e for e in case["events"] if e["action"] == "fetched")["detail"]


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size."""
    out = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            path = Path(base, name)
            if path.is_file():
                out[str(path.relative_to(root))] = path.stat().st_size
    return out


def holding(roots: list[Path], needles: list[bytes]) -> list[str]:
    """Files under ``roots`` that contain any of ``needles``."""
    found = []
    for root in roots:
        for base, _dirs, files in os.walk(root):
            for name in files:
                path = Path(base, name)
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    found.append(str(path))
    return found


def shm_dirs() -> set[str]:
    return {n for n in os.listdir(SHM_ROOT) if n.startswith(f"ntd-browser-{os.getpid()}-")}


async def test_script_gallery_static_finds_none_browser_finds_all_and_writes_nothing(
        gallery: LabWebServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page_url = gallery.url("/gallery/index.html", host=HOST)
    html = gallery._routes[(HOST, "/gallery/index.html")].body
    assert scan_page(html, page_url).urls == []  # nothing for the static parser

    # Everything this process and its children would write outside the data directory lands
    # in these: Playwright's driver inherits TMPDIR and HOME from here.
    temp, home, data = tmp_path / "tmp", tmp_path / "home", tmp_path / "data"
    for d in (temp, home, data):
        d.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setenv("HOME", str(home))
    db = data / "ntd.db"
    rt = runtime(db, [gallery.port], {HOST: "127.0.0.1"}, lab=True)
    list_image(rt, gallery.images["lazy"])  # the lazily loaded one is on the list
    case_id = submit(rt, tmp_path, page_url)
    before = {"tmp": tree(temp), "home": tree(home), "data": set(tree(data))}
    shm_before = shm_dirs()

    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)

    case = rt.store.get_case(case_id)
    assert case["state"] == "confirmed", case["state"]
    paths = gallery_paths()
    by_path = {i["url"].split(str(gallery.port), 1)[-1]: i for i in case["items"]}
    for role in ROLES:
        item = by_path[paths[role]]
        assert item["hashes"]["phash"] == hash_media(gallery.images[role])["phash"], role
        assert item["size"] == len(gallery.images[role])
    assert by_path[paths["lazy"]]["matches"][0]["list"] == "national"
    detail = fetched_event(case)
    browser = detail["browser"]
    assert browser["mode"] == "scripts" and browser["refused"] == 0
    assert browser["network_images"] == 4 and browser["frames"] == 2
    assert browser["scrolls"] >= 1 and "stopped" not in browser
    # Each image was fetched once, by the safe fetcher for the browser (no second fetch).
    assert all(gallery.hits(HOST, paths[r]) == 1 for r in ROLES)
    # The page itself was fetched once too: the browser got the stage's copy.
    assert gallery.hits(HOST, "/gallery/index.html") == 1
    rt.close()

    # No file written: temp and home untouched, the data directory holds the database only,
    # the browser's /dev/shm directory is gone, and no image's bytes are anywhere.
    assert tree(temp) == before["tmp"] == {}
    assert tree(home) == before["home"] == {}
    assert set(tree(data)) - before["data"] <= {"ntd.db-wal", "ntd.db-shm"}
    assert shm_dirs() == shm_before == set()
    needles = [img[len(img) // 2:len(img) // 2 + 48] for img in gallery.images.values()]
    assert holding([temp, home, data, tmp_path], needles) == []


async def test_browser_mode_off_leaves_script_page_without_media(
        gallery: LabWebServer, tmp_path: Path) -> None:
    rt = runtime(tmp_path / "ntd.db", [gallery.port], {HOST: "127.0.0.1"}, lab=True,
                 browser={"enabled": False})
    case_id = submit(rt, tmp_path, gallery.url("/gallery/index.html", host=HOST))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    case = rt.store.get_case(case_id)
    assert case["state"] == "awaiting_assessment" and len(case["items"]) == 1
    assert "browser" not in fetched_event(case)
    rt.close()


async def test_listed_domain_is_always_rendered(gallery: LabWebServer, tmp_path: Path) -> None:
    # A page whose HTML names an image (static parse finds it) on a listed domain still goes
    # through the browser, which finds the rest.
    gallery.set(HOST, "/plain.html", (b'<html><body><img src="/gallery/img/js.png">'
                                      b'<iframe src="/gallery/frame.html"></iframe>'
                                      b'</body></html>', "text/html"))
    rt = runtime(tmp_path / "ntd.db", [gallery.port], {HOST: "127.0.0.1"}, lab=True,
                 browser={"domains": ["gallery.test"]})
    case_id = submit(rt, tmp_path, gallery.url("/plain.html", host=HOST))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    case = rt.store.get_case(case_id)
    detail = fetched_event(case)
    assert detail["browser"]["mode"] == "domain"
    names = sorted(i["url"].rsplit("/", 1)[-1] for i in case["items"])
    assert names == ["frame.png", "js.png", "plain.html"]
    assert gallery.hits(HOST, "/gallery/img/js.png") == 1  # the static find was not refetched
    rt.close()


@pytest.fixture
def threaded_gallery():
    """The gallery on its own loop in a thread (the test waits on a child ``ntd``)."""
    server = LabWebServer()
    server.images = add_script_gallery(server, HOST)  # type: ignore[attr-defined]
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop()


async def test_ntd_fetch_browser_refetches_a_case_awaiting_assessment(
        threaded_gallery: LabWebServer, tmp_path: Path) -> None:
    gallery = threaded_gallery
    db = tmp_path / "ntd.db"
    rt = runtime(db, [gallery.port], {HOST: "127.0.0.1"}, lab=True,
                 browser={"enabled": False})
    list_image(rt, gallery.images["frame"])
    case_id = submit(rt, tmp_path, gallery.url("/gallery/index.html", host=HOST))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert rt.store.get_case(case_id)["state"] == "awaiting_assessment"
    rt.close()
    config = tmp_path / "ntd.toml"
    config.write_text(
        "[lab]\nallow_private_networks = true\n"
        f"[resolve.hosts]\n\"{HOST}\" = \"127.0.0.1\"\n"
        f"[fetch]\nallowed_ports = [{gallery.port}]\n"
        "[fetch.browser]\nenabled = false\n")
    proc = run_ntd("--config", str(config), "--db", str(db), "fetch", case_id, "--browser",
                   "--analyst", "ana")
    assert proc.returncode == 0, proc.stderr
    assert "browser (forced)" in proc.stdout and "4 images loaded" in proc.stdout
    rt = runtime(db, [gallery.port], {HOST: "127.0.0.1"}, lab=True, browser={"enabled": False})
    case = rt.store.get_case(case_id)
    assert case["state"] == "fetched"
    last = case["events"][-1]
    assert last["actor"] == "analyst:ana" and last["detail"]["browser"]["mode"] == "forced"
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert rt.store.get_case(case_id)["state"] == "confirmed"  # the iframe's image is listed
    rt.close()
    proc = run_ntd("--config", str(config), "--db", str(db), "fetch", case_id)
    assert proc.returncode == 2 and "confirmed" in proc.stderr


# ---------------------------------------------------------------------------------------------
# SSRF
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def canaries():
    four = LabWebServer(bind="127.0.0.1", default_host="canary.test")
    await four.start()
    try:
        six = LabWebServer(bind="::1", default_host="canary.test")
        await six.start()
    except OSError:
        await four.close()
        pytest.skip("no IPv6 loopback")
    for server in (four, six):
        server.set("*", "/", (b"canary", "text/html"))
    try:
        yield four, six
    finally:
        await four.close()
        await six.close()


@pytest.fixture
async def public(monkeypatch: pytest.MonkeyPatch):
    """A "public" server: bound to 127.0.0.2, which the address policy is patched to treat
    as public (the lab switch stays off, so loopback and everything private stays refused)."""
    real = safe_fetch.forbidden_reason

    def patched(ip: str, *, allow_private: bool = False) -> str | None:
        return None if ip == "127.0.0.2" else real(ip, allow_private=allow_private)

    monkeypatch.setattr(safe_fetch, "forbidden_reason", patched)
    server = LabWebServer(bind="127.0.0.2", default_host=PUBLIC)
    try:
        await server.start()
    except OSError:
        pytest.skip("cannot bind 127.0.0.2")
    try:
        yield server
    finally:
        await server.close()


def hostile_page(four: int, six: int) -> bytes:
    targets = {
        "fetch-ip": f"http://127.0.0.1:{four}/fetch-ip",
        "fetch-decimal": f"http://2130706433:{four}/fetch-decimal",
        "fetch-localhost": f"http://localhost:{four}/fetch-localhost",
        "fetch-v6": f"http://[::1]:{six}/fetch-v6",
        "fetch-mapped": f"http://[::ffff:127.0.0.1]:{four}/fetch-mapped",
    }
    script = "".join(f"fetch({u!r}).catch(() => 0);" for u in targets.values())
    script += (f"navigator.sendBeacon('http://127.0.0.1:{four}/beacon', 'x');"
               f"for (const u of ['ws://127.0.0.1:{four}/ws', 'ws://[::1]:{six}/ws',"
               f" 'ws://localhost:{four}/ws', 'wss://2130706433:{four}/ws']) "
               "{ try { new WebSocket(u); } catch (e) {} }"
               "const i = document.createElement('img'); i.src = '/ok.png';"
               "document.body.appendChild(i);"
               "const r = document.createElement('img'); r.src = '/to-canary.png';"
               "document.body.appendChild(r);"
               f"const f = document.createElement('iframe'); f.src = 'http://[::1]:{six}/frame';"
               "document.body.appendChild(f);")
    return (f"<html><head><link rel=preconnect href='http://127.0.0.1:{four}/'>"
            f"<link rel=prefetch href='http://127.0.0.1:{four}/prefetch'>"
            f"<link rel=dns-prefetch href='//localhost:{four}/'></head><body>"
            f"<iframe src='http://127.0.0.1:{four}/iframe-ip'></iframe>"
            f"<iframe src='http://localhost:{four}/iframe-localhost'></iframe>"
            f"<script>{script}</script></body></html>").encode()


async def test_hostile_page_reaches_no_canary_and_every_refusal_is_recorded(
        public: LabWebServer, canaries: tuple[LabWebServer, LabWebServer],
        tmp_path: Path) -> None:
    four, six = canaries
    public.set(PUBLIC, "/hostile.html", (hostile_page(four.port, six.port), "text/html"))
    public.set(PUBLIC, "/to-canary.png",
               Route.redirect(f"http://127.0.0.1:{four.port}/redirected.png"))
    ok = gallery_png()
    public.set(PUBLIC, "/ok.png", (ok, "image/png"))
    rt = runtime(tmp_path / "ntd.db", [public.port, four.port, six.port],
                 {PUBLIC: "127.0.0.2"}, lab=False)
    case_id = submit(rt, tmp_path, public.url("/hostile.html"))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)

    assert four.connections == 0 and six.connections == 0  # nothing reached a canary
    case = rt.store.get_case(case_id)
    detail = fetched_event(case)
    refused = {(r["url"], r["reason"]) for r in detail["refused"]}
    p4, p6 = four.port, six.port
    expected = {
        (f"http://127.0.0.1:{p4}/fetch-ip", "blocked_address"),
        (f"http://127.0.0.1:{p4}/fetch-decimal", "blocked_address"),  # the browser's spelling
        (f"http://localhost:{p4}/fetch-localhost", "blocked_address"),
        (f"http://[::1]:{p6}/fetch-v6", "blocked_address"),
        (f"http://[::ffff:7f00:1]:{p4}/fetch-mapped", "blocked_address"),
        (f"http://127.0.0.1:{p4}/iframe-ip", "blocked_address"),
        (f"http://localhost:{p4}/iframe-localhost", "blocked_address"),
        (f"http://[::1]:{p6}/frame", "blocked_address"),
        (public.url("/to-canary.png"), "blocked_address"),  # its redirect hop was refused
        (f"http://127.0.0.1:{p4}/beacon", "blocked_method"),
        (f"ws://127.0.0.1:{p4}/ws", "blocked_websocket"),
        (f"ws://[::1]:{p6}/ws", "blocked_websocket"),
        (f"ws://localhost:{p4}/ws", "blocked_websocket"),
        (f"wss://127.0.0.1:{p4}/ws", "blocked_websocket"),
    }
    assert expected <= refused, expected - refused
    assert detail["browser"]["refused"] == len(detail["refused"])
    # The page's own image still counts.
    names = {i["url"].rsplit("/", 1)[-1]: i for i in case["items"]}
    assert names["ok.png"]["hashes"]["phash"] == hash_media(ok)["phash"]
    assert public.hits(PUBLIC, "/to-canary.png") == 1
    rt.close()


def gallery_png() -> bytes:
    return png_bytes(make_image(901, (120, 90)))


# ---------------------------------------------------------------------------------------------
# Bounds: memory, deadline, a dead browser
# ---------------------------------------------------------------------------------------------


def lab_fetcher(server: LabWebServer) -> SafeFetcher:
    return SafeFetcher(FetchPolicy(allow_private_networks=True,
                                   allowed_ports=frozenset({server.port}),
                                   static_hosts={HOST: ["127.0.0.1"]}))


async def test_page_over_memory_is_killed_recorded_and_the_browser_restarted(
        gallery: LabWebServer) -> None:
    url = gallery.url("/gallery/index.html", host=HOST)
    # Any browser is over 64 MiB: the first page is killed with its browser.
    pool = BrowserPool(BrowserSettings(max_rss_mb=64, page_seconds=30))
    try:
        async with lab_fetcher(gallery) as fetcher:
            killed = await pool.render(url, fetcher, max_images=50)
            assert killed.stopped == "browser_memory" and killed.peak_rss_mb > 64
            assert pool.killed == 1
            pool.settings = replace(pool.settings, max_rss_mb=65536)
            again = await pool.render(url, fetcher, max_images=50)
    finally:
        await pool.aclose()
    assert again.stopped is None and len(again.network_images) == 4
    assert pool.restarts == 1 and shm_dirs() == set()


async def test_page_past_its_deadline_is_stopped_and_the_next_one_renders(
        gallery: LabWebServer) -> None:
    gallery.set(HOST, "/spin.html", (b"<html><body><img src='/gallery/img/js.png'>"
                                     b"<script>while (true) {}</script></body></html>",
                                     "text/html"))
    pool = BrowserPool(BrowserSettings(page_seconds=3))
    try:
        async with lab_fetcher(gallery) as fetcher:
            spun = await pool.render(gallery.url("/spin.html", host=HOST), fetcher,
                                     max_images=50)
            assert spun.stopped == "deadline"
            pool.settings = replace(pool.settings, page_seconds=30)
            after = await pool.render(gallery.url("/gallery/index.html", host=HOST), fetcher,
                                      max_images=50)
    finally:
        await pool.aclose()
    assert after.stopped is None and len(after.network_images) == 4


async def test_browser_that_died_is_started_again(gallery: LabWebServer) -> None:
    url = gallery.url("/gallery/index.html", host=HOST)
    pool = BrowserPool(BrowserSettings(page_seconds=30))
    try:
        async with lab_fetcher(gallery) as fetcher:
            first = await pool.render(url, fetcher, max_images=2)
            assert len(first.network_images) == 2 and first.aborted.get("max_media")
            [slot] = pool._slots
            browser = psutil.Process(slot.pid)
            browser.kill()
            second = await pool.render(url, fetcher, max_images=50)
    finally:
        await pool.aclose()
    assert not browser.is_running() or browser.status() == psutil.STATUS_ZOMBIE
    assert second.stopped is None and len(second.network_images) == 4
    assert pool.restarts == 1
