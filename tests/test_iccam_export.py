"""Export to ICCAM over mutual TLS: our report, every action type, ICCAM's order, moves,
retries and refusals — all against the loopback fake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import clock
from engine import iccam_v3 as v3
from engine.lab.iccam_fake import FakeICCAM
from engine.models import Item
from engine.notice_content import build_action
from engine.runtime import Runtime
from engine.testing import contact, resolution
from plugins.iccam.cli import run_sync
from tests.iccam_lab import (
    PKI,
    our_case,
    page_report,
    running,
    runtime,
    send_notice,
    set_case,
)

pytestmark = pytest.mark.usefixtures("iccam_password")

T0 = "2026-03-02T09:00:00.000000Z"


def at(hours: float) -> str:
    return clock.fmt(clock.parse(T0) + timedelta(hours=hours))


async def _sync(rt: Runtime, **kw: bool) -> dict[str, Any]:
    return await run_sync(rt, do_import=kw.get("do_import", True),
                          do_export=kw.get("do_export", True))


def _order(fake: FakeICCAM, content_id: int) -> list[str]:
    """What ICCAM accepted for one content item, in order."""
    out = []
    for r in fake.requests:
        parts = r.path.split("/")
        if r.status != 200 or len(parts) < 4 or parts[2] != str(content_id):
            continue
        if parts[3] == "actions":
            out.append(v3.ACTION_TYPES[r.body["actionType"]])
        elif parts[3] in ("assessment", "url", "assigned-country"):
            out.append({"assessment": "assessment", "url": "hosting",
                        "assigned-country": "assign"}[parts[3]])
    return out


# -- our report -------------------------------------------------------------------------------
def _forwarded_case(rt: Runtime, *, country: str = "DE") -> str:
    page = "http://hoster.example.test/page/7.html"
    items = [Item(url=page, kind="url", status=200, content_type="text/html",
                  hashes={"sha256": "aa" * 32}),
             Item(url="http://hoster.example.test/media/7-a.jpg", kind="media", status=200,
                  content_type="image/jpeg", hashes={"sha256": "bb" * 32},
                  matches=[{"list": "national", "category": "national", "hash_type": "sha256",
                            "distance": 0, "negative": False}]),
             Item(url="http://cdn.elsewhere.example.test/b.jpg", kind="media", status=200,
                  content_type="image/jpeg", hashes={"sha256": "cc" * 32},
                  matches=[{"list": "national", "category": "baseline", "hash_type": "sha256",
                            "distance": 0, "negative": False}]),
             Item(url="http://hoster.example.test/logo.png", kind="media", status=200,
                  content_type="image/png", hashes={"sha256": "dd" * 32})]
    res = resolution(host="hoster.example.test", country=country, ips=("198.51.100.7",),
                     asn=64501, org="Beispiel Hosting GmbH",
                     contacts=[contact("hosting", "abuse@hoster.example.test")])
    route = {"action": "forward", "recipient_kind": "hotline", "target": f"iccam:{country}",
             "channel": "iccam", "country": country, "deadline_hours": 72,
             "decided_by": "route_inhope:hotline-forward", "reason": "test"}
    case_id = our_case(rt.store, page, now=T0, items=items, resolution=res, routes=[route])
    case = rt.store.load_case(case_id)
    rt.store.queue_notice_actions([build_action(case, route, reference_prefix="LAB")],
                                  now=T0)
    return case_id


async def _send_notices(rt: Runtime) -> None:
    from plugins.notify.cli import send_notices

    await send_notices(rt, flush=True, until_idle=False)


async def test_a_forward_becomes_our_iccam_report(tmp_path: Path, pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            case_id = _forwarded_case(rt)
            await _send_notices(rt)
            [notice] = rt.store.list_notices()
            assert (notice["channel"], notice["state"]) == ("iccam", "sent")
            assert "ICCAM outbox" in notice["receipt"]
            result = await _sync(rt)
            assert result["reports_created"] == 1 and result["errors"] == []
            [post] = fake.successful("POST", "rest/reports")
            body = post.body
            assert body["reportingAnalystName"] == "ntd-api"
            assert body["hotlineReceivedDate"].endswith("Z")
            assert body["hotlineReference"] == f"NTD-{case_id}"
            assert body["sourceUrlSiteType"] == v3.SITE_WEBSITE
            page, media = body["urls"]  # the other host's media and the unmatched logo stay out
            assert page["urlString"] == "http://hoster.example.test/page/7.html"
            assert (page["isSourceUrl"], page["contentType"]) == (True, v3.CONTENT_WEBSITE)
            assert media["urlString"] == "http://hoster.example.test/media/7-a.jpg"
            assert (media["isSourceUrl"], media["contentType"]) == (False, v3.CONTENT_MEDIA)
            assert media["assessment"]["classification"] == v3.NATIONAL
            for u in (page, media):
                assert u["hostingCountryCode"] == "DE"
                assert u["hostingIpAddress"] == "198.51.100.7"
                assert u["hostingIsp"] == "Beispiel Hosting GmbH"
                assert u["hostingOrganization"] == {"organizationName": "Beispiel Hosting GmbH"}
                assert u["autonomousSystemNumber"] == "64501"
                assert u["isContentDeliveryNetwork"] is False
                assert u["actions"] == []
            assert isinstance(body["sourceUrlPaymentMethods"][0], int)
            # The ids ICCAM gave are stored on the case.
            report_id = post_answer = int(next(iter(fake.reports)))
            links = rt.store.iccam_case(case_id)["items"]
            assert {i["report_id"] for i in links} == {post_answer}
            assert sorted(i["content_id"] for i in links) == [
                c["contentId"] for c in fake.reports[report_id]["reportContents"]]
            assert {i["assigned_country"] for i in links} == {"DE"}
            # Assigned to the German hotline: our later notice to the hoster is theirs to record.
            send_notice(rt.store, case_id, kind="hosting", now=at(73))
            again = await _sync(rt)
            assert again["actions_sent"] == 0 and fake.received_actions() == []
            # A resent notice queues nothing twice.
            assert not rt.store.iccam_queue_report(case_id, at(74), {})


async def test_content_iccam_assigned_to_us_though_hosted_abroad_is_moved(
        tmp_path: Path, pki: PKI) -> None:
    async with running(pki, members=frozenset({"NL"})) as fake:  # DE: no member hotline
        with runtime(tmp_path, fake, pki) as rt:
            case_id = _forwarded_case(rt)
            await _send_notices(rt)
            result = await _sync(rt)
            assert result["reports_created"] == 1
            assert result["actions_sent"] == 4  # hosting + re-assignment for page and media
            for link in rt.store.iccam_case(case_id)["items"]:
                content = fake.contents[link["content_id"]]
                assert _order(fake, link["content_id"]) == ["hosting", "assign"]
                assert content["assignedCountryCode"] == "DE"
                assert content["url"]["hostingCountryCode"] == "DE"
                assert link["assigned_country"] == "DE"


# -- actions on content assigned to us ----------------------------------------------------------
async def _imported(rt: Runtime, fake: FakeICCAM, host: str, **kw: Any) -> tuple[str, list[int]]:
    _, ids = fake.add_partner_report(urls=page_report(host, **kw))
    await _sync(rt, do_export=False)
    case_id = next(c["id"] for c in rt.store.list_cases()
                   if c["url"].startswith(f"http://{host}/"))
    return case_id, ids


async def test_every_action_type_in_iccams_order(tmp_path: Path, pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            nl = resolution(host="removed.example.test", country="NL")
            # The partner said National for the page (we may overrule it: Baseline) and Baseline
            # for the media (not editable: no assessment of ours).
            removed, removed_ids = await _imported(rt, fake, "removed.example.test",
                                                   page_class=2, media_class=1, n_media=2)
            # Our hoster notice, then our police report, then removal confirmed by the re-check.
            send_notice(rt.store, removed, kind="hosting", now=at(1))
            send_notice(rt.store, removed, kind="police", now=at(2))
            set_case(rt.store, removed, state="closed", now=at(30), resolution=nl,
                     assessment={"verdict": "illegal", "category": "baseline",
                                 "by": "analyst:a", "at": at(0.5)},
                     monitoring={"removed_at": at(29)})
            # Not illegal in our analyst's view.
            benign, benign_ids = await _imported(rt, fake, "benign.example.test", page_class=None,
                                                 media_class=None, n_media=1)
            set_case(rt.store, benign, state="dismissed", now=at(3),
                     assessment={"verdict": "not_illegal", "category": None, "by": "analyst:a",
                                 "at": at(3)})
            # Gone before any notice went out.
            gone, gone_ids = await _imported(rt, fake, "gone.example.test", n_media=0)
            set_case(rt.store, gone, state="closed", now=at(5), resolution=nl,
                     monitoring={"removed_at": at(4)})
            # Moved abroad: hosted in Germany now.
            moved, moved_ids = await _imported(rt, fake, "moved.example.test", n_media=0)
            set_case(rt.store, moved, state="monitoring", now=at(6),
                     resolution=resolution(host="moved.example.test", country="DE",
                                           ips=("203.0.113.9",)))

            result = await _sync(rt, do_import=False)
            assert result["errors"] == [] and result["retrying"] == 0
            page, *media = removed_ids
            assert _order(fake, page) == ["assessment", "ReportedToISP", "ReportedToLEA",
                                          "Removed"]
            for content_id in media:
                assert _order(fake, content_id) == ["ReportedToISP", "ReportedToLEA", "Removed"]
            assert fake.contents[page]["assessments"][-1]["classification"] == v3.BASELINE
            assert [a["actionType"] for a in fake.contents[media[0]]["actions"]] == [2, 1, 3]
            assert all(_order(fake, c) == ["assessment", "NotIllegal"] for c in benign_ids)
            not_illegal = fake.contents[benign_ids[0]]["actions"][-1]
            assert not_illegal["reasonId"] == v3.REASON_BELOW_THRESHOLD
            assert fake.contents[benign_ids[0]]["assessments"][-1]["classification"] == v3.IGNORE
            [(gone_page)] = gone_ids
            assert _order(fake, gone_page) == ["Unavailable"]
            assert fake.contents[gone_page]["actions"][0]["reasonId"] == v3.REASON_CONTENT_NOT_FOUND
            [moved_page] = moved_ids
            assert _order(fake, moved_page) == ["hosting", "assign"]
            assert fake.contents[moved_page]["url"] == {
                "urlString": "http://moved.example.test/gallery/1", "isSourceUrl": True,
                "hostingCountryCode": "DE", "hostingIpAddress": "203.0.113.9"}
            assert fake.contents[moved_page]["assignedCountryCode"] == "DE"
            # actionDate is when it happened, in UTC.
            isp = fake.contents[page]["actions"][0]
            assert isp["actionDate"] == at(1)[:19] + "Z"
            # Nothing more to say: a second sync sends nothing, and a final action is never
            # followed by another, even when the facts change.
            before = len(fake.requests)
            set_case(rt.store, removed, state="dismissed", now=at(40),
                     assessment={"verdict": "not_illegal", "category": None, "by": "analyst:b",
                                 "at": at(40)})
            send_notice(rt.store, gone, kind="hosting", now=at(41))
            again = await _sync(rt, do_import=False)
            assert again["actions_sent"] == 0
            assert not [r for r in fake.requests[before:] if r.method != "GET"
                        and r.path != "Authentication"]
            assert _order(fake, page)[-1] == "Removed"


async def test_one_final_action_per_item_is_enforced_by_the_store(tmp_path: Path,
                                                                  pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            case_id, ids = await _imported(rt, fake, "final.example.test", n_media=0)
            [item] = rt.store.iccam_case(case_id)["items"]
            base = {"case_id": case_id, "item_id": item["id"], "content_id": ids[0],
                    "step": "action", "seq": 40, "fact_at": at(1), "payload": {}, "final": True}
            assert rt.store.iccam_plan([{**base, "action": "Removed"}], at(1)) == 1
            assert rt.store.iccam_plan([{**base, "action": "NotIllegal"}], at(2)) == 0
            assert rt.store.iccam_plan([{**base, "action": "Removed"}], at(3)) == 0


async def test_actions_wait_until_iccam_is_ready_for_them(tmp_path: Path, pki: PKI) -> None:
    # A new report of ours is not in its action phase at once ("Report not in the right phase
    # to action"): the action is tried again later, not lost, and not sent before its report.
    # (5 s: longer than the first sync takes on a loaded machine)
    async with running(pki, phase_seconds=5.0) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            case_id = _forwarded_case(rt, country="NL")
            await _send_notices(rt)
            send_notice(rt.store, case_id, kind="hosting", now=at(1))
            first = await _sync(rt)
            assert first["reports_created"] == 1 and first["actions_sent"] == 0
            assert first["retrying"] >= 1
            refused = [r for r in fake.requests if r.path.endswith("/actions")]
            assert refused and all(r.status == 400 for r in refused)
            sent: list[int] = []

            async def settle() -> None:
                result = await _sync(rt)
                sent.append(result["actions_sent"])

            import asyncio

            deadline = asyncio.get_running_loop().time() + 60
            while sum(sent) < 2 and asyncio.get_running_loop().time() < deadline:
                await settle()
            assert sum(sent) == 2  # ReportedToISP for the page and the media item
            report_at = next(n for n, r in enumerate(fake.requests)
                             if r.path == "rest/reports" and r.status == 200)
            assert all(n > report_at for n, r in enumerate(fake.requests)
                       if r.path.endswith("/actions"))


async def test_429_and_503_are_ridden_out_by_retries(tmp_path: Path, pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            case_id = _forwarded_case(rt, country="NL")
            await _send_notices(rt)
            send_notice(rt.store, case_id, kind="police", now=at(1))
            fake.fail("POST", "rest/reports", 503)
            fake.fail("POST", r"rest/content/\d+/actions", 429, retry_after="0")
            fake.fail("GET", r"rest/reports/\d+", 502)
            result = await _sync(rt)
            assert result == {"imported": 0, "linked": 0, "reports_created": 1, "actions_sent": 2,
                              "retrying": 0, "errors": []}
            assert len(fake.successful("POST", "rest/reports")) == 1
            assert sorted(t for _, t in fake.received_actions()) == [1, 1]
            statuses = [r.status for r in fake.requests]
            assert 503 in statuses and 429 in statuses and 502 in statuses


async def test_a_400_is_kept_with_iccams_text(tmp_path: Path, pki: PKI) -> None:
    from tests.conftest import run_ntd

    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            case_id, ids = await _imported(rt, fake, "refused.example.test", n_media=0)
            # Someone else closed the item in ICCAM meanwhile: our action is refused for good.
            fake.contents[ids[0]]["actions"].append({"actionType": v3.REMOVED,
                                                     "analystName": "other", "actionDate": at(0)})
            send_notice(rt.store, case_id, kind="hosting", now=at(1))
            result = await _sync(rt, do_import=False)
            [error] = result["errors"]
            assert error["kind"] == "export" and error["action"] == "ReportedToISP"
            assert error["error"] == f"http 400: [ICCAM action] {v3.ERR_FINAL}"
            assert error["content_id"] == ids[0]
            [problem] = rt.store.iccam_problems()
            assert problem["error"] == error["error"] and problem["state"] == "failed"
            proc = run_ntd("iccam", "errors", db=tmp_path / "ntd.db")
            assert proc.returncode == 0 and v3.ERR_FINAL in proc.stdout
            status = run_ntd("iccam", "status", case_id, "--json", db=tmp_path / "ntd.db")
            assert status.returncode == 0 and '"failed"' in status.stdout
            # Not tried again.
            assert (await _sync(rt, do_import=False))["errors"] == []


async def test_a_moved_item_found_by_the_hosting_recheck(tmp_path: Path, pki: PKI) -> None:
    from engine.api import StageResult, hookimpl

    class MovedToGermany:
        @hookimpl(tryfirst=True)
        def ntd_resolve(self, case: Any, ctx: Any) -> StageResult:
            return StageResult(state="resolved", action="resolved", data={
                "resolution": resolution(host=case.host, country="DE", ips=("203.0.113.50",))})

    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki, hosting_recheck_hours=24.0,
                     extra_plugins=[("moved_to_germany", MovedToGermany())]) as rt:
            case_id, ids = await _imported(rt, fake, "hoster.example.test", n_media=0)
            set_case(rt.store, case_id, state="monitoring", now=at(1),
                     resolution=resolution(host="hoster.example.test", country="NL"))
            result = await _sync(rt, do_import=False)
            assert result["actions_sent"] == 2
            assert _order(fake, ids[0]) == ["hosting", "assign"]
            assert fake.contents[ids[0]]["url"]["hostingIpAddress"] == "203.0.113.50"


def test_the_workbench_classification_goes_to_iccam_as_it_was_given() -> None:
    from types import SimpleNamespace

    from plugins.iccam.exporter import our_classification
    from plugins.iccam.mapping import assessment

    given = {"class": "baseline", "age": "PP", "gender": "FE", "virtual": False,
             "user_generated": True, "child_modelling": False}
    case = SimpleNamespace(data={"assessment": {"verdict": "illegal", "category": "baseline",
                                                "classification": given}})
    sent = assessment("baseline", analyst="ntd-api", classification=our_classification(case))
    assert sent == {"assessingAnalystName": "ntd-api", "classification": v3.BASELINE,
                    "ageCategorization": v3.AGE_PREPUBESCENT,
                    "genderCategorization": v3.GENDER_FEMALE,
                    "virtualContentCategorization": 0,
                    "userGeneratedContentCategorization": 1, "childModelingCategorization": 0}
    # ICCAM v3 has no Doubtful: it goes as National, which the hosting hotline may overrule.
    doubtful = assessment(None, analyst="a", classification={**given, "class": "doubtful"})
    assert doubtful["classification"] == v3.NATIONAL
    # A hash-list confirmation (no analyst) keeps the category's mapping; not illegal: Ignore.
    assert assessment("national", analyst="a")["classification"] == v3.NATIONAL
    assert assessment(None, analyst="a", illegal=False,
                      classification=given)["classification"] == v3.IGNORE
    assert our_classification(SimpleNamespace(data={})) is None
