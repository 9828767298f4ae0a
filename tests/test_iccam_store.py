"""The ICCAM store methods behave the same on SQLite and PostgreSQL (one SQL text for both)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import clock
from engine.store import Store, open_store
from engine.testing import resolution
from plugins.iccam.importer import build_import
from tests.iccam_lab import our_case, send_notice, set_case
from tests.pg import pg_url  # noqa: F401  (fixture)

T0 = "2026-03-01T10:00:00.000000Z"


def at(seconds: float) -> str:
    return clock.fmt(clock.parse(T0) + timedelta(seconds=seconds))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'ntd.db'}" if request.param == "sqlite" \
        else str(request.getfixturevalue("pg_url"))
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


def _content(cid: int, url: str, *, source: bool, classification: int | None = 2
             ) -> dict[str, Any]:
    return {"contentId": cid, "reportId": 1001, "assignedCountryCode": "NL",
            "countryAssignmentDate": "2026-03-01T09:00:00Z", "memo": None,
            "url": {"urlString": url, "isSourceUrl": source, "hostingCountryCode": "NL",
                    "hostingIpAddress": "192.0.2.1"},
            "assessments": [] if classification is None else [{"classification":
                                                                 classification}],
            "actions": []}


def _report(store: Store) -> tuple[dict[str, Any], str]:
    report = {"reportId": 1001, "reportingHotlineId": 32, "reportingAnalystName": "de",
              "hotlineReceivedDate": "2026-03-01T08:00:00Z", "sourceUrlSiteType": 2}
    source = _content(5001, "http://a.example.test/g", source=True)
    media = [_content(5002, "http://a.example.test/1.jpg", source=False, classification=1)]
    batch = store.create_batch(channel="iccam", source="test", at=T0)
    return build_import(1001, report, source, media), batch


def test_import_then_known_then_reference_again(store: Store) -> None:
    payload, batch = _report(store)
    first = store.iccam_import(batch, payload, T0)
    assert (first["outcome"], first["new_contents"]) == ("imported", 2)
    again = store.iccam_import(batch, payload, at(60))
    assert (again["outcome"], again["new_contents"]) == ("known", 0)
    case = store.get_case(first["case_id"], events=False)
    assert case is not None and len(case["reports"]) == 1
    assert case["iccam"]["partner_assessment"]["classification"] == 1
    assert {i["kind"] for i in case["items"]} == {"url", "media"}
    steps = store.iccam_claim(owner="w", limit=10, now=at(1), lease_seconds=60,
                              steps=("reference",))
    assert len(steps) == 2 and {s["item"]["content_id"] for s in steps} == {5001, 5002}
    for s in steps:
        assert store.iccam_finish(s["id"], owner="w", now=at(2), state="sent")
    store.iccam_import(batch, payload, at(3))  # listed again: its reference goes out again
    assert store.iccam_due(at(4)) == 2
    store.iccam_import_error(1002, 6000, "no source URL", at(5))
    assert [p["kind"] for p in store.iccam_problems()] == ["import"]
    store.iccam_clear_import_errors(1002)
    assert store.iccam_problems() == []
    store.iccam_set_cursor(at(6))
    assert store.iccam_cursor() == at(6)


def test_plan_claim_order_final_and_recovery(store: Store) -> None:
    payload, batch = _report(store)
    case_id = store.iccam_import(batch, payload, T0)["case_id"]
    for s in store.iccam_claim(owner="w", limit=10, now=at(1), lease_seconds=60):
        store.iccam_finish(s["id"], owner="w", now=at(1), state="sent")
    [page, media] = sorted(store.iccam_open_items("NL"), key=lambda i: i["content_id"])
    base = {"case_id": case_id, "payload": {}}
    steps = [{**base, "item_id": page["id"], "content_id": 5001, "step": "action",
              "action": "Removed", "seq": 40, "fact_at": at(9), "final": True},
             {**base, "item_id": page["id"], "content_id": 5001, "step": "action",
              "action": "ReportedToISP", "seq": 20, "fact_at": at(5)},
             {**base, "item_id": media["id"], "content_id": 5002, "step": "action",
              "action": "ReportedToISP", "seq": 20, "fact_at": at(5)}]
    assert store.iccam_plan(steps, at(10)) == 3
    assert store.iccam_plan(steps, at(11)) == 0  # the same keys: nothing new
    second_final = {**steps[0], "action": "NotIllegal"}
    assert store.iccam_plan([second_final], at(12)) == 0  # one final action per item
    first = store.iccam_claim(owner="w", limit=10, now=at(13), lease_seconds=60)
    assert sorted((s["item"]["content_id"], s["action"]) for s in first) == [
        (5001, "ReportedToISP"), (5002, "ReportedToISP")]  # Removed waits for its ISP
    isp = next(s for s in first if s["item"]["content_id"] == 5001)
    assert store.iccam_retry(isp["id"], owner="w", now=at(14), next_attempt_at=at(20),
                             error="http 503")
    assert store.iccam_claim(owner="w", limit=10, now=at(15), lease_seconds=60) == []
    # The other claimer died holding its lease: the step comes back marked for a check.
    other = next(s for s in first if s["item"]["content_id"] == 5002)
    assert store.iccam_lease_owners() == ["w"]
    assert store.iccam_release_owners(["w"]) == 1
    [again] = store.iccam_claim(owner="v", limit=10, now=at(16), lease_seconds=60)
    assert again["id"] == other["id"] and again["recover"] and again["attempts"] == 2
    store.iccam_finish(again["id"], owner="v", now=at(16), state="sent",
                       response={"reconciled": True})
    [isp_again] = store.iccam_claim(owner="v", limit=10, now=at(21), lease_seconds=60)
    assert isp_again["id"] == isp["id"] and not isp_again["recover"]
    store.iccam_finish(isp_again["id"], owner="v", now=at(22), state="sent")
    [final] = store.iccam_claim(owner="v", limit=10, now=at(23), lease_seconds=60)
    assert final["action"] == "Removed" and final["final"]
    store.iccam_finish(final["id"], owner="v", now=at(24), state="failed",
                       error="http 400: [ICCAM action] refused")
    assert [i["content_id"] for i in store.iccam_open_items("NL")] == [5002]
    assert store.iccam_counts() == {"failed": 1, "sent": 4}
    [problem] = store.iccam_problems()
    assert problem["action"] == "Removed" and problem["content_id"] == 5001


def test_our_report_link_create_read_and_resolve(store: Store) -> None:
    case_id = our_case(store, "http://b.example.test/p", now=T0,
                       resolution=resolution(host="b.example.test", country="DE"))
    assert store.iccam_queue_report(case_id, T0, {"target": "iccam:DE"})
    assert not store.iccam_queue_report(case_id, at(1), {})
    store.iccam_link_export(case_id, [{"url": "http://b.example.test/p", "is_source": True,
                                       "hosting_country": "DE", "hosting_ip": "192.0.2.9"}],
                            at(1))
    [step] = store.iccam_claim(owner="w", limit=5, now=at(2), lease_seconds=60)
    assert step["step"] == "report" and step["item"] is None
    assert store.iccam_report_created(step["id"], owner="w", case_id=case_id, report_id=77,
                                      now=at(3))
    assert store.iccam_unread_reports() == [{"case_id": case_id, "report_id": 77}]
    assert store.iccam_report_read(case_id, 77, [
        {"url": "http://b.example.test/p", "content_id": 901, "assigned_country": "DE",
         "hosting_country": "DE", "hosting_ip": "192.0.2.9"}], at(4)) == 1
    assert store.iccam_unread_reports() == []
    [link] = store.iccam_case(case_id)["items"]
    assert (link["report_id"], link["content_id"], link["origin"]) == (77, 901, "export")
    store.iccam_update_item(link["id"], at(5), assigned_country="NL")
    assert store.iccam_open_items("NL")[0]["content_id"] == 901
    assert not store.iccam_resolve(case_id, now=at(6), report_id=None)  # nothing in doubt
    send_notice(store, case_id, kind="hosting", now=at(7))
    assert store.iccam_notice_facts([case_id]) == {case_id: {"hosting": at(7)}}
    set_case(store, case_id, state="closed", now=at(9), monitoring={"removed_at": at(8)})
    [facts] = store.stats_iccam_facts("0000", "9999")
    assert facts["country"] == "DE" and facts["origin"] == "export"
    assert facts["iccam_reported_at"] == at(3) and facts["removed_at"] == at(8)
