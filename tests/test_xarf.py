"""X-ARF 4.2 conformance: ntd's reports against the official X-ARF v4 schemas (PyPI ``xarf``,
identical to ``xarf/xarf-spec`` schemas/v4) with format checking on.

Beyond the shapes here, tests/conftest.py validates every report any test builds.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine.store import open_store
from plugins.notify.xarf import (
    NATIONAL_TAG,
    XARF_VERSION,
    a_label_host,
    build_reports,
    report_id,
)
from plugins.notify.xarf_schema import format_checker, official_schema, validate_report

ROW_ID = "3f0c5f6e-8a31-4d57-9a3e-6b1c1f1d2a77"


def _notice(*entries: dict[str, Any], classification: str = "baseline") -> dict[str, Any]:
    return {"id": "N01", "created_at": "2026-12-04T10:00:00Z", "actions": [{
        "report_id": ROW_ID, "outbox_id": "A1", "reference": "NL-2026-1",
        "hosting_country": "NL", "asn": 64501, "registrar": "Tulip Registrar",
        "entries": [{"classification": classification, "first_seen": "2026-12-04T09:00:00Z",
                     **e} for e in entries]}]}


def _one(entry: dict[str, Any], **kw: Any) -> dict[str, Any]:
    [report] = build_reports(_notice(entry, **kw), hotline="Test Hotline",
                             reply_to="reply@hotline.test")
    validate_report(report)
    return report


def test_format_checking_is_really_on() -> None:
    checker = format_checker()
    for fmt in ("uri", "email", "hostname", "date-time", "uuid", "ipv4", "ipv6"):
        assert fmt in checker.checkers
    assert not checker.conforms("not a uri", "uri")


def test_ordinary_report() -> None:
    report = _one({"url": "http://www.example.nl/a/b.jpg", "host": "www.example.nl",
                   "ip": "185.4.1.7", "hashes": {"sha256": "c" * 64}})
    assert report["xarf_version"] == XARF_VERSION == "4.2.0"
    assert report["domain"] == "www.example.nl"
    assert report["source_identifier"] == "185.4.1.7"
    assert report["dns_records"] == {"a": ["185.4.1.7"]}
    assert uuid.UUID(report["report_id"]).version == 4
    assert report["report_id"] == ROW_ID  # the outbox row's stored id


@pytest.mark.parametrize(("url", "host", "ip", "source", "records"), [
    ("http://185.4.1.7/x.jpg", "185.4.1.7", None, "185.4.1.7", {"a": ["185.4.1.7"]}),
    ("http://[2a0b:4d00::7]/x.jpg", "[2a0b:4d00::7]", None, "2a0b:4d00::7",
     {"aaaa": ["2a0b:4d00::7"]}),
    ("http://[2a0b:4d00::7]:8080/x.jpg", "2a0b:4d00::7", "2a0b:4d00::7", "2a0b:4d00::7",
     {"aaaa": ["2a0b:4d00::7"]}),
])
def test_ip_hosts_go_in_source_identifier_not_domain(url: str, host: str, ip: str | None,
                                                     source: str, records: Any) -> None:
    report = _one({"url": url, "host": host, "ip": ip})
    assert "domain" not in report
    assert report["source_identifier"] == source
    assert report["dns_records"] == records


def test_idn_host_as_a_label() -> None:
    report = _one({"url": "http://bücher.example/ä.jpg", "host": "bücher.example",
                   "ip": "46.20.3.4"})
    assert report["url"] == "http://xn--bcher-kva.example/%C3%A4.jpg"
    # The official `domain` pattern admits no "--" inside a label: the A-label stays out of
    # `domain`, and the name is in the URL.
    assert "domain" not in report
    assert a_label_host("bücher.example") == "xn--bcher-kva.example"
    report = _one({"url": "http://bücher.example/", "host": "bücher.example"})
    assert report["source_identifier"] == "xn--bcher-kva.example"


def test_underscore_host() -> None:
    report = _one({"url": "http://my_site.example.com/x", "host": "my_site.example.com",
                   "ip": "46.20.3.4"})
    assert "domain" not in report
    assert report["url"] == "http://my_site.example.com/x"


@pytest.mark.parametrize(("category", "classification", "tag"), [
    ("baseline", "baseline", None), ("A1", "A1", None), ("b2", "B2", None),
    ("national", "baseline", NATIONAL_TAG), ("ICCAM.other", "baseline", "ntd-category:iccam-other"),
])
def test_classification_and_tags(category: str, classification: str, tag: str | None) -> None:
    report = _one({"url": "http://x.example.com/1", "host": "x.example.com"},
                  classification=category)
    assert report["classification"] == classification
    if tag:
        assert tag in report["tags"]
    assert all("." not in t for t in report["tags"])


def test_report_ids_fixed_per_outbox_row() -> None:
    notice = _notice({"url": "http://x.example.com/1", "host": "x.example.com"},
                     {"url": "http://x.example.com/2", "host": "x.example.com"})
    first = build_reports(notice, hotline="H", reply_to="r@hotline.test")
    again = build_reports(copy.deepcopy(notice), hotline="H", reply_to="r@hotline.test")
    assert [r["report_id"] for r in first] == [r["report_id"] for r in again]
    assert first[0]["report_id"] == ROW_ID and first[1]["report_id"] != ROW_ID
    assert all(uuid.UUID(r["report_id"]).version == 4 for r in first)
    # A row queued before ids were stored: derived from the notice and row ids, still fixed.
    legacy = report_id(None, "http://x.example.com/1", fallback="N01:A1")
    assert legacy == report_id(None, "http://x.example.com/1", fallback="N01:A1")
    assert uuid.UUID(legacy).version == 4


def test_store_keeps_a_uuid4_per_outbox_row(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ntd.db"))
    store.migrate()
    store.queue_notice_actions([{"kind": "notice", "channel": "email", "recipient": "a@b.test",
                                 "recipient_kind": "hosting", "entries": []}],
                               now="2026-12-04T10:00:00Z")
    [notice_id] = store.aggregate_notices(now="2026-12-05T10:00:00Z", window_seconds=1,
                                          max_urls=100, sendable=["email"])
    claims = []
    for attempt in range(2):
        [claimed] = store.claim_notices(owner="w", limit=1, now=f"2026-12-0{5 + attempt}T11:00Z",
                                        lease_seconds=1)
        claims.append(claimed["actions"][0]["report_id"])
        store.notice_retry(notice_id, owner="w", now=f"2026-12-0{5 + attempt}T11:00Z",
                           next_attempt_at="2026-12-01T00:00:00Z", error="try again")
    assert claims[0] == claims[1] and uuid.UUID(claims[0]).version == 4
    store.close()


@pytest.mark.parametrize(("field", "value"), [
    ("url", "not a uri"),
    ("domain", "185.4.1.7"),
    ("domain", "my_site.example.com"),
    ("tags", ["ntd:notice", "classification:a.b"]),
    ("classification", "national"),
    ("report_id", "not-a-uuid"),
    ("timestamp", "yesterday"),
    ("dns_records", {"a": ["2a0b:4d00::7"]}),
])
def test_invalid_reports_fail(field: str, value: Any) -> None:
    report = _one({"url": "http://www.example.nl/a", "host": "www.example.nl",
                   "ip": "185.4.1.7"})
    report[field] = value
    with pytest.raises(jsonschema.ValidationError):
        validate_report(report)


def test_official_schema_is_the_published_one() -> None:
    csam = official_schema()
    assert csam["$id"] == "https://xarf.org/schemas/v4/types/content-csam.json"
    enum = csam["allOf"][1]["properties"]["classification"]["enum"]
    assert enum == ["baseline", "A1", "A2", "B1", "B2"]
