"""What a notice may say about a case: an explicit allow-list of fields, nothing else.

The action payload queued in the outbox is built here from the case's URL, its items' hashes and
matches, its resolution and one route. Reporter data never reaches it: reports are not read at
all, and from case data only named, non-personal fields are copied (the analyst's name in an
assessment is dropped too). Media bytes are never part of a case, so none can travel.

Notices speak only our words: the URL a recipient reads is the *canonical* URL (no fragment, no
control characters, percent-encoded as WHATWG serialises it), never the text a reporter typed
(``case.url`` keeps that, up to 8 KiB, for analysts). Every URL is re-checked here, and free
text from elsewhere (a registrar's name from RDAP) loses control characters and line breaks, so
nothing can start a header line in an e-mail or break an X-ARF field.
"""

from __future__ import annotations

import re
from typing import Any

from engine.errors import InputError
from engine.media.signals import HASH_TYPE_NAMES
from engine.models import Case
from engine.urls import canonicalize

HASH_KEYS = HASH_TYPE_NAMES  # the hashes a notice may carry: every hash type's, no quality scores
# Routes whose channel the engine can deliver itself; others become "manual" notices unless a
# plugin registers a sender for the channel.
BUILTIN_CHANNELS = ("email", "api")
DUTCH_COUNTRIES = frozenset({"NL", "BE"})


def language_for(country: str | None) -> str:
    """Notice language for a recipient country: Dutch for NL and BE, English otherwise."""
    return "nl" if (country or "").upper() in DUTCH_COUNTRIES else "en"


# C0 and C1 controls, DEL, and Unicode's line/paragraph separators and direction overrides: none
# may reach a recipient (a CR/LF starts a new header line; U+2028 breaks JSON in some readers).
_UNSPEAKABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e"
                          "\u2066-\u2069\ufeff]+")


def plain_text(value: Any, limit: int = 200) -> str | None:
    """``value`` as one line of text fit for a notice (controls become a space), or None."""
    if value is None:
        return None
    text = " ".join(_UNSPEAKABLE.sub(" ", str(value)[:limit]).split())
    return text or None


def notice_url(url: str) -> str | None:
    """The canonical form of ``url`` as a recipient may read it, or None if it has none.

    Canonical URLs are ASCII without controls or spaces; canonicalising one again returns it
    unchanged, so this only ever changes (or drops) a URL that did not come from intake.
    """
    try:
        return canonicalize(url).url
    except InputError:
        return None


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
    # The canonical URL, never case.url (what the reporter typed: fragment, CR/LF and all).
    page_url = notice_url(case.canonical_url) or plain_text(case.canonical_url, 8192) or ""
    entries = [{"url": page_url,
                "hashes": _hashes(page.hashes) if page is not None and page.matches else {},
                **common}]
    seen = {page_url}
    for item in case.items:
        url = notice_url(item.url) if item.kind == "media" and item.matches else None
        if url is not None and url not in seen:
            seen.add(url)
            entries.append({"url": url, "hashes": _hashes(item.hashes), **common})
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
        "registrar": plain_text(registrar.get("name") if isinstance(registrar, dict)
                                else registrar),
        "entries": entries,
        "url_count": len(entries),
    }


def speakable(action: dict[str, Any]) -> dict[str, Any]:
    """A queued action as a notice may show it: canonical entry URLs (an entry whose URL has no
    canonical form is left out), a one-line registrar name.

    The notice channels apply it to every action they send, so a payload queued by an older
    version (which listed the reported text) or by a plugin speaks only our words too.
    """
    entries = []
    for entry in action.get("entries") or []:
        url = notice_url(str(entry.get("url") or ""))
        if url is not None:
            entries.append({**entry, "url": url})
    return {**action, "entries": entries, "registrar": plain_text(action.get("registrar"))}
