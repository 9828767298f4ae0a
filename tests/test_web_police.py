"""The console's police page (role ``police``) and approvals page (admins), issue 21 items 1/3.

The real notify stage and sender run against the loopback SMTP sink with a fixed clock, so each
test sees what a decision in the console does to the mail that goes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.lab.smtp_sink import SMTPSink
from engine.runtime import Runtime
from engine.web import WebSettings, create_app
from engine.web.accounts import accounts
from engine.web.auth import new_token
from tests.test_notify import routed_case
from tests.test_takedown_controls import HOSTER, POLICE, drain, recipients, runtime, two_routes
from tests.test_web_api import FAST, PASSWORD, _csrf, attempt

pytestmark = pytest.mark.usefixtures("_stages_off")


@pytest.fixture
def _stages_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "fetch,hashmatch,recheck")


class Console:
    """An app over ``rt`` with one account per role and a browser per account."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.app = create_app(rt, WebSettings(secret=b"p" * 32))
        self.tokens: dict[str, str] = {}
        acc = accounts(rt.store)
        for name, role in (("liaison", "police"), ("alice", "analyst"), ("root", "admin")):
            uid = acc.add_user(name=name, password_hash=FAST.hash(PASSWORD), role=role,
                               country=None, now=rt.clock.now_text())
            token, digest = new_token()
            acc.add_token(user_id=uid, token_hash=digest, now=rt.clock.now_text())
            self.tokens[name] = token
        self.clients: list[httpx.AsyncClient] = []

    async def browser(self, name: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                   base_url="http://ntd.test", follow_redirects=False)
        self.clients.append(client)
        assert (await attempt(client, name, PASSWORD)).status_code == 303
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def sink() -> AsyncIterator[SMTPSink]:
    async with SMTPSink() as s:
        yield s


async def held_world(tmp_path: Path, sink: SMTPSink, urls: int = 1,
                     **notices: Any) -> tuple[Runtime, list[str]]:
    rt = runtime(tmp_path, sink.port, datetime(2026, 3, 3, 10, tzinfo=UTC),
                 routing={"police_first": "always"}, **notices)
    ids = [routed_case(rt, tmp_path, f"http://held{n}.test/p/1.html", two_routes(), n=n)
           for n in range(urls)]
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    await drain(rt)
    assert all(rt.store.get_case(i)["state"] == "held_for_police" for i in ids)
    assert recipients(sink) == [POLICE] * urls
    return rt, ids


def audit_actions(rt: Runtime) -> list[tuple[str, str, str]]:
    return [(a["actor"], a["action"], a["object"]) for a in rt.store.audit_log()]


async def test_police_liaison_releases_from_the_console(tmp_path: Path,
                                                        sink: SMTPSink) -> None:
    rt, (case_id,) = await held_world(tmp_path, sink)
    console = Console(rt)
    try:
        police = await console.browser("liaison")
        assert (await police.get("/console")).headers["location"] == "/console/police"
        listing = await police.get("/console/police")
        assert listing.status_code == 200
        assert case_id in listing.text and "http://held0.test/p/1.html" in listing.text
        assert HOSTER in listing.text  # whom the held notice is for
        release = await police.post(f"/console/police/{case_id}/release",
                                    data={"csrf": _csrf(listing.text), "note": "seized"})
        assert release.status_code == 303
        assert release.headers["location"] == \
            f"/console/police?done={case_id}&outcome=released"
        case = rt.store.get_case(case_id)
        assert case["state"] == "noticed" and case["retry_at"]
        event = [e for e in case["events"] if e["action"] == "police_released"][0]
        assert event["actor"] == "police:liaison" and event["detail"]["note"] == "seized"
        assert ("police:liaison", "police_released", f"case:{case_id}") in audit_actions(rt)
        await drain(rt)
        assert recipients(sink) == [HOSTER, POLICE]  # the held notice went out on release
        # A second decision on the same case is a conflict, not a second release.
        again = await police.post(f"/console/police/{case_id}/release",
                                  data={"csrf": _csrf(listing.text)})
        assert again.status_code == 409
    finally:
        await console.aclose()
        rt.close()


async def test_police_decline_needs_a_reason_and_closes_the_case(tmp_path: Path,
                                                                 sink: SMTPSink) -> None:
    rt, (case_id,) = await held_world(tmp_path, sink)
    console = Console(rt)
    try:
        police = await console.browser("liaison")
        token = _csrf((await police.get("/console/police")).text)
        blank = await police.post(f"/console/police/{case_id}/decline",
                                  data={"csrf": token, "reason": "  "})
        assert blank.status_code == 422
        assert rt.store.get_case(case_id)["state"] == "held_for_police"
        declined = await police.post(f"/console/police/{case_id}/decline",
                                     data={"csrf": token, "reason": "ongoing investigation"})
        assert declined.status_code == 303
        case = rt.store.get_case(case_id)
        assert case["state"] == "closed" and "ongoing investigation" in case["state_reason"]
        assert ("police:liaison", "police_declined", f"case:{case_id}") in audit_actions(rt)
        await drain(rt)
        assert recipients(sink) == [POLICE]  # nothing ever went to the hoster
        assert case_id not in (await police.get("/console/police")).text
    finally:
        await console.aclose()
        rt.close()


async def test_police_role_sees_nothing_else(tmp_path: Path, sink: SMTPSink) -> None:
    rt, (case_id,) = await held_world(tmp_path, sink)
    console = Console(rt)
    try:
        police = await console.browser("liaison")
        nav = (await police.get("/console/police")).text
        assert "/console/queue" not in nav and "/console/stats" not in nav
        for path in ("/console/queue", "/console/cases", f"/console/cases/{case_id}",
                     "/console/notices", "/console/stats", "/console/batch",
                     "/console/audit", "/console/approvals"):
            assert (await police.get(path)).status_code == 403, path
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=console.app),
                                base_url="http://ntd.test")
        console.clients.append(api)
        for path in ("/api/cases", f"/api/cases/{case_id}", "/api/stats", "/api/notices"):
            answer = await api.get(path, headers={
                "Authorization": f"Bearer {console.tokens['liaison']}"})
            assert answer.status_code == 403, path
        # ... and the police page is the liaison's alone.
        analyst = await console.browser("alice")
        assert (await analyst.get("/console/police")).status_code == 403
        token = _csrf((await analyst.get("/console/queue")).text)
        forged = await analyst.post(f"/console/police/{case_id}/release", data={"csrf": token})
        assert forged.status_code == 403
        assert rt.store.get_case(case_id)["state"] == "held_for_police"
    finally:
        await console.aclose()
        rt.close()


async def test_admin_approves_a_contact_from_the_console(tmp_path: Path,
                                                         sink: SMTPSink) -> None:
    rt = runtime(tmp_path, sink.port, datetime(2026, 3, 3, 10, tzinfo=UTC),
                 require_approval=True)
    routed_case(rt, tmp_path, "http://approve.test/p/1.html", two_routes())
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    await drain(rt)
    assert recipients(sink) == [POLICE]
    console = Console(rt)
    try:
        analyst = await console.browser("alice")
        assert (await analyst.get("/console/approvals")).status_code == 403
        admin = await console.browser("root")
        page = await admin.get("/console/approvals")
        assert page.status_code == 200 and HOSTER in page.text
        assert 'href="/console/approvals"' in page.text  # in the admin's navigation
        approve = await admin.post("/console/approvals", data={
            "csrf": _csrf(page.text), "address": HOSTER, "note": "checked by phone"})
        assert approve.status_code == 303
        assert approve.headers["location"] == "/console/approvals?done=abuse%40hoster.test&queued=1"
        assert rt.store.awaiting_approval() == []
        assert ("analyst:root", "contact_approved", HOSTER) in audit_actions(rt)
        await drain(rt)
        assert recipients(sink) == [HOSTER, POLICE]
        assert "No notice waits for approval" in (await admin.get("/console/approvals")).text
    finally:
        await console.aclose()
        rt.close()
