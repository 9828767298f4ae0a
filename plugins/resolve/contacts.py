"""Ranked abuse contacts for one resolution, and the hotline's local contacts book.

Candidates come from five kinds of source, in this order of trust:

1. ``book`` — the hotline's own contacts book (``ntd contacts add``), confidence 1.0. Matching
   entries always rank first, whatever else is found (a hoster's preferred API endpoint beats
   the address its registry publishes); among themselves by ``priority`` (higher first).
2. ``rdap`` — the abuse role of the network holding the IP (scope ``hosting``, or ``cdn`` when
   the address is a CDN's), 0.9; then the registrar's abuse contact from domain RDAP
   (scope ``registrar``), 0.75.
3. plugins (``ntd_contact_sources``): the confidence they give (clamped to 0–1; 0.5 if absent).
4. ``rules`` — the CDN / platform abuse channel from the rule files, 0.6.
5. ``guess`` — RFC 2142 ``abuse@<registrable domain>``, 0.2.

Every address that bounced before (``store.contact_failures``) has its confidence halved per
recorded failure, so it sinks below healthier candidates. Apart from the book, the list is ordered
by confidence, ties by the order above. Duplicates (same scope, channel and address) keep the best.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.errors import InputError

SCOPES = ("hosting", "registrar", "cdn", "platform", "upstream")
CHANNELS = ("email", "form", "api")
MATCH_KINDS = ("domain", "host", "asn", "org", "platform", "cdn")
SOURCE_ORDER = {"book": 0, "rdap": 1, "plugin": 2, "rules": 3, "guess": 4}

CONFIDENCE_HOSTING = 0.9
CONFIDENCE_REGISTRAR = 0.75
CONFIDENCE_PLUGIN_DEFAULT = 0.5
CONFIDENCE_RULES = 0.6
CONFIDENCE_GUESS = 0.2
FAILURE_FACTOR = 0.5  # each recorded failure halves an address's confidence

# Rule files say "web_form"; the contract says "form".
_RULE_CHANNELS = {"web_form": "form", "email": "email", "api": "api"}
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, kw_only=True)
class Contact:
    """One candidate recipient, in the contract shape (``to_dict``)."""

    scope: str
    channel: str
    address: str
    source: str
    confidence: float
    note: str | None = None
    failures: int = 0
    priority: int = 0  # book entries only
    origin: str | None = None  # the plugin that supplied it, for plugin sources

    def to_dict(self) -> dict[str, Any]:
        """Contract form; optional keys only when they carry information."""
        out: dict[str, Any] = {"scope": self.scope, "channel": self.channel,
                               "address": self.address, "source": self.source,
                               "confidence": round(self.confidence, 3)}
        if self.note:
            out["note"] = self.note
        if self.failures:
            out["failures"] = self.failures
        if self.origin:
            out["plugin"] = self.origin
        return out


# ------------------------------------------------------------------------- validation


def normalise_match(kind: str, value: str) -> str:
    """Canonical form of a contacts-book match value; raises ``InputError`` when unusable.

    ``asn`` accepts ``64501`` or ``AS64501``; ``domain``/``host`` are lower-cased and IDNA-encoded
    (``host`` may be ``*.zone`` for every sub-domain); names (``org``/``platform``/``cdn``) are
    compared case-insensitively.
    """
    if kind not in MATCH_KINDS:
        raise InputError(f"--match-kind: {kind!r} is not one of {', '.join(MATCH_KINDS)}")
    text = value.strip()
    if not text:
        raise InputError("--match: empty value")
    if kind == "asn":
        digits = text.upper().removeprefix("AS")
        if not digits.isdigit() or int(digits) <= 0:
            raise InputError(f"--match: {value!r} is not an AS number (e.g. 64501 or AS64501)")
        return str(int(digits))
    if kind in ("domain", "host"):
        name = text.rstrip(".").lower()
        wildcard = kind == "host" and name.startswith("*.")
        bare = name[2:] if wildcard else name
        if not bare or "/" in bare or " " in bare or ("*" in bare):
            raise InputError(f"--match: {value!r} is not a {kind} name")
        if not bare.isascii():
            try:
                bare = bare.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise InputError(f"--match: {value!r} is not a valid {kind} name") from exc
        return f"*.{bare}" if wildcard else bare
    return text.casefold()


def check_entry(*, scope: str, channel: str, address: str) -> str:
    """Validate a contacts-book entry's scope/channel/address; returns the cleaned address."""
    if scope not in SCOPES:
        raise InputError(f"--scope: {scope!r} is not one of {', '.join(SCOPES)}")
    if channel not in CHANNELS:
        raise InputError(f"--channel: {channel!r} is not one of {', '.join(CHANNELS)}")
    text = address.strip()
    if channel == "email":
        text = text.removeprefix("mailto:")
        if not _EMAIL_RE.match(text):
            raise InputError(f"--address: {address!r} is not an e-mail address")
        return text.lower()
    if not text.startswith(("https://", "http://")) or len(text) < 10:
        raise InputError(f"--address: a {channel} contact needs an http(s) URL, got {address!r}")
    return text


# ------------------------------------------------------------------------- the book


def _facts_value(facts: Mapping[str, Any], kind: str) -> list[str]:
    value = facts.get(kind)
    if value is None or value == "":
        return []
    return [str(value) if kind == "asn" else str(value).casefold()]


def book_matches(entries: Iterable[Mapping[str, Any]], facts: Mapping[str, Any]) -> list[Contact]:
    """Contacts-book entries that apply to a resolution.

    ``facts`` holds ``host``, ``domain``, ``asn``, ``org``, ``platform`` and ``cdn`` (absent or
    None when unknown). ``host`` entries may be exact or ``*.zone`` (sub-domains of zone).
    """
    host = str(facts.get("host") or "").lower()
    out: list[Contact] = []
    for entry in entries:
        kind, value = entry["match_kind"], str(entry["match_value"])
        if kind == "host":
            hit = host == value or (value.startswith("*.") and host.endswith(value[1:]))
        elif kind == "domain":
            domain = str(facts.get("domain") or "").lower()
            # A domain entry covers the domain and its sub-domains.
            hit = bool(domain) and (domain == value or host == value
                                    or host.endswith("." + value))
        else:
            hit = value in _facts_value(facts, kind)
        if hit:
            note = entry.get("note") or f"contacts book #{entry['id']} ({kind} {value})"
            out.append(Contact(scope=entry["scope"], channel=entry["channel"],
                               address=entry["address"], source="book", confidence=1.0,
                               note=note, priority=int(entry.get("priority") or 0)))
    return out


# ------------------------------------------------------------------------- candidates


def rdap_contacts(*, abuse_emails: Iterable[str], scope: str) -> list[Contact]:
    """The network's abuse role (first address most trusted)."""
    return [Contact(scope=scope, channel="email", address=email, source="rdap",
                    confidence=CONFIDENCE_HOSTING - 0.05 * min(i, 4))
            for i, email in enumerate(abuse_emails)]


def registrar_contacts(registrar: Mapping[str, Any] | None) -> list[Contact]:
    """The registrar's abuse e-mail from domain RDAP."""
    if not registrar or not registrar.get("abuse_email"):
        return []
    return [Contact(scope="registrar", channel="email", address=registrar["abuse_email"],
                    source="rdap", confidence=CONFIDENCE_REGISTRAR,
                    note=registrar.get("name"))]


def rule_contact(*, scope: str, name: str, channel: str, address: str) -> Contact:
    """A CDN's or platform's abuse channel from the rule files."""
    return Contact(scope=scope, channel=_RULE_CHANNELS.get(channel, channel), address=address,
                   source="rules", confidence=CONFIDENCE_RULES, note=name)


def guess_contact(domain: str | None, *, scope: str = "hosting") -> list[Contact]:
    """RFC 2142 ``abuse@<domain>`` — the lowest-confidence fallback (none for IP hosts)."""
    if not domain or "." not in domain:
        return []
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        return [Contact(scope=scope, channel="email", address=f"abuse@{domain}",
                        source="guess", confidence=CONFIDENCE_GUESS,
                        note="RFC 2142 role address, not verified")]
    return []


def plugin_contact(data: Any, plugin: str) -> Contact | None:
    """A contact offered by an ``ntd_contact_sources`` plugin, or None if it is not usable."""
    if not isinstance(data, Mapping):
        return None
    scope, channel, address = data.get("scope"), data.get("channel"), data.get("address")
    if scope not in SCOPES or channel not in CHANNELS:
        return None
    if not isinstance(address, str) or not address.strip():
        return None
    try:
        address = check_entry(scope=scope, channel=channel, address=address)
    except InputError:
        return None
    raw = data.get("confidence", CONFIDENCE_PLUGIN_DEFAULT)
    try:
        confidence = min(1.0, max(0.0, float(raw)))
    except (TypeError, ValueError):
        confidence = CONFIDENCE_PLUGIN_DEFAULT
    raw_source = data.get("source")
    source = raw_source if isinstance(raw_source, str) and raw_source else "plugin"
    if source == "book":
        source = "plugin"  # only the hotline's own book may claim to be the book
    note = data.get("note") if isinstance(data.get("note"), str) else None
    return Contact(scope=scope, channel=channel, address=address, source=source,
                   confidence=confidence, note=note, origin=plugin)


# ------------------------------------------------------------------------- ranking


def rank(contacts: Iterable[Contact], failures: Mapping[str, int] | None = None
         ) -> list[Contact]:
    """Apply failure penalties, drop duplicates and order: book first, then by confidence."""
    failures = failures or {}
    best: dict[tuple[str, str, str], Contact] = {}
    for contact in contacts:
        count = int(failures.get(contact.address, 0))
        if count:
            contact = replace(contact, failures=count,
                              confidence=contact.confidence * FAILURE_FACTOR ** count)
        key = (contact.scope, contact.channel, contact.address.lower())
        current = best.get(key)
        if current is None or _sort_key(contact) < _sort_key(current):
            best[key] = contact
    return sorted(best.values(), key=_sort_key)


def _sort_key(c: Contact) -> tuple[int, int, float, int, str]:
    book = 0 if c.source == "book" else 1
    return (book, -c.priority, -c.confidence, SOURCE_ORDER.get(c.source, 2), c.address)


def addresses(contacts: Iterable[Contact]) -> list[str]:
    """Distinct addresses, to ask the store for their failure counts."""
    return list(dict.fromkeys(c.address for c in contacts))
