"""The analyst's workbench through the web app (httpx's ASGI transport) on the loopback world:
the safe viewer (headers, blur, greyscale, no bytes at rest, roles, changed and vanished
content), grouped queue, bulk verdicts with classification, learning, undo, four eyes, audit.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from PIL import Image

import engine.cli.web  # noqa: F401  (registers the web commands)
from engine import clock
from engine.cli import cli
from engine.intake import submit_files
from engine.lab.images import jpeg_bytes, jpeg_q40, make_image, png_bytes
from engine.lab.webserver import LabWebServer
from engine.media.hashing import hash_media
from engine.media.preview import render_preview
from engine.runtime import Runtime
from engine.web import WebSettings, create_app
from engine.web.accounts import accounts
from engine.web.auth import new_token
from tests.pg import pg_url  # noqa: F401  (fixture)

HOST = "img.workbench.test"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
CLASSIFICATION = {"class": "baseline", "age": "PP", "gender": "FE", "virtual": False,
                  "user_generated": False, "child_modelling": False}


@pytest.fixture(autouse=True)
def _fetch_and_match_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "resolve,route_inhope,notify,recheck")


def laplacian_variance(jpeg: bytes) -> float:
    a = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float64)
    lap = (a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4 * a[1:-1, 1:-1])
    return float(lap.var())


class Bench:
    """The lab web server, a runtime with waiting cases, the app, accounts with tokens."""

    def __init__(self, tmp_path: Path, server: LabWebServer, *, log: Path | None = None,
                 db: str | None = None, **assessment: Any) -> None:
        tmp_path.mkdir(exist_ok=True)
        self.tmp_path = tmp_path
        self.server = server
        self.db = tmp_path / "ntd.db"
        self.url = db or str(self.db)
        self.rt = Runtime.open(db=self.url, overrides={
            "lab": {"allow_private_networks": True},
            "resolve.hosts": {HOST: "127.0.0.1"},
            "fetch": {"allowed_ports": [server.port]},
            "pipeline": {"poll_seconds": 0.05, "cpu_workers": 1},
            "assessment": assessment,
            **({"logging": {"file": str(log), "level": "DEBUG"}} if log else {}),
        })
        # A review list: the match stage then sends what it does not know to the queue.
        self.rt.store.import_hashlist(name="watch", source="test", trust="review",
                                      negative=False, thresholds={},
                                      entries=[("sha256", "0" * 64, "baseline", None, None)],
                                      now=self.rt.clock.now_text())
        self.app = create_app(self.rt, WebSettings(secret=b"w" * 32))
        self.tokens: dict[str, str] = {}
        acc = accounts(self.rt.store)
        for name, role, country in (("alice", "analyst", None), ("bob", "analyst", None),
                                    ("root", "admin", None), ("nl", "partner", "NL")):
            uid = acc.add_user(name=name, password_hash=FAST.hash("pw-pw-pw-pw"), role=role,
                               country=country, now=self.rt.clock.now_text())
            token, digest = new_token()
            acc.add_token(user_id=uid, token_hash=digest, now=self.rt.clock.now_text())
            self.tokens[name] = token
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                        base_url="http://ntd.test")

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def cases(self, *paths: str) -> list[str]:
        src = self.tmp_path / f"urls{len(list(self.tmp_path.iterdir()))}.txt"
        src.write_text("\n".join(self.server.url(p, host=HOST) for p in paths) + "\n")
        ids = submit_files(self.rt.store, [str(src)], keep_case_ids=True).case_ids
        await self.rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        return ids

    def state(self, case_id: str) -> str:
        return str(self.rt.store.get_case(case_id, events=False)["state"])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def bench(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bench]:
    server = LabWebServer({})
    for i in range(1, 6):
        server.set(HOST, f"/img/{i}.jpg", (jpeg_bytes(make_image(i, (1024, 768))), "image/jpeg"))
    # a near-identical copy of image 1: other bytes, the same picture
    server.set(HOST, "/img/1-q40.jpg", (jpeg_q40(make_image(1, (1024, 768))), "image/jpeg"))
    await server.start()
    b = Bench(tmp_path, server, db=None if request.param == "sqlite"
              else str(request.getfixturevalue("pg_url")))
    yield b
    await b.client.aclose()
    b.rt.close()
    await server.close()


async def test_preview_headers_blur_grey_and_audit(bench: Bench) -> None:
    [case_id] = await bench.cases("/img/1.jpg")
    assert bench.state(case_id) == "awaiting_assessment"
    url = f"/api/cases/{case_id}/items/0/preview"
    r = await bench.client.get(url, headers=bench.auth("alice"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "no-store, private"
    csp = r.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'") and "sandbox" in csp
    img = Image.open(io.BytesIO(r.content))
    assert max(img.size) == 256 and img.mode == "L"  # greyscale by default
    assert not img.info.get("exif") and not img.info.get("icc_profile")
    sharp = await bench.client.get(url + "?blur=0&grey=0&max=512", headers=bench.auth("alice"))
    colour = Image.open(io.BytesIO(sharp.content))
    assert max(colour.size) == 512 and colour.mode == "RGB"
    # Blur lowers the Laplacian variance; greyscale gives R = G = B.
    original = jpeg_bytes(make_image(1, (1024, 768)))
    unblurred = render_preview(original, max_side=256, blur=0, grey=False)
    blurred = render_preview(original, max_side=256, blur=60, grey=False)
    assert laplacian_variance(r.content) < laplacian_variance(unblurred) / 10  # as served
    assert laplacian_variance(blurred) < laplacian_variance(unblurred) / 10
    grey_rgb = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert (grey_rgb[..., 0] == grey_rgb[..., 1]).all() and \
        (grey_rgb[..., 1] == grey_rgb[..., 2]).all()
    audit = [a for a in bench.rt.store.audit_log() if a["action"] == "view_media"]
    assert [a["object"] for a in audit] == [f"case:{case_id} item:0"] * 2
    assert "revealed" not in audit[0]["detail"] and audit[1]["detail"]["revealed"] is True


async def test_preview_roles_and_rate_limit(tmp_path: Path) -> None:
    server = LabWebServer({(HOST, "/img/1.jpg"): (jpeg_bytes(make_image(1)), "image/jpeg")})
    await server.start()
    bench = Bench(tmp_path, server, preview_per_minute=2)
    try:
        [case_id] = await bench.cases("/img/1.jpg")
        url = f"/api/cases/{case_id}/items/0/preview"
        assert (await bench.client.get(url, headers=bench.auth("nl"))).status_code == 403
        assert (await bench.client.get(url)).status_code == 401
        assert (await bench.client.get(url, headers=bench.auth("root"))).status_code == 200
        codes = [(await bench.client.get(url, headers=bench.auth("alice"))).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 429]
        assert (await bench.client.get(f"/api/cases/{case_id}/items/5/preview",
                                       headers=bench.auth("root"))).status_code == 404
    finally:
        await bench.client.aclose()
        bench.rt.close()
        await server.close()


async def test_changed_and_vanished_content_move_their_cases(bench: Bench) -> None:
    changed, gone = await bench.cases("/img/2.jpg", "/img/3.jpg")
    bench.server.set(HOST, "/img/2.jpg", (jpeg_bytes(make_image(9, (1024, 768))), "image/jpeg"))
    bench.server.remove(HOST, "/img/3.jpg")
    r = await bench.client.get(f"/api/cases/{changed}/items/0/preview",
                               headers=bench.auth("alice"))
    assert r.status_code == 409 and r.json()["type"].endswith("content-changed")
    assert bench.state(changed) == "new"  # back to be fetched again
    r = await bench.client.get(f"/api/cases/{gone}/items/0/preview", headers=bench.auth("alice"))
    assert r.status_code == 410 and r.json()["type"].endswith("content-offline")
    case = bench.rt.store.get_case(gone, events=False)
    assert case["state"] == "unreachable" and case["retry_at"]  # a re-check is scheduled


async def test_no_preview_or_original_bytes_at_rest(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Data directory, this process's temp directory, database, WAL and the log file."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    log = tmp_path / "ntd.log"
    server = LabWebServer({(HOST, "/img/4.jpg"): (jpeg_bytes(make_image(4, (1024, 768))),
                                                  "image/jpeg")})
    await server.start()
    bench = Bench(tmp_path / "data", server, log=log)
    try:
        await _look_and_search(bench, tmp_path, log)
    finally:
        await bench.client.aclose()
        await server.close()


async def _look_and_search(bench: Bench, tmp_path: Path, log: Path) -> None:
    [case_id] = await bench.cases("/img/4.jpg")
    original = jpeg_bytes(make_image(4, (1024, 768)))
    shown = []
    for query in ("", "?blur=0&grey=0", "?max=512"):
        r = await bench.client.get(f"/api/cases/{case_id}/items/0/preview{query}",
                                   headers=bench.auth("alice"))
        assert r.status_code == 200
        shown.append(r.content)
    bench.rt.store.close()  # flush WAL state as it is
    needles = [original[200:264], original[-300:-236]] + [p[200:264] for p in shown] + \
              [p[-300:-236] for p in shown]
    assert Path(f"{bench.db}-wal").exists() or bench.db.exists()
    places = [tmp_path, Path(tempfile.gettempdir())]
    found = []
    for base in places:
        for root, _, files in os.walk(base):
            for name in files:
                path = Path(root) / name
                try:
                    if path.is_symlink() or path.stat().st_size > 64 * 2**20:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    found.append(str(path))
    assert found == [] and log.exists()  # (the log file is among the files searched)


async def test_groups_bulk_verdict_learning_and_undo(bench: Bench) -> None:
    copies = [f"/img/1.jpg?copy={i}" for i in range(4)]
    ids = await bench.cases(*copies, "/img/2.jpg", "/img/3.jpg")
    [near] = await bench.cases("/img/1-q40.jpg")
    assert all(bench.state(i) == "awaiting_assessment" for i in [*ids, near])
    r = await bench.client.get("/api/queue?group=pdq", headers=bench.auth("alice"))
    assert r.json()["total_groups"] == 3 and r.json()["groups"][0]["count"] == 5
    assert r.json()["groups"][0]["key"].startswith("pdq:")
    r = await bench.client.get("/api/queue?group=sha256", headers=bench.auth("alice"))
    body = r.json()
    assert body["total_cases"] == 7 and body["total_groups"] == 4
    big = body["groups"][0]
    assert big["kind"] == "sha256" and big["count"] == 4 and set(big["cases"]) == set(ids[:4])
    assert big["key"] == "sha256:" + hash_media(jpeg_bytes(make_image(1, (1024, 768))))["sha256"]
    assert big["sample"] == {"case": ids[0], "item": 0}
    assert {n["list"] for n in big["nearest"]} <= {"watch"}
    assert (await bench.client.get("/api/queue?group=pdq", headers=bench.auth("nl"))
            ).status_code == 403
    # illegal needs the whole classification; nothing has a default
    r = await bench.client.post("/api/verdicts", headers=bench.auth("alice"),
                                json={"group": big["key"], "verdict": "illegal"})
    assert r.status_code == 422
    r = await bench.client.post("/api/verdicts", headers=bench.auth("alice"), json={
        "group": big["key"], "verdict": "illegal",
        "classification": {**CLASSIFICATION, "age": None}})
    assert r.status_code == 422
    r = await bench.client.post("/api/verdicts", headers=bench.auth("alice"), json={
        "group": big["key"], "verdict": "illegal", "classification": CLASSIFICATION,
        "learn": True, "note": "one look for four copies"})
    assert r.status_code == 200, r.text
    assert r.json()["recorded"] == 4 and r.json()["skipped"] == []
    assert all(bench.state(i) == "confirmed" for i in ids[:4])
    case = bench.rt.store.get_case(ids[0])
    assert case["assessment"]["classification"] == CLASSIFICATION
    assert [e["action"] for e in case["events"]][-1] == "verdict"
    # Learning checked the rest of the queue: the near copy goes to be matched again (and is
    # confirmed by what was learned), the others stay; a new copy never reaches the queue.
    assert r.json()["rematched"] == 1
    assert bench.state(near) == "fetched" and bench.state(ids[4]) == "awaiting_assessment"
    [late] = await bench.cases("/img/1.jpg?copy=late")
    assert bench.state(late) == "confirmed" and bench.state(near) == "confirmed"
    # Skipped: not waiting any more.
    r = await bench.client.post("/api/verdicts", headers=bench.auth("alice"), json={
        "cases": [ids[0], ids[4]], "verdict": "not_illegal"})
    assert r.json()["recorded"] == 1
    assert r.json()["skipped"] == [{"case": ids[0], "reason": "state:confirmed"}]
    # Undo: back to the queue, both events in the trail; another analyst may not.
    assert (await bench.client.post(f"/api/cases/{ids[4]}/verdict/undo",
                                    headers=bench.auth("bob"))).status_code == 409
    r = await bench.client.post(f"/api/cases/{ids[4]}/verdict/undo", headers=bench.auth("alice"))
    assert r.status_code == 200 and bench.state(ids[4]) == "awaiting_assessment"
    actions = [e["action"] for e in bench.rt.store.get_case(ids[4])["events"]]
    assert actions[-2:] == ["verdict", "verdict_undone"]
    # the single endpoint takes the same classification
    r = await bench.client.post(f"/api/cases/{ids[5]}/verdict", headers=bench.auth("alice"),
                                json={"verdict": "illegal", "classification": CLASSIFICATION})
    assert r.status_code == 200 and bench.state(ids[5]) == "confirmed"
    audit = {(a["action"], a["object"]) for a in bench.rt.store.audit_log()}
    assert ("verdicts", "cases:4") in audit and ("verdict_undo", f"case:{ids[4]}") in audit
    assert ("verdict", f"case:{ids[5]}") in audit and ("view_queue", "queue:sha256") in audit


async def test_undo_window_and_four_eyes(tmp_path: Path) -> None:
    server = LabWebServer({(HOST, f"/{i}.jpg"): (jpeg_bytes(make_image(i)), "image/jpeg")
                           for i in range(1, 4)})
    await server.start()
    bench = Bench(tmp_path, server, verify="all", undo_minutes=0.0)
    try:
        a, b, c = await bench.cases("/1.jpg", "/2.jpg", "/3.jpg")
        body = {"verdict": "not_illegal", "cases": [a, b]}
        r = await bench.client.post("/api/verdicts", headers=bench.auth("alice"), json=body)
        assert r.json()["pending"] == [a, b] and bench.state(a) == "awaiting_assessment"
        # the same account cannot be its own second opinion, and no longer sees them
        r = await bench.client.post("/api/verdicts", headers=bench.auth("alice"), json=body)
        assert r.json()["recorded"] == 0
        q = (await bench.client.get("/api/queue?group=sha256", headers=bench.auth("alice"))).json()
        assert q["total_cases"] == 1
        r = await bench.client.post("/api/verdicts", headers=bench.auth("bob"),
                                    json={"verdict": "not_illegal", "cases": [a]})
        assert r.json()["recorded"] == 1 and bench.state(a) == "dismissed"
        r = await bench.client.post("/api/verdicts", headers=bench.auth("bob"), json={
            "verdict": "illegal", "cases": [b], "classification": CLASSIFICATION})
        assert r.json()["disputed"] == [b]
        disputed = (await bench.client.get("/api/disputed", headers=bench.auth("root"))).json()
        assert [d["id"] for d in disputed["cases"]] == [b]
        r = await bench.client.post("/api/verdicts", headers=bench.auth("root"), json={
            "verdict": "illegal", "cases": [b], "classification": CLASSIFICATION})
        assert r.json()["recorded"] == 1 and bench.state(b) == "confirmed"
        # undo_minutes = 0: too late at once
        assert (await bench.client.post(f"/api/cases/{a}/verdict/undo",
                                        headers=bench.auth("bob"))).status_code == 409
        assert c
    finally:
        await bench.client.aclose()
        bench.rt.close()
        await server.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def test_case_page_actions_and_ntd_case_text(bench: Bench) -> None:
    """The case page: resolution, notices, route by hand from unresolved, fetch again; the
    text of ``ntd case`` shows items, hashes and routes."""
    [waiting, failed] = await bench.cases("/img/5.jpg", "/img/missing.jpg")
    login = await bench.client.get("/console/login", headers={"accept": "text/html"})
    r = await bench.client.post("/console/login", data={
        "name": "alice", "password": "pw-pw-pw-pw", "csrf": _csrf(login.text)})
    assert r.status_code == 303
    bench.rt.store.transition(failed, state="unresolved", stage="test", actor="test",
                              action="setup", now=bench.rt.clock.now_text(),
                              data={"resolution": {"host": HOST, "ips": ["192.0.2.7"],
                                                   "asn": 64500, "org": "Lab hoster",
                                                   "country": "NL", "contacts": [
                                                       {"scope": "hosting", "channel": "email",
                                                        "address": "abuse@lab.example",
                                                        "source": "rdap", "confidence": 0.8}]}})
    page = await bench.client.get(f"/console/cases/{failed}")
    assert "Lab hoster" in page.text and "abuse@lab.example" in page.text
    assert "Route by hand" in page.text and "No notices for this case." in page.text
    r = await bench.client.post(f"/console/cases/{failed}/route", data={
        "csrf": _csrf(page.text), "to": "hosting:abuse@lab.example:email", "reason": "test"})
    assert r.status_code == 303 and bench.state(failed) == "routed"
    page = await bench.client.get(f"/console/cases/{waiting}")
    assert "Fetch again now" in page.text
    r = await bench.client.post(f"/console/cases/{waiting}/refetch",
                                data={"csrf": _csrf(page.text)})
    assert r.status_code == 303 and bench.state(waiting) == "new"
    audit = {(a["action"], a["object"]) for a in bench.rt.store.audit_log()}
    assert {("route_by_hand", f"case:{failed}"), ("fetch_again", f"case:{waiting}")} <= audit
    out = CliRunner().invoke(cli, ["--db", bench.url, "case", failed],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "routes" in out.output and "abuse@lab.example" in out.output
    assert "resolution: " in out.output and "AS64500" in out.output
    out = CliRunner().invoke(cli, ["--db", bench.url, "case", waiting],
                             env={"COLUMNS": "250"})
    sha = bench.rt.store.get_case(waiting, events=False)["items"][0]["hashes"]["sha256"]
    assert "items" in out.output and f"sha256 {sha}" in out.output


async def test_console_grid_pages_of_50_groups_with_true_totals(tmp_path: Path) -> None:
    server = LabWebServer({(HOST, f"/s/{i}.png"): (png_bytes(make_image(300 + i, (96, 96))),
                                                   "image/png") for i in range(53)})
    server.set(HOST, "/s/dup.png", (png_bytes(make_image(300, (96, 96))), "image/png"))
    await server.start()
    bench = Bench(tmp_path, server)
    try:
        await bench.cases(*[f"/s/{i}.png" for i in range(53)], "/s/dup.png")
        login = await bench.client.get("/console/login", headers={"accept": "text/html"})
        await bench.client.post("/console/login", data={
            "name": "alice", "password": "pw-pw-pw-pw", "csrf": _csrf(login.text)})
        first = await bench.client.get("/console/queue?sort=largest")
        assert first.status_code == 200
        assert "54 cases · 53 groups" in first.text and first.text.count('class="tile"') == 50
        assert "×2" in first.text.split('class="tile"')[1]  # the largest group first
        assert "page 1 of 2" in first.text and "sort=largest&amp;page=2" in first.text
        second = await bench.client.get("/console/queue?sort=largest&page=2")
        assert second.text.count('class="tile"') == 3
        assert "script-src 'self'" in first.headers["content-security-policy"]
        settings = await bench.client.get("/console/settings")
        r = await bench.client.post("/console/settings", data={
            "csrf": _csrf(settings.text), "blur": "80", "break_minutes": "30"})
        assert r.status_code == 200
        me = (await bench.client.get("/api/settings", headers=bench.auth("alice"))).json()
        assert me == {"blur": 80, "grey": False, "break_minutes": 30}
    finally:
        await bench.client.aclose()
        bench.rt.close()
        await server.close()


async def test_case_page_shows_the_rendered_notice(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The case page's notices come with their text as the notify stage renders it
    (``ntd_notice_text``)."""
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "resolve,route_inhope,recheck")
    server = LabWebServer({(HOST, "/n.jpg"): (jpeg_bytes(make_image(7)), "image/jpeg")})
    await server.start()
    bench = Bench(tmp_path, server)
    try:
        [case_id] = await bench.cases("/n.jpg")
        now = bench.rt.clock.now_text()
        bench.rt.store.queue_notice_actions([{
            "kind": "notice", "case_id": case_id, "reference": "R1", "action": "notice",
            "recipient_kind": "hosting", "recipient": "abuse@hoster.test", "channel": "email",
            "country": "DE", "language": "en", "deadline_hours": None, "url_count": 1,
            "entries": [{"url": "http://s.test/1", "classification": "baseline",
                         "detection_method": "hash_match", "first_seen": now,
                         "host": "s.test", "ip": None, "hashes": {}}]}], now=now)
        later = clock_after(now, 3600)
        assert bench.rt.store.aggregate_notices(now=later, window_seconds=900, max_urls=50,
                                                sendable=["email"])
        login = await bench.client.get("/console/login", headers={"accept": "text/html"})
        await bench.client.post("/console/login", data={
            "name": "alice", "password": "pw-pw-pw-pw", "csrf": _csrf(login.text)})
        page = await bench.client.get(f"/console/cases/{case_id}")
        assert "abuse@hoster.test" in page.text and 'class="notice-text"' in page.text
        # the rendered notice (subject and text), then the action's fields
        assert page.text.count('class="notice-text"') == 2
        rendered = page.text.split('class="notice-text"')[1].split("</pre>")[0]
        assert "http://s.test/1" in rendered and "entries:" not in rendered
    finally:
        await bench.client.aclose()
        bench.rt.close()
        await server.close()


def clock_after(now: str, seconds: float) -> str:
    return clock.fmt(clock.parse(now) + timedelta(seconds=seconds))


async def test_a_video_item_is_previewed_as_a_blurred_contact_sheet(tmp_path: Path) -> None:
    from engine.lab.videos import make_video

    server = LabWebServer({(HOST, "/v/1.mp4"): (make_video(3, seconds=4), "video/mp4")})
    await server.start()
    bench = Bench(tmp_path, server)
    try:
        [case_id] = await bench.cases("/v/1.mp4")
        assert bench.state(case_id) == "awaiting_assessment"
        item = bench.rt.store.get_case(case_id, events=False)["items"][0]
        assert item["content_type"] == "video/mp4" and item["hashes"].get("vpdq")
        url = f"/api/cases/{case_id}/items/0/preview"
        r = await bench.client.get(url, headers=bench.auth("alice"))
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.headers["cache-control"] == "no-store, private"
        sheet = Image.open(io.BytesIO(r.content))
        assert sheet.mode == "L" and max(sheet.size) == 256  # greyscale by default
        sharp = await bench.client.get(url + "?blur=0&grey=0", headers=bench.auth("alice"))
        assert laplacian_variance(r.content) < laplacian_variance(sharp.content)
        audit = [a for a in bench.rt.store.audit_log() if a["action"] == "view_media"]
        assert [a["object"] for a in audit] == [f"case:{case_id} item:0"] * 2
    finally:
        await bench.client.aclose()
        bench.rt.close()
        await server.close()
