"""Routing by hand, shared by ``ntd route CASE --to``/``ntd origin`` and the console's case
page: an analyst's routes (also from ``unresolved`` and ``failed``, not only
``awaiting_routing``) and the origin host behind a CDN. One implementation for both front doors.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from engine.directory import settings_from_config
from engine.errors import InputError
from engine.routes import RECIPIENT_KINDS, ROUTE_CHANNELS, contract_routes, country_code

# The action an analyst's route implies for each recipient kind.
KIND_ACTION = {"hosting": "notice", "registrar": "notice", "cdn": "notice",
               "platform": "notice", "hotline": "forward", "police": "report",
               "interpol": "report"}



def parse_to(spec: str) -> tuple[str, str, str]:
    """``KIND:TARGET[:CHANNEL]`` → (kind, target, channel); the channel is guessed if absent.

    TARGET may itself contain colons (``hotline:https://api.example/forward:api``): the last
    part is taken as the channel only when it names one.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in RECIPIENT_KINDS or not rest:
        raise InputError(f"--to {spec!r}: expected KIND:TARGET[:CHANNEL] with KIND one of "
                         f"{', '.join(RECIPIENT_KINDS)}")
    target, sep, channel = rest.rpartition(":")
    if not sep or channel not in ROUTE_CHANNELS:
        target, channel = rest, ""
    if not target:
        raise InputError(f"--to {spec!r}: empty target")
    if not channel:
        if "@" in target:
            channel = "email"
        elif target.startswith(("http://", "https://")):
            channel = "api"
        elif kind == "hotline":
            channel = "iccam"
        else:
            raise InputError(f"--to {spec!r}: cannot tell the channel; append one of "
                             f":{', :'.join(ROUTE_CHANNELS)}")
    return kind, target, channel


def analyst_routes(specs: tuple[str, ...], *, country: str, deadline: int | None,
                   actor: str, reason: str) -> list[dict[str, Any]]:
    """Contract-shaped routes for an analyst's ``--to`` decisions."""
    routes = []
    for spec in specs:
        kind, target, channel = parse_to(spec)
        routes.append({"action": KIND_ACTION[kind], "recipient_kind": kind, "target": target,
                       "channel": channel, "country": country,
                       "deadline_hours": None if KIND_ACTION[kind] == "report" else deadline,
                       "decided_by": actor, "reason": reason})
    return contract_routes(routes)


# States an analyst may route by hand (``ntd route CASE --to``): waiting for routing, or where
# the machine could not go on (no resolution, a failure) or stopped short of routing.
MANUAL_FROM = ("awaiting_routing", "unresolved", "failed", "resolved")
# States of a case that routing has decided on: the only ones a CDN's origin can re-route.
REROUTABLE = ("routed", "awaiting_routing", "noticed", "monitoring", "escalated", "reappeared")
CONTACT_CHANNELS = ("email", "form", "api")


def parse_contact(spec: str) -> dict[str, Any]:
    """``ADDRESS[:CHANNEL]`` → a hosting contact in the resolution's contract shape."""
    address, sep, channel = spec.rpartition(":")
    if not sep or channel not in CONTACT_CHANNELS:
        address, channel = spec, ""
    address = address.strip()
    if not channel:
        if "@" in address and not address.startswith(("http://", "https://")):
            channel = "email"
        elif address.startswith("https://"):
            channel = "form"
        else:
            raise InputError(f"--contact {spec!r}: expected an e-mail address or an https:// "
                             f"URL, optionally with :{', :'.join(CONTACT_CHANNELS)}")
    return {"scope": "hosting", "channel": channel, "address": address, "source": "analyst",
            "confidence": 1.0}


def route_by_hand(rt: Any, case_id: str, specs: tuple[str, ...] | list[str], *,
                  country: str | None, deadline: int | None, actor: str,
                  reason: str | None) -> list[dict[str, Any]]:
    """Route a case by hand (``KIND:TARGET[:CHANNEL]`` specs) from ``MANUAL_FROM``; returns
    the routes. ``InputError`` for bad specs, an unknown case or a state that cannot."""
    found = rt.store.get_case(case_id, events=False)
    if found is None:
        raise InputError(f"no case {case_id!r}")
    settings = settings_from_config(rt.config)
    resolution = found.get("resolution") or {}
    cc = (country_code(country) if country else None)
    if country and cc is None:
        raise InputError(f"--country {country!r}: expected an ISO 3166 alpha-2 code")
    cc = cc or country_code(resolution.get("country")) or settings.home_country
    hours = deadline if deadline is not None else settings.deadline(cc)
    routes = analyst_routes(tuple(specs), country=cc, deadline=hours, actor=actor,
                            reason=reason or "routed by an analyst")
    rt.store.transition(case_id, state="routed", stage="route", actor=actor,
                        action="routed", now=rt.clock.now_text(),
                        detail={"decided_by": [r["decided_by"] for r in routes],
                                "override": True},
                        data={"routes": routes, "escalation": []},
                        expect=list(MANUAL_FROM))
    return routes


def set_origin(rt: Any, case_id: str, *, country: str, contacts: tuple[str, ...] | list[str],
               ips: tuple[str, ...] | list[str], note: str | None,
               actor: str) -> dict[str, Any]:
    """Record the origin host behind a CDN and return the case to ``resolved`` (the next run
    routes it to the CDN and to the origin's hoster, hotline or police by its country)."""
    found = rt.store.get_case(case_id, events=False)
    if found is None:
        raise InputError(f"no case {case_id!r}")
    resolution = found.get("resolution") or {}
    if not resolution.get("cdn"):
        raise InputError(f"case {case_id} is not behind a CDN (its resolution names none)")
    cc = country_code(country)
    if cc is None:
        raise InputError(f"--country {country!r}: expected an ISO 3166 alpha-2 code")
    now = rt.clock.now_text()
    # Who recorded it, and the note, go to the trail only (anonymisation clears notes
    # there; case data keeps the origin as long as the case).
    addresses = []
    for ip in ips:
        try:
            addresses.append(str(ipaddress.ip_address(ip.strip())))
        except ValueError as exc:
            raise InputError(f"--ip {ip!r}: not an IP address") from exc
    origin: dict[str, Any] = {"country": cc, "countries": [cc],
                              "contacts": [parse_contact(c) for c in contacts],
                              "ips": addresses, "at": now}
    detail: dict[str, Any] = {"cdn": resolution["cdn"], "origin_country": cc,
                              "origin_contacts": len(origin["contacts"])}
    if note:
        detail["note"] = note
    # (a worker holding the case loses its lease: its commit cannot undo the re-route)
    rt.store.transition(case_id, state="resolved", stage="route", actor=actor,
                        action="origin_known", now=now, detail=detail,
                        data={"resolution": {**resolution, "origin": origin}},
                        expect=REROUTABLE)
    result = {"id": case_id, "state": "resolved", "cdn": resolution["cdn"],
              "origin": origin}
    return result
