"""The web app through httpx's ASGI transport: API, problems, roles, form, console, privacy."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

import engine.cli.web  # noqa: F401  (registers serve, users, bench api until engine.cli does)
import engine.web.console as console_module
from engine import hookimpl
from engine.cli import cli
from engine.intake import submit_files
from engine.runtime import Runtime
from engine.web import WebSettings, create_app
from engine.web.accounts import accounts
from engine.web.auth import new_token
from engine.web.ratelimit import FingerprintLimiter, TokenBucket

# Cheap argon2 parameters for test accounts: verification reads the parameters from the hash.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"
CLIENT_IP = "203.0.113.77"
SECRET = b"s" * 32


class Recorder:
    """A plugin that records ``ntd_verdict_recorded`` calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def ntd_verdict_recorded(self, case: Any, verdict: str, category: str | None, learn: bool,
                             actor: str, store: Any, now: str) -> None:
        self.calls.append({"case": case.id, "verdict": verdict, "category": category,
                           "learn": learn, "actor": actor})


class World:
    """A runtime, the app, accounts with tokens, and an async client."""

    def __init__(self, tmp_path: Path, settings: WebSettings | None = None) -> None:
        self.recorder = Recorder()
        self.rt = Runtime.open(db=str(tmp_path / "ntd.db"),
                               extra_plugins=[("recorder", self.recorder)])
        self.settings = settings or WebSettings(secret=SECRET)
        self.app = create_app(self.rt, self.settings)
        self.acc = accounts(self.rt.store)
        self.tokens: dict[str, str] = {}
        for name, role, country in (("alice", "analyst", None), ("root", "admin", None),
                                    ("nl-partner", "partner", "NL"),
                                    ("de-partner", "partner", "DE")):
            uid = self.acc.add_user(name=name, password_hash=FAST.hash(PASSWORD), role=role,
                                    country=country, now=self.rt.clock.now_text())
            token, digest = new_token()
            self.acc.add_token(user_id=uid, token_hash=digest, now=self.rt.clock.now_text())
            self.tokens[name] = token
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(CLIENT_IP, 4242)),
            base_url="http://ntd.test", follow_redirects=False)

    def browser(self) -> httpx.AsyncClient:
        """Another browser (its own cookie jar) on the same app."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(CLIENT_IP, 4243)),
            base_url="http://ntd.test", follow_redirects=False)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def case(self, url: str, *, state: str | None = None,
             country: str | None = None) -> str:
        """A stored case, optionally moved to ``state`` with a resolution in ``country``."""
        from engine.web.intake_web import submit_webform

        case_id = submit_webform(self.rt.store, url, self.rt.clock).case_id
        if state:
            data = {"resolution": {"country": country, "contacts": []}} if country else None
            self.rt.store.transition(case_id, state=state, stage="test", actor="test",
                                     action="setup", now=self.rt.clock.now_text(), data=data)
        return case_id


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        await w.client.aclose()
        w.rt.close()


def assert_problem(resp: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["type"] == f"urn:ntd:problem:{kind}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == resp.request.url.path
    return body


# -- anonymous intake ---------------------------------------------------------------------------
async def test_healthz_and_openapi(world: World) -> None:
    resp = await world.client.get("/healthz")
    from engine.store.migrations import MIGRATIONS

    assert resp.json() == {"status": "ok", "schema_version": max(MIGRATIONS)}
    spec = (await world.client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {
        "/healthz", "/api/reports", "/api/batches", "/api/cases", "/api/cases/{case_id}",
        "/api/cases/{case_id}/verdict", "/api/queue", "/api/notices", "/api/stats",
        # the workbench (docs/workbench.md)
        "/api/cases/{case_id}/items/{n}/preview", "/api/verdicts",
        "/api/cases/{case_id}/verdict/undo", "/api/disputed", "/api/settings"}


async def test_post_report_stores_webform_case_without_reporter_data(
        world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    resp = await world.client.post("/api/reports", json={"url": "Example.COM/a/../b"},
                                   headers={"User-Agent": "secret-agent/1.0",
                                            "X-Forwarded-For": "198.51.100.9"})
    assert resp.status_code == 202 and resp.json() == {"received": True}
    assert "set-cookie" not in resp.headers
    form = await world.client.post("/api/reports", data={"url": "http://example.com/other"})
    assert form.status_code == 202
    [case, _] = world.rt.store.list_cases()
    assert case["canonical_url"] == "http://example.com/b"
    assert [r["channel"] for r in case["reports"]] == ["webform"]
    assert case["reports"][0]["metadata"] == {}
    # Nothing about the client anywhere: database file, WAL, logs.
    world.rt.store.conn.execute("PRAGMA wal_checkpoint(FULL)")
    for path in tmp_path.glob("ntd.db*"):
        raw = path.read_bytes()
        for secret in (CLIENT_IP, "198.51.100.9", "secret-agent"):
            assert secret.encode() not in raw, (path, secret)
    assert CLIENT_IP not in caplog.text and "198.51.100.9" not in caplog.text


@pytest.mark.parametrize(("body", "reason"), [
    ({"url": "javascript:alert(1)"}, "unsupported scheme"),
    ({"url": "http://user:pw@example.com/"}, "userinfo"),
    ({"url": ""}, "missing url"),
    ({"url": 42}, "missing url"),
    ({"link": "http://example.com/"}, "missing url"),
])
async def test_post_report_invalid_urls_are_problems_and_store_nothing(
        world: World, body: dict[str, Any], reason: str) -> None:
    resp = await world.client.post("/api/reports", json=body)
    problem = assert_problem(resp, 422, "invalid-url")
    assert reason in problem["detail"]
    assert world.rt.store.count_by_state() == {}


async def test_post_report_bad_bodies(world: World) -> None:
    assert_problem(await world.client.post("/api/reports", content=b"url=x",
                                           headers={"content-type": "text/plain"}),
                   415, "unsupported-media-type")
    assert_problem(await world.client.post("/api/reports", content=b"{nope",
                                           headers={"content-type": "application/json"}),
                   400, "bad-request")
    assert_problem(await world.client.post("/api/reports", json=["http://example.com/"]),
                   422, "invalid-input")
    big = json.dumps({"url": "http://example.com/" + "a" * 20_000})
    assert_problem(await world.client.post("/api/reports", content=big,
                                           headers={"content-type": "application/json"}),
                   413, "too-large")
    assert_problem(await world.client.get("/api/reports"), 405, "method-not-allowed")
    assert_problem(await world.client.get("/api/nothing"), 404, "not-found")
    assert world.rt.store.count_by_state() == {}


async def test_rate_limit_per_url_fingerprint(world: World) -> None:
    for _ in range(3):
        ok = await world.client.post("/api/reports", json={"url": "http://example.com/x"})
        assert ok.status_code == 202
    # The same URL, differently written, has the same fingerprint.
    resp = await world.client.post("/api/reports", json={"url": " HTTP://EXAMPLE.com/x/ "})
    problem = assert_problem(resp, 429, "rate-limited")
    assert problem["limit"] == "url"
    assert 0 < int(resp.headers["retry-after"]) <= 600
    other = await world.client.post("/api/reports", json={"url": "http://example.com/y"})
    assert other.status_code == 202
    [case_x, _] = world.rt.store.list_cases()
    assert len(case_x["reports"]) == 3


def test_fingerprint_limiter_forgets_old_windows_and_holds_no_urls() -> None:
    now = [1000.0]
    limiter = FingerprintLimiter(b"k" * 32, per_window=1, window_seconds=60,
                                 clock=lambda: now[0])
    assert limiter.hit("http://example.com/a") == 0.0
    assert limiter.hit("http://example.com/a") == pytest.approx(20.0)
    assert all(b"example" not in key for key in limiter._counts)
    now[0] += 60
    assert limiter.hit("http://example.com/a") == 0.0
    assert len(limiter) == 1


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2.0, clock=lambda: now[0])
    assert bucket.take() == 0.0 and bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() == 0.0


async def test_channel_rate_limit(tmp_path: Path) -> None:
    w = World(tmp_path, WebSettings(secret=SECRET, form_rate=0.001, form_burst=2))
    try:
        codes = [(await w.client.post("/api/reports",
                                      json={"url": f"http://example.com/{i}"})).status_code
                 for i in range(3)]
        assert codes == [202, 202, 429]
    finally:
        await w.client.aclose()
        w.rt.close()


# -- public form ---------------------------------------------------------------------------------
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


async def test_form_languages_headers_and_no_cookies(world: World) -> None:
    html = {"accept": "text/html"}
    en = await world.client.get("/", headers={**html, "accept-language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in en.text and "Your report is anonymous" in en.text
    nl = await world.client.get("/report", headers={**html, "accept-language": "fr, nl;q=0.5"})
    assert '<html lang="nl">' in nl.text and "Je melding is anoniem" in nl.text
    forced = await world.client.get("/report?lang=en", headers={**html,
                                                                  "accept-language": "nl"})
    assert "Send report" in forced.text
    for resp in (en, nl, forced):
        assert "set-cookie" not in resp.headers
        for name, value in SECURITY_HEADERS.items():
            assert value in resp.headers[name]
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
        assert "<script" not in resp.text
        # No third-party resources: every src/href is local.
        for ref in re.findall(r'(?:src|href)="([^"]+)"', resp.text):
            assert ref.startswith(("/", "#")), ref


async def test_form_submit_valid_invalid(world: World) -> None:
    html = {"accept": "text/html", "accept-language": "nl"}
    bad = await world.client.post("/report", data={"url": "ftp://example.com/x", "lang": "nl"},
                                  headers=html)
    assert bad.status_code == 422
    assert 'aria-invalid="true"' in bad.text and 'role="alert"' in bad.text
    assert "Alleen webadressen die beginnen met http:// of https://" in bad.text
    assert world.rt.store.count_by_state() == {}
    good = await world.client.post("/report", data={"url": "example.com/page", "lang": "en"},
                                   headers=html)
    assert good.status_code == 200 and "Thank you, your report was received" in good.text
    assert "set-cookie" not in good.headers
    assert world.rt.store.count_by_state() == {"new": 1}
    # A client that does not ask for HTML gets the RFC 9457 problem.
    api_style = await world.client.post("/report", data={"url": "mailto:x@example.com"})
    assert_problem(api_style, 422, "invalid-url")


# -- batches -------------------------------------------------------------------------------------
BATCH = "http://example.com/1\nnot a url at all\n\njavascript:alert(1)\nhttp://example.com/1\n"


async def test_batch_matches_ntd_submit_json(world: World, tmp_path: Path) -> None:
    resp = await world.client.post("/api/batches", content=BATCH.encode(),
                                   headers={**world.auth("alice"),
                                            "content-type": "text/plain"})
    assert resp.status_code == 201, resp.text
    got = resp.json()
    (tmp_path / "same.txt").write_text(BATCH)
    other = Runtime.open(db=str(tmp_path / "cli.db"))
    try:
        expected = submit_files(other.store, [str(tmp_path / "same.txt")]).to_dict()
    finally:
        other.close()
    assert {k: v for k, v in got.items() if k != "batch"} == \
        {k: v for k, v in expected.items() if k != "batch"}
    assert got["accepted"] == 1 and got["duplicates"] == 1
    assert [r["line"] for r in got["rejected"]] == [2, 4]


async def test_batch_ndjson_csv_and_unreadable_bodies(world: World) -> None:
    headers = world.auth("alice")
    nd = await world.client.post(
        "/api/batches", content=b'{"url": "http://a.example/1", "email": "x@y.z"}\n{"bad"\n',
        headers={**headers, "content-type": "application/x-ndjson"})
    assert nd.status_code == 201 and nd.json()["accepted"] == 1
    assert nd.json()["rejected"][0]["line"] == 2
    [case] = world.rt.store.list_cases()
    assert case["reports"][0]["metadata"] == {}  # personal field dropped, as in ntd submit
    before = world.rt.store.count_by_state()
    no_column = await world.client.post("/api/batches", content=b"link,x\nhttp://b.example,1\n",
                                        headers={**headers, "content-type": "text/csv"})
    assert "no 'url' column" in assert_problem(no_column, 422, "invalid-input")["detail"]
    latin1 = await world.client.post("/api/batches", content="http://é.example/\n".encode(
        "latin-1"), headers={**headers, "content-type": "text/plain"})
    body = assert_problem(latin1, 422, "invalid-input")
    assert body["rejected"] == [{"line": 1, "input": "http://\ufffd.example/",
                                 "reason": "not UTF-8 text (invalid continuation byte at byte 7)"}]
    assert_problem(await world.client.post("/api/batches", content=b"x",
                                           headers={**headers, "content-type": "image/png"}),
                   415, "unsupported-media-type")
    assert world.rt.store.count_by_state() == before  # nothing half-stored


HUGE_INT = '{"url": "http://a.example/huge", "n": ' + "1" * 5000 + "}"


async def test_hostile_json_bodies_answer_422_never_500(world: World) -> None:
    """Issue 17: a 5,000-digit integer or 10,000 nested '[' made every JSON endpoint answer 500
    (ValueError from the int-str limit, RecursionError from the decoder)."""
    json_type = {"content-type": "application/json"}
    for body in ("[" * 10_000, HUGE_INT, '{"url": "http://a.example/", "n": NaN}'):
        resp = await world.client.post("/api/reports", content=body, headers=json_type)
        assert_problem(resp, 422, "invalid-input")
    case_id = world.case("http://verdict.example/1", state="awaiting_assessment")
    for body in ('{"verdict": "illegal", "x": ' + "[" * 5000 + "}",
                 '{"verdict": "illegal", "n": ' + "9" * 5000 + "}"):
        resp = await world.client.post(f"/api/cases/{case_id}/verdict", content=body,
                                       headers={**world.auth("alice"), **json_type})
        assert_problem(resp, 422, "invalid-input")
    assert world.rt.store.get_case(case_id)["state"] == "awaiting_assessment"
    assert world.rt.store.count_by_state() == {"awaiting_assessment": 1}  # no report stored


async def test_batch_with_hostile_lines_stores_the_good_ones(world: World) -> None:
    headers = {**world.auth("alice"), "content-type": "application/x-ndjson"}
    body = "\n".join(['{"url": "http://a.example/1"}', HUGE_INT, "[" * 50_000,
                      '{"url": "http://a.example/2"}']) + "\n"
    resp = await world.client.post("/api/batches", content=body.encode(), headers=headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["accepted"] == 2
    assert [(r["line"], r["reason"].split(" (")[0]) for r in resp.json()["rejected"]] == [
        (2, "invalid JSON: number too long"), (3, "invalid JSON: nested deeper than 32 levels")]
    # Nothing storable: 422 with the line numbers, and no batch is stored.
    only_bad = await world.client.post("/api/batches", content=f"\n{HUGE_INT}\n".encode(),
                                       headers=headers)
    problem = assert_problem(only_bad, 422, "invalid-input")
    assert [r["line"] for r in problem["rejected"]] == [2]
    assert world.rt.store.count_by_state() == {"new": 2}


# -- authorisation -------------------------------------------------------------------------------
PROTECTED = [("GET", "/api/cases"), ("GET", "/api/cases/C0"), ("GET", "/api/queue"),
             ("GET", "/api/notices"), ("GET", "/api/stats"), ("POST", "/api/batches"),
             ("POST", "/api/cases/C0/verdict")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("header", [None, "Bearer ntd_wrong", "Basic YWxpY2U6cHc=", "Bearer "])
async def test_no_or_wrong_token_is_401(world: World, method: str, path: str,
                                        header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    resp = await world.client.request(method, path, headers=headers)
    assert_problem(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_role_matrix(world: World) -> None:
    queued = world.case("http://q.example/1", state="awaiting_assessment")
    nl_case = world.case("http://nl.example/1", state="routed", country="NL")
    de_case = world.case("http://de.example/1", state="routed", country="DE")
    for name in ("alice", "root"):
        ids = {c["id"] for c in (await world.client.get("/api/cases",
                                                        headers=world.auth(name))).json()["cases"]}
        assert ids == {queued, nl_case, de_case}
        for path in ("/api/queue", "/api/notices", "/api/stats", f"/api/cases/{de_case}"):
            assert (await world.client.get(path, headers=world.auth(name))).status_code == 200
    partner = world.auth("nl-partner")
    listed = (await world.client.get("/api/cases", headers=partner)).json()["cases"]
    assert [c["id"] for c in listed] == [nl_case]
    assert (await world.client.get(f"/api/cases/{nl_case}", headers=partner)).status_code == 200
    # Another country's case looks like no case at all (no existence oracle).
    assert_problem(await world.client.get(f"/api/cases/{de_case}", headers=partner),
                   404, "not-found")
    assert_problem(await world.client.get(f"/api/cases/{queued}", headers=partner),
                   404, "not-found")
    assert (await world.client.get("/api/stats", headers=partner)).status_code == 200
    for method, path in (("GET", "/api/queue"), ("GET", "/api/notices"),
                         ("POST", "/api/batches"), ("POST", f"/api/cases/{queued}/verdict")):
        assert_problem(await world.client.request(method, path, headers=partner),
                       403, "forbidden")
    de_list = (await world.client.get("/api/cases",
                                      headers=world.auth("de-partner"))).json()["cases"]
    assert [c["id"] for c in de_list] == [de_case]
    assert any(e["actor"] == "partner:nl-partner" and e["action"] == "view_denied"
               and e["object"] == f"case:{de_case}" for e in world.rt.store.audit_log())


async def test_removed_account_token_stops_working(world: World) -> None:
    assert (await world.client.get("/api/cases", headers=world.auth("alice"))).status_code == 200
    assert world.acc.remove_user("alice")
    assert_problem(await world.client.get("/api/cases", headers=world.auth("alice")),
                   401, "unauthorized")


# -- cases, verdicts -----------------------------------------------------------------------------
async def test_case_view_has_trail_and_is_audited(world: World) -> None:
    case_id = world.case("http://view.example/1")
    resp = await world.client.get(f"/api/cases/{case_id}", headers=world.auth("alice"))
    assert resp.status_code == 200
    assert [e["action"] for e in resp.json()["events"]] == ["created"]
    views = [e for e in world.rt.store.audit_log() if e["action"] == "view"]
    assert views[-1]["actor"] == "analyst:alice" and views[-1]["object"] == f"case:{case_id}"
    assert_problem(await world.client.get("/api/cases/C_missing", headers=world.auth("alice")),
                   404, "not-found")


async def test_verdict_same_semantics_as_cli(world: World) -> None:
    case_id = world.case("http://assess.example/1", state="awaiting_assessment")
    queue = (await world.client.get("/api/queue", headers=world.auth("alice"))).json()
    assert [c["id"] for c in queue["cases"]] == [case_id]
    url = f"/api/cases/{case_id}/verdict"
    body = {"verdict": "illegal", "category": "baseline", "note": "clear", "learn": True}
    resp = await world.client.post(url, json=body, headers=world.auth("alice"))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": case_id, "state": "confirmed", "verdict": "illegal",
                           "actor": "analyst:alice"}
    case = world.rt.store.get_case(case_id)
    assert case is not None and case["state"] == "confirmed"
    assert case["assessment"]["by"] == "analyst:alice"
    event = case["events"][-1]
    assert (event["stage"], event["action"], event["actor"]) == \
        ("assessment", "verdict", "analyst:alice")
    assert event["detail"] == {"verdict": "illegal", "learn": True, "category": "baseline",
                               "note": "clear"}
    assert world.recorder.calls == [{"case": case_id, "verdict": "illegal",
                                     "category": "baseline", "learn": True,
                                     "actor": "analyst:alice"}]
    again = await world.client.post(url, json=body, headers=world.auth("root"))
    assert "confirmed" in assert_problem(again, 409, "conflict")["detail"]
    assert len(world.recorder.calls) == 1


@pytest.mark.parametrize(("body", "status", "kind"), [
    ({"verdict": "maybe"}, 422, "invalid-input"),
    ({}, 422, "invalid-input"),
    ({"verdict": "illegal", "learn": "yes"}, 422, "invalid-input"),
    ({"verdict": "illegal", "category": ""}, 422, "invalid-input"),
    ({"verdict": "illegal", "extra": 1}, 422, "invalid-input"),
    ([1, 2], 422, "invalid-input"),
])
async def test_verdict_bad_input(world: World, body: Any, status: int, kind: str) -> None:
    case_id = world.case("http://bad-verdict.example/1", state="awaiting_assessment")
    resp = await world.client.post(f"/api/cases/{case_id}/verdict", json=body,
                                   headers=world.auth("alice"))
    assert_problem(resp, status, kind)
    assert world.rt.store.get_case(case_id)["state"] == "awaiting_assessment"  # type: ignore


async def test_verdict_unknown_case_and_wrong_type(world: World) -> None:
    headers = world.auth("alice")
    assert_problem(await world.client.post("/api/cases/Cnope/verdict",
                                           json={"verdict": "illegal"}, headers=headers),
                   404, "not-found")
    assert_problem(await world.client.post("/api/cases/Cnope/verdict", content=b"verdict=x",
                                           headers={**headers,
                                                    "content-type": "text/plain"}),
                   415, "unsupported-media-type")


async def test_listing_parameters_and_stats(world: World) -> None:
    headers = world.auth("alice")
    for i in range(3):
        world.case(f"http://list.example/{i}")
    page = (await world.client.get("/api/cases?limit=2&offset=1", headers=headers)).json()
    assert len(page["cases"]) == 2 and page["offset"] == 1
    assert_problem(await world.client.get("/api/cases?state=bogus", headers=headers),
                   422, "invalid-input")
    assert_problem(await world.client.get("/api/cases?limit=0", headers=headers),
                   422, "invalid-input")
    assert_problem(await world.client.get("/api/queue?limit=x", headers=headers),
                   422, "invalid-input")
    notices = (await world.client.get("/api/notices?state=failed", headers=headers)).json()
    assert notices["notices"] == []
    stats = (await world.client.get("/api/stats", headers=headers)).json()
    assert stats["reports"] == 3
    bad = await world.client.get("/api/stats?from=2026-02-30", headers=headers)
    assert "not a date" in assert_problem(bad, 422, "invalid-input")["detail"]


# -- console -------------------------------------------------------------------------------------
def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


async def attempt(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    """One sign-in through the form (fetching it first, as a browser does)."""
    page = await client.get("/console/login", headers={"accept": "text/html"})
    assert page.status_code == 200
    return await client.post("/console/login", data={"name": name, "password": password,
                                                      "csrf": _csrf(page.text)})


async def sign_in(world: World, name: str,
                  client: httpx.AsyncClient | None = None) -> httpx.AsyncClient:
    client = client or world.client
    resp = await attempt(client, name, PASSWORD)
    assert resp.status_code == 303, resp.text
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    return client


async def test_console_sign_in_and_csrf(world: World) -> None:
    assert (await world.client.get("/console/queue")).headers["location"] == \
        "/console/login?next=/console/queue"
    page = await world.client.get("/console/login")
    no_csrf = await world.client.post("/console/login", data={"name": "alice",
                                                              "password": PASSWORD})
    assert_problem(no_csrf, 403, "forbidden")
    wrong = await world.client.post("/console/login", data={
        "name": "alice", "password": "wrong password!", "csrf": _csrf(page.text)})
    assert wrong.status_code == 401 and "Wrong account name or password" in wrong.text
    await sign_in(world, "alice")
    queue = await world.client.get("/console/queue")
    assert queue.status_code == 200 and "Assessment queue" in queue.text
    # State-changing console forms need the session's CSRF token and a same-origin Origin.
    case_id = world.case("http://console.example/1", state="awaiting_assessment")
    url = f"/console/cases/{case_id}/verdict"
    assert_problem(await world.client.post(url, data={"verdict": "illegal"}), 403, "forbidden")
    token = _csrf((await world.client.get("/console/queue")).text)
    cross = await world.client.post(url, data={"verdict": "illegal", "csrf": token},
                                    headers={"origin": "https://evil.example"})
    assert_problem(cross, 403, "forbidden")
    assert world.rt.store.get_case(case_id)["state"] == "awaiting_assessment"  # type: ignore
    ok = await world.client.post(url, data={"verdict": "not_illegal", "csrf": token,
                                            "back": "queue", "category": ""})
    assert ok.status_code == 303 and ok.headers["location"] == f"/console/queue?done={case_id}"
    assert world.rt.store.get_case(case_id)["state"] == "dismissed"  # type: ignore
    assert world.recorder.calls[-1]["actor"] == "analyst:alice"
    out = await world.client.post("/console/logout", data={"csrf": token})
    assert out.status_code == 303 and 'ntd_session=""' in out.headers["set-cookie"]


# -- sessions and sign-in (issue 17, item 6) ----------------------------------------------------
async def test_sign_out_ends_the_session_at_once_everywhere(world: World) -> None:
    await sign_in(world, "alice")
    cookie = world.client.cookies["ntd_session"]
    token = _csrf((await world.client.get("/console/queue")).text)
    assert (await world.client.post("/console/logout", data={"csrf": token})).status_code == 303
    replay = world.browser()  # the old cookie, copied before sign-out
    other = World.__new__(World)  # a second server process on the same database
    other.app = create_app(world.rt, WebSettings(secret=SECRET))
    replay_other = World.browser(other)
    try:
        for client in (replay, replay_other):
            client.cookies.set("ntd_session", cookie, domain="ntd.test", path="/console")
            resp = await client.get("/console/queue")
            assert resp.status_code == 303 and resp.headers["location"].startswith(
                "/console/login")
            assert_problem(await client.post("/console/logout", data={"csrf": token}), 401,
                           "unauthorized")
    finally:
        await replay.aclose()
        await replay_other.aclose()
    actions = [e["action"] for e in world.rt.store.audit_log() if e["action"] != "view_queue"]
    assert actions[-2:] == ["sign_in", "sign_out"]  # (queue views are audited too)


async def test_password_change_ends_every_session_of_the_account(world: World) -> None:
    await sign_in(world, "alice")
    second = await sign_in(world, "alice", world.browser())
    bob = await sign_in(world, "root", world.browser())
    try:
        assert (await second.get("/console/queue")).status_code == 200
        changed = CliRunner().invoke(cli, ["--db", str(world.rt.store.path), "users", "passwd",
                                           "alice", "--password-stdin"],
                                     input="a new password 42\n")
        assert changed.exit_code == 0 and "sessions have ended" in changed.output
        for client in (world.client, second):
            assert (await client.get("/console/queue")).status_code == 303
        assert (await bob.get("/console/queue")).status_code == 200  # other accounts go on
    finally:
        await second.aclose()
        await bob.aclose()


class FakeTime:
    """The throttle's clock and the handler's sleep: sleeping advances the clock, nothing
    really waits, and every requested delay is recorded."""

    def __init__(self, *, advance: bool) -> None:
        self.now = 1000.0
        self.advance = advance  # False: concurrent attempts all arrive at the same moment
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advance:
            self.now += seconds


def fake_time(world: World, *, advance: bool = True, **throttle: Any) -> FakeTime:
    from engine.web.signin import SignInThrottle

    fake = FakeTime(advance=advance)
    st = world.app.state.ntd
    st.signin = SignInThrottle(clock=fake.clock, **throttle)
    st.sleep = fake.sleep
    return fake


async def test_wrong_passwords_slow_down_but_never_lock_out_the_account(world: World) -> None:
    """Five wrong passwords used to lock a named analyst out: anyone could lock out anyone."""
    fake = fake_time(world, base_delay=0.5, max_delay=10.0, free=3)
    stranger = world.browser()
    new_browser = world.browser()
    try:
        for _ in range(12):
            assert (await attempt(stranger, "alice", "not her password")).status_code == 401
        assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]  # grows, capped
        fake.sleeps.clear()
        # The real analyst, in a browser that never signed in before, still gets in: slowed by
        # the stranger's failures, but only by the capped delay.
        assert (await attempt(new_browser, "alice", PASSWORD)).status_code == 303
        assert fake.sleeps == [10.0]
        # Back in that browser the next day (its session over, its device cookie kept): the
        # stranger's failures do not apply to it.
        new_browser.cookies.delete("ntd_session")
        for _ in range(5):
            assert (await attempt(stranger, "alice", "still not it")).status_code == 401
        fake.sleeps.clear()
        assert (await attempt(new_browser, "alice", PASSWORD)).status_code == 303
        assert fake.sleeps == []
    finally:
        await stranger.aclose()
        await new_browser.aclose()


async def test_parallel_guesses_are_spaced_and_a_known_browser_skips_the_queue(
        world: World) -> None:
    import asyncio

    fake_time(world, advance=False, base_delay=1.0, max_delay=4.0, free=0)
    await sign_in(world, "alice")  # leaves this browser's device cookie
    await world.client.post("/console/logout",
                            data={"csrf": _csrf((await world.client.get("/console/queue")).text)})
    checked: list[str] = []
    real_verify = console_module.verify_password

    def counting(stored: str | None, password: str) -> bool:
        checked.append(password)
        return real_verify(stored, password)

    console_module.verify_password = counting  # type: ignore[assignment]
    strangers = [world.browser() for _ in range(8)]
    try:
        answers = await asyncio.gather(*(attempt(c, "alice", f"guess {i}")
                                         for i, c in enumerate(strangers)))
        codes = sorted(r.status_code for r in answers)
        assert 429 in codes and set(codes) <= {401, 429}
        refused = [r for r in answers if r.status_code == 429]
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert len(checked) == codes.count(401)  # a refused guess checks no password
        assert (await attempt(world.client, "alice", PASSWORD)).status_code == 303
    finally:
        console_module.verify_password = real_verify  # type: ignore[assignment]
        for c in strangers:
            await c.aclose()


async def test_concurrent_sign_ins_queue_for_argon2(tmp_path: Path) -> None:
    """120 concurrent sign-ins ran 40 argon2 verifications at once (64 MiB each by default:
    182 MB -> 2.59 GB); now at most ``login_concurrency`` run, the rest wait their turn."""
    import asyncio
    import threading

    w = World(tmp_path, WebSettings(secret=SECRET, login_concurrency=2,
                                    login_delay_seconds=0.0))
    costly = PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1)  # real work, 8 MiB
    w.acc.set_password_hash("alice", costly.hash(PASSWORD))
    lock = threading.Lock()
    active = [0, 0]  # now, peak
    real_verify = console_module.verify_password

    def tracked(stored: str | None, password: str) -> bool:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        try:
            return real_verify(stored, password)
        finally:
            with lock:
                active[0] -= 1

    console_module.verify_password = tracked  # type: ignore[assignment]
    browsers = [w.browser() for _ in range(120)]
    try:
        answers = await asyncio.gather(*(attempt(b, "alice", PASSWORD if i % 2 else "wrong one")
                                         for i, b in enumerate(browsers)))
        assert sorted({r.status_code for r in answers}) == [303, 401]
        assert active[1] <= 2
    finally:
        console_module.verify_password = real_verify  # type: ignore[assignment]
        for b in browsers:
            await b.aclose()
        await w.client.aclose()
        w.rt.close()


async def test_console_pages_never_show_media_and_audit_views(world: World) -> None:
    case_id = world.case("http://media.example/page", state="awaiting_assessment")
    await sign_in(world, "root")
    for path in ("/console/queue", "/console/cases", f"/console/cases/{case_id}",
                 "/console/notices", "/console/batch", "/console/audit"):
        resp = await world.client.get(path)
        assert resp.status_code == 200, (path, resp.text)
        assert "<img" not in resp.text and "media.example/page\"" not in resp.text
        assert "set-cookie" not in resp.headers
    assert any(e["action"] == "view" and e["actor"] == "analyst:root"
               and e["object"] == f"case:{case_id}" for e in world.rt.store.audit_log())


async def test_console_partner_restrictions(world: World) -> None:
    de_case = world.case("http://de.example/2", state="routed", country="DE")
    await sign_in(world, "nl-partner")
    assert (await world.client.get("/console")).headers["location"] == "/console/cases"
    assert "de.example" not in (await world.client.get("/console/cases")).text
    assert (await world.client.get(f"/console/cases/{de_case}",
                                   headers={"accept": "text/html"})).status_code == 404
    for path in ("/console/queue", "/console/notices", "/console/audit", "/console/batch"):
        assert (await world.client.get(path)).status_code == 403


async def test_console_batch_and_stats_charts(world: World) -> None:
    await sign_in(world, "alice")
    token = _csrf((await world.client.get("/console/batch")).text)
    resp = await world.client.post("/console/batch", data={
        "urls": "http://one.example/\nfile:///etc/passwd\n", "csrf": token})
    assert resp.status_code == 200 and "1 accepted" in resp.text and "line 2" in resp.text
    stats = await world.client.get("/console/stats")
    assert stats.status_code == 200
    assert "removed cases only" in stats.text and "noticed cases" in stats.text
    srcs = re.findall(r'<img src="([^"]+)"', stats.text)
    assert len(srcs) == 4
    png = await world.client.get(srcs[0])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")


async def test_secure_cookies_under_https(tmp_path: Path) -> None:
    w = World(tmp_path, WebSettings(secret=SECRET, https=True))
    try:
        page = await w.client.get("/console/login")
        assert "Secure" in page.headers["set-cookie"]
        assert page.headers["strict-transport-security"].startswith("max-age=")
    finally:
        await w.client.aclose()
        w.rt.close()


# -- command line --------------------------------------------------------------------------------
def test_users_cli(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db, "db", "migrate"]).exit_code == 0
    add = runner.invoke(cli, ["--db", db, "users", "add", "eve", "--role", "partner",
                              "--country", "be", "--password-stdin", "--json"],
                        input="a long enough password\n")
    assert add.exit_code == 0, add.output
    assert json.loads(add.output)["country"] == "BE"
    token = runner.invoke(cli, ["--db", db, "users", "token", "eve", "--json"])
    assert json.loads(token.output)["token"].startswith("ntd_")
    listed = json.loads(runner.invoke(cli, ["--db", db, "users", "ls", "--json"]).output)
    assert [(u["name"], u["role"], u["tokens"]) for u in listed] == [("eve", "partner", 1)]
    assert "password_hash" not in listed[0]
    short = runner.invoke(cli, ["--db", db, "users", "add", "x", "--role", "analyst",
                                "--password-stdin"], input="short\n")
    assert short.exit_code != 0
    assert runner.invoke(cli, ["--db", db, "users", "rm", "eve"]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["--db", db, "users", "ls", "--json"]).output) == []
