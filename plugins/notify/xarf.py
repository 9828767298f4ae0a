"""X-ARF v4 reports (``category: content``, ``type: csam``) for the locations of a notice.

X-ARF v4 (xarf.org) has one incident per report, so a notice carries one report per URL: in
e-mail each is an ``application/json`` part of the ``multipart/report``; an API delivery's body
is the JSON array of them. ``report_id`` is a UUID derived from the notice id and the URL, so a
resend carries the same ids. The reporter is the hotline; reporter data of the public never
appears. ntd extension (documented in docs/notices.md): ``classification`` may be ``national``
(INHOPE's term for material illegal under national law only), which the spec's enum lacks.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from engine.media.signals import HASH_TYPES, perceptually_hashed

XARF_VERSION = "4.0.0"
SPEC_CLASSIFICATIONS = {"baseline": "baseline", "a1": "A1", "a2": "A2", "b1": "B1", "b2": "B2",
                        "national": "national"}
_TAG = re.compile(r"[^a-z0-9_+.-]+")


def report_id(notice_id: str, url: str) -> str:
    """Deterministic UUID of one URL's report within a notice."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ntd:{notice_id}:{url}"))


def _classification(category: str) -> tuple[str, str | None]:
    """X-ARF classification and, for a category outside the spec, a tag keeping it."""
    known = SPEC_CLASSIFICATIONS.get(category.lower())
    if known:
        return known, None
    return "baseline", "ntd-category:" + (_TAG.sub("-", category.lower()).strip("-") or "x")


def _hash_values(hashes: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in hashes.items():
        kind = HASH_TYPES.get(key)
        if kind is not None and not kind.perceptual:  # md5, sha1, sha256: the spec's keys
            try:
                out[key] = kind.validate(value)
            except ValueError:
                continue  # malformed: left out rather than failing the spec's pattern
        else:
            out[key] = value  # perceptual hashes (phash, pdq): extra keys the schema allows
    return out


def contact(org: str, address: str) -> dict[str, str]:
    """An X-ARF ``contact_info`` for an organisation and its address."""
    return {"org": org[:200], "contact": address, "domain": address.rpartition("@")[2].lower()}


def build_reports(notice: dict[str, Any], *, hotline: str, reply_to: str) -> list[dict[str, Any]]:
    """One X-ARF v4 report per URL of ``notice`` (its ``actions`` as stored in the outbox)."""
    reporter = contact(hotline, reply_to)
    reports = []
    seen: set[str] = set()
    for action in notice["actions"]:
        for entry in action.get("entries") or []:
            url = entry["url"]
            if url in seen:
                continue
            seen.add(url)
            classification, extra_tag = _classification(str(entry.get("classification")
                                                            or "baseline"))
            method = entry.get("detection_method") or "manual_review"
            hashes = _hash_values(entry.get("hashes") or {})
            report: dict[str, Any] = {
                "xarf_version": XARF_VERSION,
                "report_id": report_id(notice["id"], url),
                "timestamp": entry.get("first_seen") or notice["created_at"],
                "reporter": reporter,
                "sender": reporter,
                "source_identifier": entry.get("ip") or entry.get("host") or url,
                "category": "content",
                "type": "csam",
                "url": url,
                "classification": classification,
                "detection_method": method,
                "evidence_source": "automated_scan" if method == "hash_match" else "user_report",
                "description": f"Hotline reference {action.get('reference')}",
                "tags": ["ntd:notice", f"classification:{classification.lower()}"],
            }
            if entry.get("host"):
                report["domain"] = entry["host"]
            if hashes:
                report["hash_values"] = hashes
                if perceptually_hashed(hashes):
                    report["media_type"] = "image"
            if extra_tag:
                report["tags"].append(extra_tag)
            country = action.get("hosting_country")
            if isinstance(country, str) and re.fullmatch(r"[A-Z]{2}", country):
                report["country_code"] = country
            asn = action.get("asn")
            if isinstance(asn, int) and asn > 0:
                report["asn"] = asn
            if isinstance(action.get("registrar"), str) and action["registrar"]:
                report["registrar"] = action["registrar"]
            reports.append(report)
    return reports
