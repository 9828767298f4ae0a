"""When the fetch stage renders a page in the browser, and what happens without one.

These need no chromium (``tests/test_browser_fetch.py`` drives the real browser).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.intake import submit_files
from engine.lab.script_gallery import add_script_gallery
from engine.lab.webserver import LabWebServer
from engine.runtime import Runtime
from engine.testing import make_context
from plugins.fetch.browser import BrowserPage, BrowserPool, BrowserSettings, browser_available
from plugins.fetch.fetcher import browser_mode

HOST = "gallery.test"


@pytest.mark.parametrize(("body", "media", "forced", "config", "mode"), [
    (b"<html><script>go()</script></html>", [], False, {}, "scripts"),
    (b"<html><SCRIPT src=x.js></SCRIPT></html>", [], False, {}, "scripts"),
    (b"<html><script>go()</script></html>", ["http://a.test/i.png"], False, {}, None),
    (b"<html><p>no scripts</p></html>", [], False, {}, None),
    (b"<html><scripts>not a tag</scripts></html>", [], False, {}, None),
    (b"<html><script>go()</script></html>", [], False, {"enabled": False}, None),
    (b"<html><p>plain</p></html>", ["http://a.test/i.png"], True, {"enabled": False}, "forced"),
    (b"<html><p>plain</p></html>", ["http://a.test/i.png"], False,
     {"domains": ["gallery.test"]}, "domain"),
])
def test_browser_mode_decision(body: bytes, media: list[str], forced: bool,
                               config: dict[str, object], mode: str | None) -> None:
    ctx = make_context(config={"fetch.browser": config}, builtins=["fetch"])
    assert browser_mode(ctx, "http://www.gallery.test/p", body, media, forced=forced) == mode


def test_script_beyond_the_parsed_part_does_not_count() -> None:
    ctx = make_context(config={"fetch": {"max_parse_bytes": 64}}, builtins=["fetch"])
    body = b"<html>" + b" " * 100 + b"<script>late()</script>"
    assert browser_mode(ctx, "http://a.test/", body, []) is None


def test_listed_domain_matches_subdomains_only() -> None:
    settings = BrowserSettings.from_config({"domains": ["Gallery.Test."]})
    assert settings.always_for("gallery.test") and settings.always_for("cdn.gallery.test.")
    assert not settings.always_for("notgallery.test")


def test_missing_chromium_is_named() -> None:
    reason = browser_available(BrowserSettings(executable="/nonexistent/chromium"))
    assert reason is not None and "/nonexistent/chromium" in reason


def test_refusals_are_capped_but_counted() -> None:
    page = BrowserPage(url="http://a.test/")
    for i in range(80):
        page.refuse(f"http://127.0.0.1/{i}", "blocked_address")
    detail = page.to_detail()
    assert detail["refused"] == 80 and len(page.refused) == 50
    assert "http" not in str(detail)  # the counters hold no URL


async def test_without_chromium_the_static_result_stands_and_says_why(tmp_path: Path) -> None:
    server = LabWebServer()
    await server.start()
    try:
        add_script_gallery(server, HOST)
        rt = Runtime.open(db=str(tmp_path / "ntd.db"), overrides={
            "lab": {"allow_private_networks": True}, "resolve.hosts": {HOST: "127.0.0.1"},
            "fetch": {"allowed_ports": [server.port]},
            "fetch.browser": {"executable": "/nonexistent/chromium"},
            "pipeline": {"poll_seconds": 0.05, "cpu_workers": 1}})
        src = tmp_path / "u.txt"
        src.write_text(server.url("/gallery/index.html", host=HOST) + "\n")
        [case_id] = submit_files(rt.store, [str(src)], keep_case_ids=True).case_ids
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        case = rt.store.get_case(case_id)
        detail = next(e for e in case["events"] if e["action"] == "fetched")["detail"]
        assert detail["browser"]["mode"] == "scripts"
        assert "no chromium at /nonexistent/chromium" in detail["browser"]["unavailable"]
        assert len(case["items"]) == 1  # the page only, as the static scan left it
        rt.close()
    finally:
        await server.close()


async def test_a_page_waits_for_a_browser_only_so_long() -> None:
    pool = BrowserPool(BrowserSettings(pool=1))
    held = await pool._free.get()  # the one browser is busy with another page
    try:
        page = await pool.render("http://a.test/", None, max_images=5,  # type: ignore[arg-type]
                                 wait=0.05)
    finally:
        pool._free.put_nowait(held)
        await pool.aclose()
    assert page.stopped == "pool_busy" and pool.pages == 0
