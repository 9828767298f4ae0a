"""What a notice may say about a case: an explicit allow-list of fields, nothing else.

The action payload queued in the outbox is built here from the case's URL, its items' hashes and
matches, its resolution and one route. Reporter data never reaches it: reports are not read at
all, and from case data only named, non-personal fields are copied (the analyst's name in an
assessment is dropped too). Media bytes are never part of a case, so none can travel.
"""

from __future__ import annotations

from typing import Any

from engine.media.signals import HASH_TYPE_NAMES
from engine.models import Case

HASH_KEYS = HASH_TYPE_NAMES  # the hashes a notice may carry: every hash type's, no quality scores
# Routes whose channel the engine can deliver itself; others become "manual" notices unless a
# plugin registers a sender for the channel.
BUILTIN_CHANNELS = ("email", "api")
DUTCH_COUNTRIES = frozenset({"NL", "BE"})


def language_for(country: str | None) -> str:
    """Notice language for a recipient country: Dutch for NL and BE, English otherwise."""
    return "nl" if (country or "").upper() in DUTCH_COUNTRIES else "en"


def _hashes(item_hashes: dict[str, Any]) -> dict[str, str]:
    return {k: str(item_hashes[k]) for k in HASH_KEYS if item_hashes.get(k)}


def _classification(case: Case) -> str:
    for item in case.items:
        for match in item.matches:
            if match.get("category") and not match.get("negative"):
                return str(match["category"])
    match = case.data.get("match") or {}
    if isinstance(match, dict) and match.get("category"):
        return str(match["category"])
    assessment = case.data.get("assessment") or {}
    if isinstance(assessment, dict) and assessment.get("category"):
        return str(assessment["category"])
    return "baseline"


def _detection_method(case: Case) -> str:
    matched = any(m for item in case.items for m in item.matches if not m.get("negative"))
    if matched or case.data.get("match"):
        return "hash_match"
    return "manual_review"


def location_for(case: Case, route: dict[str, Any]) -> dict[str, Any]:
    """The part of the resolution a route's recipient is about: the CDN's (the resolution
    itself) for the CDN and the registrar, the origin's for everyone else once an analyst
    recorded the origin behind the CDN (``ntd origin``)."""
    resolution = case.data.get("resolution") or {}
    if not isinstance(resolution, dict):
        return {}
    origin = resolution.get("origin")
    if isinstance(origin, dict) and route.get("recipient_kind") not in ("cdn", "registrar"):
        return {**resolution, "ips": origin.get("ips") or [], "asn": origin.get("asn"),
                "country": origin.get("country")}
    return resolution


def case_entries(case: Case, location: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One entry per URL a notice lists for this case: the reported URL, then matched media."""
    resolution = location if location is not None else case.data.get("resolution") or {}
    ips = resolution.get("ips") if isinstance(resolution, dict) else None
    common = {
        "classification": _classification(case),
        "detection_method": _detection_method(case),
        "first_seen": case.created_at,
        "host": case.host,
        "ip": ips[0] if ips else None,
    }
    page = next((i for i in case.items if i.kind == "url"), None)
    entries = [{"url": case.url,
                "hashes": _hashes(page.hashes) if page is not None and page.matches else {},
                **common}]
    seen = {case.url}
    for item in case.items:
        if item.kind == "media" and item.matches and item.url not in seen:
            seen.add(item.url)
            entries.append({"url": item.url, "hashes": _hashes(item.hashes), **common})
    if not entries[0]["hashes"] and len(entries) == 1:
        matched = next((i for i in case.items if i.matches), None)
        if matched is not None:
            entries[0]["hashes"] = _hashes(matched.hashes)
    return entries


def build_action(case: Case, route: dict[str, Any], *, reference_prefix: str) -> dict[str, Any]:
    """The outbox payload for one route of a case (JSON-able, allow-listed fields only)."""
    resolution = location_for(case, route)
    entries = case_entries(case, resolution)
    registrar = resolution.get("registrar") if isinstance(resolution, dict) else None
    country = (route.get("country") or "").upper() or None
    return {
        "kind": "notice",
        "version": 1,
        "case_id": case.id,
        "reference": f"{reference_prefix}-{case.id}",
        "action": route.get("action") or "notice",
        "recipient_kind": route.get("recipient_kind") or "hosting",
        "recipient": str(route.get("target") or ""),
        "channel": route.get("channel") or "email",
        "country": country,
        "language": language_for(country),
        "deadline_hours": route.get("deadline_hours"),
        "decided_by": route.get("decided_by"),
        "domain": case.domain,
        "asn": resolution.get("asn") if isinstance(resolution, dict) else None,
        "hosting_country": resolution.get("country") if isinstance(resolution, dict) else None,
        "registrar": registrar.get("name") if isinstance(registrar, dict) else registrar,
        "entries": entries,
        "url_count": len(entries),
    }
