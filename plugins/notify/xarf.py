"""X-ARF 4.2 reports (``category: content``, ``type: csam``) for the locations of a notice.

X-ARF v4 (xarf.org, schemas in ``xarf/xarf-spec``) has one incident per report, so a notice
carries one report per URL: in e-mail each is an ``application/json`` attachment; an API
delivery's body is the JSON array of them. The reporter is the hotline; reporter data of the
public never appears. What the official schemas ask, and how ntd meets it:

* ``report_id`` is a UUID version 4, made once when the outbox row is queued and stored with it
  (``outbox.report_id``), so a retry resends the same id; a row holding several URLs gives the
  further URLs version-4 ids derived from it and the URL (still fixed per row).
* ``url`` is an RFC 3986 URI: an IDN host is written in its A-label (``xn--``) form.
* ``domain`` only when the host matches the schema's pattern (letters, digits, inner hyphens,
  an alphabetic TLD): IP hosts, A-labels and names with underscores are left out; the host
  or IP is always in ``source_identifier``, and an IP also in ``dns_records.a`` / ``.aaaa``.
* ``classification`` is one of the official values (baseline, A1, A2, B1, B2). INHOPE's
  ``national`` (illegal under national law only) has no value of its own: it is sent as
  ``baseline`` with the tag ``inhope:national`` (docs/notices.md). Any other ntd category is
  sent as ``baseline`` with a ``ntd-category:<name>`` tag.
* tags match ``namespace:predicate`` with ``[a-z0-9_+-]`` only (no dots).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine.media.signals import HASH_TYPES, perceptually_hashed

XARF_VERSION = "4.2.0"
SPEC_CLASSIFICATIONS = {"baseline": "baseline", "a1": "A1", "a2": "A2", "b1": "B1", "b2": "B2"}
# What ntd calls a category and X-ARF has no value for: (classification sent, tag kept).
NATIONAL_TAG = "inhope:national"
_TAG = re.compile(r"[^a-z0-9_+-]+")
# The official content schema's `domain` pattern (types/content-base.json).
DOMAIN_PATTERN = re.compile(r"^([a-z0-9]+(-[a-z0-9]+)*\.)+[a-z]{2,}$")


def report_id(row_id: str | None, url: str, *, index: int = 0,
              fallback: str = "") -> str:
    """The UUIDv4 of one URL's report: the outbox row's stored id for its first URL; further
    URLs of the row (and rows queued before ids were stored, from ``fallback``) get a v4 id
    derived from it, so every resend carries the same ids."""
    if row_id and index == 0:
        return str(uuid.UUID(row_id))
    seed = f"ntd:xarf:{row_id or fallback}:{url}".encode()
    return str(uuid.UUID(bytes=hashlib.sha256(seed).digest()[:16], version=4))


def _classification(category: str) -> tuple[str, str | None]:
    """X-ARF classification and, for a category outside the spec, a tag keeping it."""
    known = SPEC_CLASSIFICATIONS.get(category.lower())
    if known:
        return known, None
    if category.lower() == "national":
        return "baseline", NATIONAL_TAG
    return "baseline", "ntd-category:" + (_TAG.sub("-", category.lower()).strip("-") or "x")


def a_label_host(host: str) -> str:
    """``host`` with every Unicode label in its IDNA A-label form (IPs unchanged)."""
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return "".join(ch if ch.isascii() else f"%{ord(ch):02X}" for ch in host)


def ascii_url(url: str) -> str:
    """``url`` as an RFC 3986 URI: A-label host; other non-ASCII characters percent-encoded."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = parts.netloc
    if host and not host.isascii():
        netloc = netloc.replace(host, a_label_host(host)) if host in netloc else a_label_host(
            host) + (f":{parts.port}" if parts.port else "")
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return "".join(ch if ch.isascii() else "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
                   for ch in rebuilt)


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None


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
    """One X-ARF 4.2 report per URL of ``notice`` (its ``actions`` as stored in the outbox)."""
    reporter = contact(hotline, reply_to)
    reports = []
    seen: set[str] = set()
    for action in notice["actions"]:
        index = 0
        for entry in action.get("entries") or []:
            url = entry["url"]
            if url in seen:
                continue
            seen.add(url)
            reports.append(_report(notice, action, entry, reporter,
                                   report_id(action.get("report_id"), url, index=index,
                                             fallback=f"{notice['id']}:"
                                                      f"{action.get('outbox_id') or ''}")))
            index += 1
    return reports


def _report(notice: dict[str, Any], action: dict[str, Any], entry: dict[str, Any],
            reporter: dict[str, str], rid: str) -> dict[str, Any]:
    url = entry["url"]
    classification, extra_tag = _classification(str(entry.get("classification")
                                                    or "baseline"))
    method = entry.get("detection_method") or "manual_review"
    hashes = _hash_values(entry.get("hashes") or {})
    host = a_label_host(str(entry.get("host") or urlsplit(url).hostname or "").strip("[]"))
    host_ip = _ip(host)
    ip = _ip(entry.get("ip")) or host_ip
    report: dict[str, Any] = {
        "xarf_version": XARF_VERSION,
        "report_id": rid,
        "timestamp": entry.get("first_seen") or notice["created_at"],
        "reporter": reporter,
        "sender": reporter,
        "source_identifier": str(ip) if ip is not None else (host or ascii_url(url)),
        "category": "content",
        "type": "csam",
        "url": ascii_url(url),
        "classification": classification,
        "detection_method": method,
        "evidence_source": "automated_scan" if method == "hash_match" else "user_report",
        "description": f"Hotline reference {action.get('reference')}",
        "tags": ["ntd:notice", f"classification:{classification.lower()}"],
    }
    if host and host_ip is None and DOMAIN_PATTERN.fullmatch(host):
        report["domain"] = host
    if ip is not None:
        report["dns_records"] = {"a" if ip.version == 4 else "aaaa": [str(ip)]}
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
    return report
