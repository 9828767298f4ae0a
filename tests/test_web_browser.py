"""End to end in headless Chromium: report through the public form, sign in, assess, see it routed.

Drives Debian's ``chromium`` with Playwright against uvicorn on a free loopback port (a thread of
this process). Skips when Playwright or the chromium binary is missing (CI installs both).
Screenshots of every page go to ``$NTD_SCREENS_DIR`` (default /tmp/ntd-screens), never the repo.

Routing: the resolve stage needs DNS and RDAP, which a test cannot reach, so the test stands in
for it — the confirmed case moves to ``resolved`` with a resolution hosted in NL (the trail
records actor ``test``) — and then runs the real route stage (``route_inhope``) through the
pipeline with only that stage, so "routed" and the routes shown are the engine's own decision.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from engine.pipeline import STAGES, Pipeline
from engine.runtime import Runtime
from engine.web import WebSettings, create_app
from engine.web.accounts import accounts
from engine.web.server import ServerThread

CHROMIUM = os.environ.get("NTD_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery"
RESOLUTION = {
    "host": "browser.example.test", "ips": ["192.0.2.10"], "asn": 64500,
    "network": "192.0.2.0/24", "org": "Lab hoster", "country": "NL", "registrar": None,
    "cdn": None, "platform": None,
    "contacts": [{"scope": "hosting", "channel": "email", "address": "abuse@hoster.example.test",
                  "source": "test", "confidence": 0.9}],
}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) or shutil.which("chromium")),
    reason=f"no chromium binary at {CHROMIUM} (apt-get install chromium)")


async def _route_only(rt: Runtime) -> None:
    ctx = rt.context(owner="browser-test")
    try:
        stages = tuple(s for s in STAGES if s.name == "route")
        await Pipeline(ctx, until_idle=True, stages=stages, install_signal_handlers=False).run()
    finally:
        await ctx.aclose()


def test_report_assess_route_in_chromium(tmp_path: Path) -> None:
    shots = Path(os.environ.get("NTD_SCREENS_DIR", "/tmp/ntd-screens"))
    shots.mkdir(parents=True, exist_ok=True)
    rt = Runtime.open(db=str(tmp_path / "ntd.db"))
    acc = accounts(rt.store)
    acc.add_user(name="alice", role="analyst", country=None, now=rt.clock.now_text(),
                 password_hash=PasswordHasher(time_cost=1, memory_cost=1024,
                                              parallelism=1).hash(PASSWORD))
    server = ServerThread(create_app(rt, WebSettings(secret=b"b" * 32)))
    base = server.start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
            page = context.new_page()
            # Fail on any request leaving loopback (no third-party resources).
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))

            # 1. The public form, both languages, an invalid URL, then a valid one.
            page.goto(f"{base}/?lang=nl")
            expect(page.locator("h1")).to_have_text("Meld seksueel misbruik van kinderen")
            page.screenshot(path=str(shots / "01-form-nl.png"), full_page=True)
            page.goto(f"{base}/")
            assert "Your report is anonymous" in page.content()
            page.get_by_label("Web address (URL) of the page or image").fill("ftp://x.example/")
            page.get_by_role("button", name="Send report").click()
            expect(page.get_by_role("alert")).to_contain_text(
                "Only web addresses starting with http:// or https://")
            page.screenshot(path=str(shots / "02-form-error.png"), full_page=True)
            page.get_by_label("Web address (URL) of the page or image").fill(
                "browser.example.test/gallery/1")
            page.get_by_role("button", name="Send report").click()
            expect(page.locator("h1")).to_have_text("Thank you, your report was received")
            page.screenshot(path=str(shots / "03-form-thanks.png"), full_page=True)
            assert context.cookies() == []  # the public form set no cookie

            [case] = rt.store.list_cases()
            assert case["reports"][0]["channel"] == "webform"
            case_id = case["id"]
            rt.store.transition(case_id, state="awaiting_assessment", stage="test",
                                actor="test", action="setup", now=rt.clock.now_text())

            # 2. Sign in and assess the queued case.
            page.goto(f"{base}/console")
            expect(page).to_have_url(f"{base}/console/login?next=/console")
            page.screenshot(path=str(shots / "04-login.png"), full_page=True)
            page.get_by_label("Account name").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{base}/console/queue")
            # (the workbench grid: nothing was fetched for this case, so no preview)
            tile = page.locator(".tile", has_text=case_id)
            assert tile.is_visible() and page.locator(".tile img").count() == 0
            page.screenshot(path=str(shots / "05-queue.png"), full_page=True)
            for key in ("1", "c", "n", "o", "Enter"):  # baseline, PP, FE, no flags
                page.keyboard.press(key)
            expect(page.get_by_text("Nothing awaits assessment.")).to_be_visible()
            page.screenshot(path=str(shots / "06-queue-after-verdict.png"), full_page=True)
            after = rt.store.get_case(case_id)
            assert after is not None and after["state"] == "confirmed"
            assert after["assessment"]["by"] == "analyst:alice"

            # 3. Resolution stand-in, then the real route stage.
            rt.store.transition(case_id, state="resolved", stage="resolve", actor="test",
                                action="resolved", now=rt.clock.now_text(),
                                data={"resolution": RESOLUTION}, expect=["confirmed"])
            # Playwright's sync API owns this thread's event loop: run the stage on another.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, _route_only(rt)).result(timeout=120)
            page.goto(f"{base}/console/cases/{case_id}")
            expect(page.locator("h1 .state")).to_have_text("routed")
            routes = page.locator("table", has_text="decided by")
            assert "abuse@hoster.example.test" in routes.inner_text()
            assert "route_inhope:home-hosting" in routes.inner_text()
            page.screenshot(path=str(shots / "07-case-routed.png"), full_page=True)

            # 4. The other pages.
            for name, path in (("08-cases", "/console/cases"), ("09-notices", "/console/notices"),
                               ("10-stats", "/console/stats")):
                page.goto(base + path)
                assert page.locator("h1").is_visible()
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            expect(page.locator(".charts img")).to_have_count(4)
            assert outside == []
            browser.close()
    finally:
        server.stop()
        rt.close()
