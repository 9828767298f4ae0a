"""Notice delivery: templates, X-ARF, SMTP via a real aiosmtpd sink, HTTP API, outbox, crashes."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web

import plugins.notify as notify
from engine.clock import Clock
from engine.errors import ConfigError
from engine.intake import submit_files
from engine.lab.smtp_sink import SMTPSink
from engine.models import Item, StageResult
from engine.runtime import Runtime
from engine.safe_fetch import FetchPolicy
from engine.store import Commit, open_store
from plugins.notify.api_channel import MAX_RESPONSE_BYTES, APIChannel
from plugins.notify.cli import contract_row
from plugins.notify.message import Prepared
from plugins.notify.render import Renderer, sample_context
from plugins.notify.sender import NoticeSender
from plugins.notify.xarf_schema import official_schema, validate_report
from tests.conftest import ROOT, ntd_env, wait_for

DISABLED = "fetch,hashmatch,resolve,route_inhope"
SECRETS = ("REPORTER-SECRET", "reporter-secret@example.org", "Analyst Secret-Name")
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF")


@pytest.fixture(autouse=True)
def _builtins_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", DISABLED)


def make_runtime(db: Path, port: int = 25, *, api_port: int | None = None,
                 **notices: Any) -> Runtime:
    """A runtime with the notify plugin; ``api_port``: a loopback API endpoint is allowed
    (the lab switch and that port, as the fetch rules require)."""
    settings = {"aggregate_minutes": 0.0, "retry_base_seconds": 0.01, "retry_jitter": 0.0,
                "hotline_name": "Test Hotline", "reply_to": "reply@hotline.test",
                "poll_seconds": 0.02, **notices}
    overrides: dict[str, dict[str, Any]] = {
        "smtp": {"host": "127.0.0.1", "port": port, "from_address": "notices@hotline.test"},
        "notices": settings, "pipeline": {"poll_seconds": 0.02}}
    if api_port is not None:
        overrides["lab"] = {"allow_private_networks": True}
        settings["api_allowed_ports"] = [api_port]
    return Runtime.open(db=str(db), extra_plugins=[("notify", notify)], overrides=overrides)


def routed_case(rt: Runtime, tmp_path: Path, url: str, routes: list[dict[str, Any]],
                n: int = 0) -> str:
    """A case in state ``routed`` with a matched media item, resolution and routes."""
    src = tmp_path / f"in{n}.ndjson"
    src.write_text(json.dumps({"url": url, "note": "REPORTER-SECRET note",
                               "reporter_email": "reporter-secret@example.org"}) + "\n")
    result = submit_files(rt.store, [str(src)], channel="webform", clock=rt.clock)
    case_id = rt.store.list_cases(state="new")[-1]["id"]
    assert result.accepted == 1
    owner = "test:1"
    assert rt.store.claim(["new"], limit=100, owner=owner, lease_seconds=60,
                          now=rt.clock.now_text())
    media = Item(url=url.rsplit("/", 1)[0] + f"/img{n}.jpg", kind="media", status=200,
                 content_type="image/jpeg",
                 hashes={"md5": "a" * 32, "sha1": "b" * 40, "sha256": "c" * 64,
                         "phash": "d" * 16, "pdq": "e" * 64},
                 matches=[{"list": "demo", "category": "baseline", "hash_type": "phash",
                           "distance": 0}])
    page = Item(url=url, kind="url", status=200, content_type="text/html",
                hashes={"sha256": "f" * 64})
    result_ = StageResult(
        state="routed", action="routed", items=[page, media],
        data={"routes": routes,
              "resolution": {"host": "x", "ips": ["192.0.2.7"], "asn": 64500, "country": "NL",
                             "registrar": {"name": "Example Registrar"}},
              "match": {"list": "demo", "category": "baseline"},
              "assessment": {"verdict": "illegal", "category": "baseline",
                             "by": "Analyst Secret-Name"},
              "reporter": {"email": "reporter-secret@example.org"}})
    rt.store.apply([Commit(case_id=case_id, owner=owner, stage="test", actor="test",
                           result=result_)], rt.clock.now_text())
    return case_id


def route(target: str, *, kind: str = "hosting", channel: str = "email", country: str = "NL",
          hours: int | None = 24) -> dict[str, Any]:
    return {"action": "notice", "recipient_kind": kind, "target": target, "channel": channel,
            "country": country, "deadline_hours": hours, "decided_by": "test:rule",
            "reason": "test"}


def assert_clean(data: bytes) -> None:
    """No reporter data and no image bytes anywhere in what went out."""
    for secret in SECRETS:
        assert secret.encode() not in data
    msg = email.message_from_bytes(data, policy=email.policy.default)
    for part in msg.walk():
        assert not part.get_content_type().startswith("image/")
        payload = part.get_payload(decode=True) or b""
        for magic in IMAGE_MAGIC:
            assert not payload.startswith(magic)
        for secret in SECRETS:
            assert secret.encode() not in payload


def xarf_parts(data: bytes) -> list[dict[str, Any]]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return [json.loads(p.get_payload(decode=True)) for p in msg.walk()
            if p.get_content_type() == "application/json"]


class ApiServer:
    """A loopback HTTP endpoint recording POSTs; answers from ``statuses`` then 201."""

    def __init__(self, statuses: list[int] | None = None, *,
                 headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.headers = headers or {}
        self.body = body
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 201,
                            headers=self.headers, body=self.body)

    async def __aenter__(self) -> ApiServer:
        app = web.Application()
        app.router.add_post("/abuse", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


# -- end to end through the pipeline ------------------------------------------------------------
async def test_notify_end_to_end_email_and_api(tmp_path: Path) -> None:
    async with SMTPSink() as sink, ApiServer() as api:
        rt = make_runtime(tmp_path / "ntd.db", sink.port, api_port=api.port)
        endpoint = f"http://127.0.0.1:{api.port}/abuse"
        c1 = routed_case(rt, tmp_path, "http://site-a.test/p/1.html",
                         [route("abuse@hoster.test"), route(endpoint, kind="cdn",
                                                            channel="api", country="US")], 1)
        c2 = routed_case(rt, tmp_path, "http://site-b.test/p/2.html",
                         [route("abuse@hoster.test", hours=48),
                          route("iccam", kind="hotline", channel="iccam", country="DE")], 2)
        summary = await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        assert summary.processed["notify"] == 2
        for case_id in (c1, c2):
            case = rt.store.get_case(case_id)
            assert case["state"] == "noticed" and case["retry_at"]
            assert "notice_sent" in [e["action"] for e in case["events"]]
        # Two cases for one e-mail recipient: one aggregated notice.
        assert len(sink.messages) == 1
        data = sink.messages[0].data
        assert_clean(data)
        msg = sink.messages[0].parsed()
        assert msg.get_content_type() == "multipart/mixed"  # X-ARF 4.2: JSON attachments
        assert msg["X-XARF"] is None
        assert msg["Subject"].startswith("Verwijderverzoek")  # NL recipient: Dutch
        types = [p.get_content_type() for p in msg.walk()]
        assert "text/plain" in types and "text/html" in types
        text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
        assert "http://site-a.test/p/1.html" in text and "http://site-b.test/p/2.html" in text
        assert "c" * 64 in text and "baseline" in text and "reply@hotline.test" in text
        reports = xarf_parts(data)
        assert len(reports) == 4  # two pages + two matched media URLs
        for report in reports:
            validate_report(report)
            assert report["type"] == "csam" and report["reporter"]["org"] == "Test Hotline"
        rows = {r["channel"]: contract_row(r) for r in rt.store.list_notices()}
        assert set(rows) == {"email", "api", "iccam"}
        assert rows["email"]["state"] == "sent" and sorted(rows["email"]["case_ids"]) == \
            sorted([c1, c2])
        assert msg["Message-ID"] == f"<{rows['email']['idempotency_key']}@hotline.test>"
        assert rows["iccam"]["state"] == "manual"  # an analyst forwards it in ICCAM
        # The API got the X-ARF array with the notice's idempotency key.
        assert len(api.requests) == 1
        headers, body = api.requests[0]
        assert headers["Idempotency-Key"] == rows["api"]["idempotency_key"]
        assert rows["api"]["state"] == "sent"
        for secret in SECRETS:
            assert secret.encode() not in body
        for report in json.loads(body):
            validate_report(report)
        rt.close()


# -- aggregation -------------------------------------------------------------------------------
def _action(i: int, recipient: str = "abuse@hoster.test", urls: int = 1) -> dict[str, Any]:
    return {"kind": "notice", "case_id": None, "reference": f"R{i}", "action": "notice",
            "recipient_kind": "hosting", "recipient": recipient, "channel": "email",
            "country": "DE", "language": "en", "deadline_hours": None,
            "entries": [{"url": f"http://s.test/{i}/{u}", "classification": "baseline",
                         "detection_method": "hash_match", "first_seen": "2026-01-01T00:00:00Z",
                         "host": "s.test", "ip": None, "hashes": {}} for u in range(urls)],
            "url_count": urls}


def test_aggregation_window_and_cap(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ntd.db"))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clock = Clock(fixed=t0)
    store.queue_notice_actions([_action(i) for i in range(5)]
                               + [_action(9, "abuse@other.test", urls=3)], now=clock.now_text())
    # Inside the 15-minute window nothing is due and nothing is aggregated.
    assert store.notice_work_due(now=clock.now_text(), window_seconds=900) == 0
    early = store.aggregate_notices(now=clock.now_text(), window_seconds=900, max_urls=2,
                                    sendable=["email"])
    # Full notices (2 URLs) may go early; the remainder waits for the window.
    assert len(early) == 3 and store.notice_counts() == {"queued": 3}  # 2+2 and 3 (one case)
    clock.advance(901)
    assert store.notice_work_due(now=clock.now_text(), window_seconds=900) == 4
    store.aggregate_notices(now=clock.now_text(), window_seconds=900, max_urls=2,
                            sendable=["email"])
    notices = store.list_notices()
    assert sorted(n["url_count"] for n in notices) == [1, 2, 2, 3]
    assert len({n["idempotency_key"] for n in notices}) == 4
    store.close()


# -- retries and permanent failures ------------------------------------------------------------
async def _drain_until(rt: Runtime, predicate: Any) -> None:
    ctx = rt.context()
    sender = NoticeSender.from_context(ctx)
    try:
        deadline = 200
        while not predicate() and deadline:
            await sender.drain_once()
            deadline -= 1
            if not predicate():
                await asyncio.sleep(0.01)  # the retry backoff is 10 ms
        assert predicate()
    finally:
        await sender.aclose()
        await ctx.aclose()


async def test_smtp_4xx_then_success(tmp_path: Path) -> None:
    async with SMTPSink(reply=lambda mid, n: "451 4.3.0 try later" if n == 1 else None) as sink:
        rt = make_runtime(tmp_path / "ntd.db", sink.port)
        routed_case(rt, tmp_path, "http://site-a.test/p/1.html", [route("abuse@h.test")])
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        await _drain_until(rt, lambda: rt.store.notice_counts() == {"sent": 1})
        (notice,) = rt.store.list_notices()
        assert notice["attempts"] == 2 and notice["error"] is None
        assert len(sink.refused) == 1 and len(sink.messages) == 1
        assert sink.refused[0][0] == sink.messages[0].message_id  # same notice, same id
        assert rt.store.contact_failures(["abuse@h.test"]) == {}
        rt.close()


async def test_smtp_5xx_is_permanent_and_marks_the_contact(tmp_path: Path) -> None:
    async with SMTPSink(reply=lambda mid, n: "550 5.1.1 no such user") as sink:
        rt = make_runtime(tmp_path / "ntd.db", sink.port)
        case_id = routed_case(rt, tmp_path, "http://site-a.test/p/1.html",
                              [route("abuse@gone.test")])
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        (notice,) = rt.store.list_notices()
        assert notice["state"] == "failed" and "550" in notice["error"]
        assert notice["attempts"] == 1 and len(sink.refused) == 1
        assert rt.store.contact_failures(["abuse@gone.test"]) == {"abuse@gone.test": 1}
        trail = [e["action"] for e in rt.store.get_case(case_id)["events"]]
        assert "notice_failed" in trail
        # An analyst fixes the address book and retries: the same notice goes again.
        assert rt.store.retry_notice(notice["id"], now=rt.clock.now_text())
        sink.reply = None
        await _drain_until(rt, lambda: rt.store.notice_counts() == {"sent": 1})
        assert sink.messages[0].message_id == sink.refused[0][0]
        rt.close()


# -- API channel (a loopback endpoint; the SSRF-safe client's rules) ------------------------------
def _prepared(key: str = "ntd-n1") -> Prepared:
    from plugins.notify.render import Rendered

    notice = {"id": "N1", "recipient": "cdn-x", "idempotency_key": key}
    return Prepared(notice=notice, rendered=Rendered(subject="s", text="t", html="h"),
                    reports=[{"url": "http://x.test/"}], message_id="<k@x>")


def _lab_policy(port: int, **kw: Any) -> FetchPolicy:
    return FetchPolicy(allow_private_networks=True, allowed_ports=frozenset({80, port}), **kw)


async def test_api_channel_statuses_and_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_X_TOKEN", "tok123")
    async with ApiServer(statuses=[503, 202, 409, 422]) as api:
        endpoint = f"http://api.cdn-x.test:{api.port}/abuse"
        channel = APIChannel({"cdn-x": {"endpoint": endpoint, "auth_env": "CDN_X_TOKEN"}},
                             timeout=5, policy=_lab_policy(
                                 api.port, static_hosts={"api.cdn-x.test": ["127.0.0.1"]}))
        outcomes = [await channel.send(_prepared()) for _ in range(4)]
    outcomes.append(await channel.send(_prepared()))  # the server is gone: connection refused
    assert [o.status for o in outcomes] == ["retry", "sent", "sent", "failed", "retry"]
    assert outcomes[3].blame_recipient and "422 Unprocessable" in outcomes[3].detail
    headers, body = api.requests[0]
    assert headers["Authorization"] == "Bearer tok123"
    assert headers["Idempotency-Key"] == "ntd-n1"
    assert headers["Host"] == f"api.cdn-x.test:{api.port}"
    assert json.loads(body) == [{"url": "http://x.test/"}]
    missing = await channel.send(Prepared(**{**_prepared().__dict__,
                                             "notice": {"id": "N2", "recipient": "nobody",
                                                        "idempotency_key": "k"}}))
    assert missing.status == "failed" and not missing.blame_recipient
    await channel.aclose()


async def test_api_channel_follows_the_fetch_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: the channel called httpx directly, so an endpoint on a private address (or
    one redirecting there) was reached, credential and all."""
    monkeypatch.setenv("CDN_X_TOKEN", "tok123")
    async with ApiServer() as api:
        entries = {"cdn-x": {"endpoint": f"http://127.0.0.1:{api.port}/abuse",
                             "auth_env": "CDN_X_TOKEN"},
                   "meta": {"endpoint": "http://169.254.169.254/latest/meta-data"},
                   "named": {"endpoint": f"http://abuse.evil.test:{api.port}/abuse"}}
        strict = APIChannel(entries, timeout=5, policy=FetchPolicy(
            allowed_ports=frozenset({80, api.port}),
            static_hosts={"abuse.evil.test": ["127.0.0.1"]}))
        for recipient in ("cdn-x", "meta", "named"):
            out = await strict.send(_prepared_to(recipient))
            assert out.status == "failed" and "refused" in out.detail, out
            assert out.blame_recipient
        assert api.requests == []  # nothing reached the loopback endpoint
        await strict.aclose()
        lab = APIChannel(entries, timeout=5, policy=_lab_policy(api.port))
        assert (await lab.send(_prepared_to("cdn-x"))).status == "sent"  # the lab switch
        meta = await lab.send(_prepared_to("meta"))  # metadata stays blocked even then
        assert meta.status == "failed" and "link-local" in meta.detail
        await lab.aclose()
    assert len(api.requests) == 1


async def test_api_channel_never_follows_a_redirect_and_caps_the_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_X_TOKEN", "tok123")
    async with ApiServer(statuses=[307], headers={"Location": "http://10.0.0.1/steal"}) as api:
        channel = APIChannel({"cdn-x": {"endpoint": f"http://127.0.0.1:{api.port}/abuse",
                                        "auth_env": "CDN_X_TOKEN"}},
                             timeout=5, policy=_lab_policy(api.port))
        out = await channel.send(_prepared_to("cdn-x"))
        assert out.status == "failed" and "http://10.0.0.1/steal" in out.detail
        assert "not followed" in out.detail and len(api.requests) == 1
        await channel.aclose()
    async with ApiServer(statuses=[400], body=b"x" * 5_000_000) as api:
        channel = APIChannel({}, timeout=5, policy=_lab_policy(api.port))
        fetcher = channel.client
        out = await channel.send(_prepared_to(f"http://127.0.0.1:{api.port}/abuse"))
        assert out.status == "failed" and out.detail.endswith("x" * 10)
        assert fetcher.stats.bytes <= MAX_RESPONSE_BYTES + 65_536  # the 5 MB answer was cut
        await channel.aclose()


def _prepared_to(recipient: str) -> Prepared:
    prepared = _prepared()
    return Prepared(**{**prepared.__dict__, "notice": {**prepared.notice,
                                                       "recipient": recipient}})


async def test_api_4xx_permanent_through_the_sender(tmp_path: Path) -> None:
    async with ApiServer(statuses=[404]) as api:
        rt = make_runtime(tmp_path / "ntd.db", api_port=api.port)
        endpoint = f"http://127.0.0.1:{api.port}/abuse"
        routed_case(rt, tmp_path, "http://site-a.test/p/1.html",
                    [route(endpoint, kind="platform", channel="api")])
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        (notice,) = rt.store.list_notices()
        assert notice["state"] == "failed" and "404" in notice["error"]
        assert rt.store.contact_failures([endpoint]) == {endpoint.lower(): 1}
        rt.close()


# -- dry run, templates, X-ARF schema ----------------------------------------------------------
async def test_dry_run_writes_eml_and_json(tmp_path: Path) -> None:
    out = tmp_path / "dry"
    rt = make_runtime(tmp_path / "ntd.db", mode="dry-run", dry_run_dir=str(out))
    routed_case(rt, tmp_path, "http://site-a.test/p/1.html",
                [route("abuse@h.test", country="US"), route("https://api.x.test/a",
                                                             channel="api")])
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert rt.store.notice_counts() == {"sent": 2}
    emls = list(out.glob("*.eml"))
    jsons = list(out.glob("*.json"))
    assert len(emls) == 1 and len(jsons) == 2
    data = emls[0].read_bytes()
    assert_clean(data)
    assert email.message_from_bytes(data)["Subject"].startswith("Removal request")
    for path in jsons:
        for report in json.loads(path.read_text())["xarf"]:
            validate_report(report)
    rt.close()


def test_every_builtin_template_renders() -> None:
    renderer = Renderer()
    assert renderer.validate() == 7 * 2 * 2
    html = renderer.render({**sample_context("police", "en"), "cases": [
        {"case_id": "C1", "reference": "R", "domain": "d",
         "entries": [{**sample_context("police", "en")["cases"][0]["entries"][0],
                      "url": "http://x.test/<script>"}]}]}).html
    assert "<script>" not in html and "&lt;script&gt;" in html  # autoescaped


def test_template_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "hosting").mkdir()
    (tmp_path / "hosting" / "en.txt.j2").write_text(
        '{% extends "_base/en.txt.j2" %}\n{% block subject %}S{% endblock %}\n'
        "{% block intro %}{{ notice.no_such_field }}{% endblock %}\n")
    with pytest.raises(ConfigError, match=r"hosting/en\.txt\.j2, line 3"):
        Renderer(tmp_path).validate()
    (tmp_path / "hosting" / "en.txt.j2").write_text("{% block subject %}\n{% if %}\n")
    with pytest.raises(ConfigError, match=r"hosting/en\.txt\.j2, line 2"):
        Renderer(tmp_path).validate()


def test_xarf_schema_rejects_bad_reports() -> None:
    jsonschema.Draft202012Validator.check_schema(official_schema())
    with pytest.raises(jsonschema.ValidationError):
        validate_report({"xarf_version": "4.0.0", "type": "csam"})


# -- kill -9 mid-batch, then restart -----------------------------------------------------------
def _plugin_path(tmp_path: Path) -> Path:
    """An entry point ``notify = plugins.notify.notifier`` for the child ``ntd`` process."""
    site = tmp_path / "site"
    dist = site / "ntd_notify_test-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ntd-notify-test\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[ntd.plugins]\nnotify = plugins.notify.notifier\n")
    return site


def _send(db: Path, config: Path, site: Path) -> subprocess.Popen[str]:
    env = ntd_env(site, NTD_DISABLE_PLUGINS=DISABLED)
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--db", str(db), "--config", str(config),
         "notices", "send", "--until-idle"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_batch_then_restart_delivers_each_notice_once(tmp_path: Path) -> None:
    n = 30
    db = tmp_path / "ntd.db"
    store = open_store(str(db))
    store.queue_notice_actions([_action(i, f"abuse@h{i}.test") for i in range(n)],
                               now=Clock().now_text())
    store.close()
    sink = SMTPSink(delay=0.05).start_in_thread()
    try:
        config = tmp_path / "ntd.toml"
        config.write_text(
            f'[smtp]\nhost = "127.0.0.1"\nport = {sink.port}\nconnections = 2\n'
            'from_address = "notices@hotline.test"\n'
            '[notices]\naggregate_minutes = 0.0\nbatch_size = 4\n')
        site = _plugin_path(tmp_path)
        proc = _send(db, config, site)
        try:
            wait_for(lambda: len(sink.messages) >= 8, timeout=60)
            assert proc.poll() is None, "the sender finished before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        partial = len(sink.messages)
        assert partial < n
        sink.delay = 0.0
        again = _send(db, config, site)
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
    finally:
        sink.stop()
    store = open_store(str(db))
    notices = store.list_notices()
    store.close()
    assert {r["state"] for r in notices} == {"sent"} and len(notices) == n
    expected = {f"<{r['idempotency_key']}@hotline.test>" for r in notices}
    received = sink.by_message_id()
    # Every notice arrived; a resend of one in flight at the kill carries the same Message-ID.
    assert set(received) == expected
    duplicates = sum(received.values()) - n
    assert 0 <= duplicates <= 4  # at most the batch that was in flight when killed
    assert all(r["attempts"] in (1, 2) for r in notices)


def test_a_notice_rendered_in_the_cpu_pool_equals_one_rendered_inline(
        tmp_path: Path) -> None:
    # ``ntd run`` renders notices in its process pool (off the event loop); a resend after a
    # crash may be rendered either way, so both must give the same message.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from plugins.notify.message import email_bytes, prepare, render_notice
    from plugins.notify.settings import notice_settings, smtp_settings

    rt = make_runtime(tmp_path / "ntd.db")
    rt.store.queue_notice_actions([_action(1, urls=2)], now=Clock().now_text())
    rt.store.aggregate_notices(now=Clock().now_text(), window_seconds=0.0, max_urls=50,
                               sendable=["email"])
    (notice,) = rt.store.claim_notices(owner="t", limit=1, now=Clock().now_text(),
                                       lease_seconds=60)
    settings, smtp = notice_settings(rt.config), smtp_settings(rt.config)
    inline = prepare(notice, Renderer(settings.template_dir), settings, smtp)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
        pooled = pool.submit(render_notice, notice, settings, smtp, None, True).result()
    def boundaryless(data: bytes | None) -> bytes:  # MIME boundaries are random per render
        import re
        return re.sub(rb"=+\d+==", b"BOUNDARY", data or b"")

    assert boundaryless(pooled.email) == boundaryless(email_bytes(inline, settings, smtp))
    assert b"Message-ID: " + inline.message_id.encode() in boundaryless(pooled.email)
    assert (pooled.rendered, pooled.reports) == (inline.rendered, inline.reports)
    rt.close()
