"""The workbench in headless Chromium against the loopback world, keyboard only.

Debian's ``chromium`` driven by Playwright (launched with ``executable_path`` as in
``test_web_browser``) against uvicorn on a loopback port, the lab web server serving synthetic
images, and the real fetch and match stages. The queue holds a group of 10 byte-identical copies,
a near-identical copy of the same picture and 10 single images; the analyst signs in, sees the
grid of blurred thumbnails, clears the queue with the keyboard only, undoes one verdict, and sees
the copies of the learned image leave the queue. Screenshots go to /tmp/wb-*.png.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from engine.intake import submit_files
from engine.lab.images import jpeg_bytes, jpeg_q40, make_image
from engine.lab.webserver import LabWebServer
from engine.runtime import Runtime
from engine.web import WebSettings, create_app
from engine.web.accounts import accounts
from engine.web.server import ServerThread

CHROMIUM = os.environ.get("NTD_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery"
HOST = "hoster.workbench.test"
SHOTS = Path(os.environ.get("NTD_WB_SCREENS", "/tmp"))

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) or shutil.which("chromium")),
    reason=f"no chromium binary at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(autouse=True)
def _fetch_and_match_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "resolve,route_inhope,notify,recheck")


def _run_pipeline(rt: Runtime) -> None:
    # Playwright's sync API owns this thread's event loop: run the stages on another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, rt.run_pipeline(until_idle=True, install_signal_handlers=False)
                    ).result(timeout=300)


def _submit(rt: Runtime, folder: Path, urls: list[str]) -> list[str]:
    src = folder / f"urls-{len(list(folder.iterdir()))}.txt"
    src.write_text("\n".join(urls) + "\n")
    return submit_files(rt.store, [str(src)], keep_case_ids=True).case_ids


def _shot(page: object, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"wb-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_keyboard_triage_in_chromium(tmp_path: Path) -> None:
    lab = LabWebServer({})
    learned = make_image(100, (1024, 768))
    lab.set(HOST, "/same.jpg", (jpeg_bytes(learned), "image/jpeg"))
    lab.set(HOST, "/same-q40.jpg", (jpeg_q40(learned), "image/jpeg"))
    for i in range(10):
        lab.set(HOST, f"/single-{i}.jpg", (jpeg_bytes(make_image(200 + i, (800, 600))),
                                           "image/jpeg"))
    lab.start_in_thread()
    rt = Runtime.open(db=str(tmp_path / "ntd.db"), overrides={
        "lab": {"allow_private_networks": True}, "resolve.hosts": {HOST: "127.0.0.1"},
        "fetch": {"allowed_ports": [lab.port]},
        "pipeline": {"poll_seconds": 0.05, "cpu_workers": 1}})
    rt.store.import_hashlist(name="watch", source="test", trust="review", negative=False,
                             thresholds={}, entries=[("sha256", "0" * 64, "baseline", None, None)],
                             now=rt.clock.now_text())
    accounts(rt.store).add_user(
        name="alice", role="analyst", country=None, now=rt.clock.now_text(),
        password_hash=PasswordHasher(time_cost=1, memory_cost=1024,
                                     parallelism=1).hash(PASSWORD))
    copies = _submit(rt, tmp_path, [lab.url(f"/same.jpg?copy={i}", host=HOST)
                                    for i in range(10)])
    singles = _submit(rt, tmp_path, [lab.url(f"/single-{i}.jpg", host=HOST) for i in range(10)])
    [near] = _submit(rt, tmp_path, [lab.url("/same-q40.jpg", host=HOST)])
    _run_pipeline(rt)
    waiting = {c["id"] for c in rt.store.list_cases(state="awaiting_assessment")}
    assert waiting == {*copies, *singles, near}
    server = ServerThread(create_app(rt, WebSettings(secret=b"k" * 32)))
    base = server.start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            context = browser.new_context(locale="en-GB", viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))

            page.goto(f"{base}/console")
            page.get_by_label("Account name").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.keyboard.press("Enter")
            expect(page).to_have_url(f"{base}/console/queue")
            expect(page.locator("#badge")).to_have_text("21 cases · 12 groups")
            tiles = page.locator(".tile")
            expect(tiles).to_have_count(12)
            # every thumbnail is a loaded, blurred, greyscale JPEG from the safe viewer
            for img in page.locator(".tile img").all():
                expect(img).to_have_js_property("complete", True)
                expect(img).not_to_have_js_property("naturalWidth", 0)
            assert page.locator(".tile").first.inner_text().startswith("×10")
            _shot(page, "1-grid")

            # 1. the group of 10 copies: illegal, baseline, classified from the panel's keys
            page.keyboard.press("?")
            expect(page.locator("#keys")).to_be_visible()
            _shot(page, "2-keys")
            page.keyboard.press("?")
            # r held: the focused image unblurred (an audited reveal); released: blurred again
            first_img = page.locator(".tile img").first
            page.keyboard.down("r")
            expect(first_img).to_have_attribute("src", re.compile("blur=0"))
            page.keyboard.up("r")
            expect(first_img).not_to_have_attribute("src", re.compile("blur=0"))
            page.keyboard.press("1")
            expect(page.locator("#classify")).to_be_visible()
            page.keyboard.press("Enter")  # nothing pre-selected: it asks for the rest
            expect(page.locator("#status")).to_contain_text("Still to choose: age, gender")
            for key in ("c", "n", "o"):
                page.keyboard.press(key)
            _shot(page, "3-classify")
            page.keyboard.press("Enter")
            expect(page.locator("#status")).to_contain_text("Recorded 10 × illegal (baseline)")
            assert all(rt.store.get_case(c, events=False)["state"] == "confirmed"
                       for c in copies)
            # the near copy of the learned picture went back to be matched again
            assert rt.store.get_case(near, events=False)["state"] == "fetched"

            # 2. the singles: select two with space (and j), not illegal; the rest one by one
            page.keyboard.press(" ")
            page.keyboard.press("j")
            page.keyboard.press(" ")
            page.keyboard.press("3")
            expect(page.locator("#status")).to_contain_text("Recorded 2 × not illegal")
            for n in range(8):
                page.keyboard.press("3" if n % 2 else "0")
                expect(page.locator(".tile.done")).to_have_count(4 + n)
            expect(page.locator("#badge")).to_have_text("1 cases · 1 groups")
            _shot(page, "4-cleared")

            # 3. undo the last one: it is back in the queue
            page.keyboard.press("u")
            expect(page.locator("p.notice[role=status]")).to_have_text("Undone: 1 verdict.")
            undone = [c for c in singles
                      if rt.store.get_case(c, events=False)["state"] == "awaiting_assessment"]
            assert len(undone) == 1
            _shot(page, "5-undone")

            # 4. the near copy was matched again against what was learned: it left the queue
            _run_pipeline(rt)
            assert rt.store.get_case(near, events=False)["state"] == "confirmed"
            page.reload()
            expect(page.locator(".tile")).to_have_count(1)
            page.keyboard.press("3")
            expect(page.get_by_text("Nothing awaits assessment.")).to_be_visible()
            # new copies of the learned image never reach the queue
            later = _submit(rt, tmp_path, [lab.url(f"/same.jpg?later={i}", host=HOST)
                                           for i in range(3)])
            _run_pipeline(rt)
            assert all(rt.store.get_case(c, events=False)["state"] == "confirmed"
                       for c in later)
            page.reload()
            expect(page.get_by_text("Nothing awaits assessment.")).to_be_visible()
            expect(page.locator("#badge")).to_have_text("0 cases · 0 groups")
            _shot(page, "6-empty")
            assert outside == []
            browser.close()
    finally:
        server.stop()
        rt.close()
        lab.stop()
    actions = {a["action"] for a in accounts_audit(tmp_path)}
    assert {"sign_in", "view_queue", "view_media", "verdicts", "verdict_undo"} <= actions


def accounts_audit(tmp_path: Path) -> list[dict[str, object]]:
    rt = Runtime.open(db=str(tmp_path / "ntd.db"))
    try:
        return list(rt.store.audit_log())
    finally:
        rt.close()
