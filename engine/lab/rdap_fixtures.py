"""Generators of realistic RDAP JSON for the lab RDAP server (RFC 9083 shapes).

Only synthetic data: ``.test``/``.example`` names, invented organisations and handles. The IP
ranges are keys for the loopback server, never contacted. Two registry styles are modelled because
ntd must read both:

* ``"ripe"`` — abuse contact is a top-level entity next to the organisation (RIPE NCC style);
* ``"arin"`` — abuse POC nested inside the organisation entity, plus ARIN's
  ``arin_originas0_originautnums`` extension carrying the origin AS.
"""

from __future__ import annotations

import ipaddress
import zlib
from typing import Any, Literal

Json = dict[str, Any]


def vcard(
    *,
    fn: str,
    kind: str = "org",
    email: str | None = None,
    phone: str | None = None,
    country_name: str | None = None,
    country_code: str | None = None,
) -> list[Any]:
    """A jCard (RFC 7095) ``vcardArray`` value."""
    props: list[Any] = [["version", {}, "text", "4.0"], ["fn", {}, "text", fn]]
    props.append(["kind", {}, "text", kind])
    if country_name or country_code:
        params: dict[str, Any] = {"label": f"1 Example Street\n{country_name or ''}".strip()}
        if country_code:
            params["cc"] = country_code
        props.append(["adr", params, "text", ["", "", "1 Example Street", "", "", "",
                                              country_name or ""]])
    if email:
        props.append(["email", {"type": "work"}, "text", email])
    if phone:
        props.append(["tel", {"type": ["work", "voice"]}, "uri", f"tel:{phone}"])
    return ["vcard", props]


def _events(registered: str, changed: str) -> list[Json]:
    return [
        {"eventAction": "registration", "eventDate": registered},
        {"eventAction": "last changed", "eventDate": changed},
    ]


def hoster_network(
    *,
    name: str,
    country: str,
    cidr: str,
    asn: int | None,
    abuse_email: str,
    abuse_phone: str | None = None,
    org_name: str | None = None,
    style: Literal["ripe", "arin"] = "ripe",
    inline_entities: bool = True,
    port43: str | None = None,
) -> Json:
    """RDAP ``ip network`` object for a synthetic hoster.

    ``inline_entities=False`` leaves the organisation's vCard out so ipwhois must fetch
    ``/entity/<handle>`` (use :func:`entities_of` to register those entities on the server).
    """
    net = ipaddress.ip_network(cidr, strict=False)
    slug = "".join(ch for ch in name.upper() if ch.isalnum())[:12] or "HOSTER"
    org_handle = f"ORG-{slug}1-TEST"
    abuse_handle = f"AB{slug}-TEST"
    org_label = org_name or f"{name} B.V."
    abuse_entity: Json = {
        "objectClassName": "entity",
        "handle": abuse_handle,
        "roles": ["abuse"],
        "vcardArray": vcard(fn=f"{name} abuse desk", kind="group", email=abuse_email,
                            phone=abuse_phone),
    }
    org_entity: Json = {
        "objectClassName": "entity",
        "handle": org_handle,
        "roles": ["registrant"],
        "vcardArray": vcard(fn=org_label, country_name=country, country_code=country),
        "events": _events("2015-03-02T10:00:00Z", "2024-06-01T08:30:00Z"),
    }
    entities: list[Json]
    if style == "arin":
        org_entity["entities"] = [abuse_entity]
        entities = [org_entity]
    else:
        entities = [org_entity, abuse_entity]
    if not inline_entities:
        del org_entity["vcardArray"]
    body: Json = {
        "rdapConformance": ["rdap_level_0", "cidr0"],
        "objectClassName": "ip network",
        "handle": f"NET-{slug}-{str(net.network_address).replace(':', '-')}",
        "startAddress": str(net.network_address),
        "endAddress": str(net.broadcast_address),
        "ipVersion": f"v{net.version}",
        "name": f"{slug}-NET",
        "type": "ASSIGNED PA" if style == "ripe" else "DIRECT ALLOCATION",
        "country": country,
        "status": ["active"],
        "cidr0_cidrs": [
            {("v4prefix" if net.version == 4 else "v6prefix"): str(net.network_address),
             "length": net.prefixlen}
        ],
        "entities": entities,
        "events": _events("2016-01-12T09:00:00Z", "2024-05-20T12:00:00Z"),
        "links": [{"value": f"https://rdap.registry.example/ip/{net}", "rel": "self",
                   "href": f"https://rdap.registry.example/ip/{net}",
                   "type": "application/rdap+json"}],
        "notices": [{"title": "Terms and Conditions",
                     "description": ["Synthetic lab data for ntd tests."]}],
    }
    if port43:
        body["port43"] = port43
    if style == "arin" and asn is not None:
        body["arin_originas0_originautnums"] = [asn]
    return body


def entities_of(network: Json) -> dict[str, Json]:
    """Top-level entities of a network keyed by handle, as served under ``/entity/<handle>``.

    Entities whose vCard was removed (``inline_entities=False``) get it back here, as a registry
    would serve the full object on its own URL.
    """
    out: dict[str, Json] = {}
    for ent in network.get("entities", []):
        full = dict(ent)
        if "vcardArray" not in full:
            full["vcardArray"] = vcard(fn=f"Organisation {ent['handle']}",
                                       country_name=network.get("country"),
                                       country_code=network.get("country"))
        full["rdapConformance"] = ["rdap_level_0"]
        out[ent["handle"]] = full
    return out


def registrar_domain(
    *,
    domain: str,
    registrar_name: str,
    iana_id: str | None,
    abuse_email: str | None,
    abuse_phone: str | None = None,
    created: str = "2019-04-01T12:00:00Z",
    status: list[str] | None = None,
    nameservers: list[str] | None = None,
) -> Json:
    """RDAP ``domain`` object with a registrar entity and its nested abuse contact."""
    registrar: Json = {
        "objectClassName": "entity",
        "handle": iana_id or "REGISTRAR-TEST",
        "roles": ["registrar"],
        "vcardArray": vcard(fn=registrar_name),
    }
    if iana_id:
        registrar["publicIds"] = [{"type": "IANA Registrar ID", "identifier": iana_id}]
    if abuse_email or abuse_phone:
        registrar["entities"] = [{
            "objectClassName": "entity",
            "roles": ["abuse"],
            "vcardArray": vcard(fn="Abuse Contact", kind="group", email=abuse_email,
                                phone=abuse_phone),
        }]
    return {
        "rdapConformance": ["rdap_level_0", "icann_rdap_response_profile_0"],
        "objectClassName": "domain",
        "handle": f"D{zlib.crc32(domain.encode()):010d}-TEST",
        "ldhName": domain,
        "status": status or ["client transfer prohibited"],
        "events": [
            {"eventAction": "registration", "eventDate": created},
            {"eventAction": "expiration", "eventDate": "2030-04-01T12:00:00Z"},
            {"eventAction": "last update of RDAP database", "eventDate": "2026-11-30T00:00:00Z"},
        ],
        "entities": [registrar],
        "nameservers": [
            {"objectClassName": "nameserver", "ldhName": ns}
            for ns in (nameservers or [f"ns1.{domain}", f"ns2.{domain}"])
        ],
        "secureDNS": {"delegationSigned": False},
        "notices": [{"title": "Terms of Use", "description": ["Synthetic lab data."]}],
    }
