"""RDAP parsing against real published answers (tests/fixtures/rdap_real, see SOURCES.md).

Every answer is served as published by the loopback RDAP server and read through the
production code (ipwhois for IP networks, httpx for domains). The expected values are what a
person reads off each answer: the abuse address, the country, the organisation holding the
network, the registrar and the registrar's abuse address.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.lab.rdap_server import LabRdapServer
from plugins.resolve.dns import OriginAsn
from plugins.resolve.rdap import (
    DomainRdapClient,
    IpRdapClient,
    MemoryRdapCache,
    country_from_name,
    vcard_fields,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rdap_real"

# file → (address asked, range served, abuse e-mails, country, organisation)
IP_ANSWERS: dict[str, tuple[str, str, list[str], str | None, str | None]] = {
    # RIPE: the abuse role object; the registrant is a maintainer (BTENT-MNT), not an org
    "ipwhois-2a00_2381_ffff__1.json": (
        "2a00:2381:ffff::1", "2a00:2381:ffff::/64",
        ["zzdnsr@bt.com", "steve.a.marshall@bt.com", "lee.bailey-hague@bt.com"], "GB", None),
    "ipwhois-62.239.237.1.json": (
        "62.239.237.1", "62.239.237.0/24",
        ["zzdnsr@bt.com", "steve.a.marshall@bt.com", "lee.bailey-hague@bt.com"], "GB", None),
    # RIPE: three registrants, two of them maintainers; the organisation object has no vCard
    "whoisit-ip_v4_2.json": ("130.59.31.80", "130.59.0.0/16", ["abuse@switch.ch"], "CH",
                             "ORG-SG2-RIPE"),
    # APNIC: JPNIC's hostmaster is technical/administrative, no abuse role at all
    "ipwhois-2001_240_10c_1__ca20_9d1d.json": ("2001:240:10c:1::ca20:9d1d", "2001:240::/32",
                                               [], "JP", None),
    # APNIC: the abuse role is the national registry's (KRNIC) hostmaster; the ISP's own
    # abuse address is on its technical contact and comes first
    "ipwhois-210.107.73.73.json": ("210.107.73.73", "210.107.0.0/17",
                                   ["abuse@bora.net", "hostmaster@nic.or.kr"], "KR", None),
    # APNIC's own research network: its helpdesk is the abuse contact
    "whoisit-ip_v4.json": ("1.1.1.1", "1.1.1.0/24", ["helpdesk@apnic.net"], "AU", None),
    # AFRINIC: entities without roles; the one organisation is named by its handle
    "ipwhois-2001_43f8_7b0__.json": ("2001:43f8:7b0::1", "2001:43f8:7b0::/48", [], "KE",
                                     "ORG-TA38-AFRINIC"),
    "ipwhois-196.11.240.215.json": ("196.11.240.215", "196.11.240.0/24", [], "ZA",
                                    "ORG-VSA1-AFRINIC"),
    # LACNIC: the registrant organisation and an individual abuse contact
    "ipwhois-200.57.141.161.json": ("200.57.141.161", "200.57.141.161/32",
                                    ["operacion.redes@triara.com"], "MX",
                                    "Triara.com, S.A. de C.V."),
    "ipwhois-2801_10_c000__.json": ("2801:10:c000::", "2801:10:c000::/128",
                                    ["sistemas.red@uco.edu.co"], "CO",
                                    "Universidad Catolica de Oriente"),
    # ARIN: no country on the network; the registrant's vCard address label ends with it
    "ipwhois-74.125.225.229.json": ("74.125.225.229", "74.125.0.0/16",
                                    ["arin-contact@google.com"], "US", "Google Inc."),
    "ipwhois-2001_4860_4860__8888.json": (
        "2001:4860:4860::8888", "2001:4860::/32",
        ["network-abuse@google.com", "arin-contact@google.com"], "US", "Google LLC"),
    "whoisit-ip_v6.json": ("2001:4860:4860::8844", "2001:4860::/32",
                           ["network-abuse@google.com", "arin-contact@google.com"], "US",
                           "Google LLC"),
    "whoisit-ip_v4_3.json": ("13.70.1.1", "13.64.0.0/11", ["abuse@microsoft.com"], "US",
                             "Microsoft Corporation"),
    "icann-network_192_198_0_0.json": ("192.198.1.1", "192.198.0.0/22",
                                       ["daniel.petsinger@radiolinkinternet.com"], "US",
                                       "Radio Link Internet"),
}

# file → (registrar, IANA id, registrar abuse e-mail)
DOMAIN_ANSWERS: dict[str, tuple[str | None, str | None, str | None]] = {
    "whoisit-domain1.json": ("MarkMonitor Inc.", "292", "abusecomplaints@markmonitor.com"),
    "whoisit-domain3.json": ("Hosting Concepts B.V. d/b/a Registrar.eu", "1647",
                             "abuse@registrar.eu"),
    "phishingalert-verisign-BAELDUNG.COM.json": ("NameCheap, Inc.", "1068",
                                                 "abuse@namecheap.com"),
    # Namecheap's own server: the abuse entity is at the top level, not under the registrar
    "ctf-namecheap-646f776e756e646572.xyz.json": ("NAMECHEAP INC", None,
                                                  "abuse@namecheap.com"),
    "icann-microsoft.click.json": ("MarkMonitor Inc.", None,
                                   "abusecomplaints@markmonitor.com"),
    "icann-home.moscow.json": ('Limited Liability Company "Registrar of domain names REG.RU"',
                               "1606", "abuse@reg.ru"),
    # Norid and AFNIC give the registrar but no abuse role
    "whoisit-domain2.json": ("Domeneshop AS", None, None),
    "icann-lemonde.fr.json": ("NAMESHIELD", "1251", None),
    "icann-domain_afnic_fr.json": ("Registry Operations", "9999", None),
    # CZ.NIC: the registrar entity has no vCard (fetched, 404 here): named by its handle
    "phishingalert-cz.nic-cvut.cz.json": ("REG-GRANSY", None, None),
}


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def registry() -> AsyncIterator[LabRdapServer]:
    async with LabRdapServer() as server:
        for name, (_ip, cidr, *_rest) in IP_ANSWERS.items():
            server.add_response(_load(name), cidr)
        for name in DOMAIN_ANSWERS:
            server.add_domain(_load(name))
        yield server


def test_every_fixture_has_its_source_recorded() -> None:
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in FIXTURES.glob("*.json"))
    assert sorted([*IP_ANSWERS, *DOMAIN_ANSWERS]) == files
    for prefix in {f.split("-")[0] for f in files}:
        assert f"`{prefix}-" in sources, prefix


@pytest.mark.parametrize("name", sorted(IP_ANSWERS))
async def test_real_ip_answer(registry: LabRdapServer, name: str) -> None:
    ip, cidr, abuse, country, org = IP_ANSWERS[name]
    client = IpRdapClient(base_url=registry.base_url, cache=MemoryRdapCache(), retries=0)
    info = await client.lookup(ip)
    assert info.abuse_emails == abuse
    assert info.country == country
    assert info.org == org
    assert info.cidr is not None
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(info.cidr)


async def test_ripe_maintainers_are_fetched_but_never_the_organisation(
        registry: LabRdapServer) -> None:
    client = IpRdapClient(base_url=registry.base_url, cache=MemoryRdapCache(), retries=0)
    info = await client.lookup("130.59.31.80")
    # ipwhois asks for the vCard-less entities; none of the maintainers becomes the org
    assert registry.requests["/entity/SWITCH-MNT"] == 1
    assert info.org == "ORG-SG2-RIPE"


async def test_country_from_rir_delegation_data_when_the_answer_has_none(
        registry: LabRdapServer) -> None:
    # JPNIC's answer for 2001:240::/32 carries "JP"; a network whose answer names no country
    # anywhere takes the origin lookup's country (Team Cymru: the RIRs' delegation files).
    body = _load("ipwhois-2001_240_10c_1__ca20_9d1d.json")
    body.pop("country")
    for ent in body["entities"]:
        ent.pop("vcardArray")
    registry.add_response(body, "2001:240::/32")

    async def origin(ip: str) -> OriginAsn:
        return OriginAsn(asn=2497, cidr="2001:240::/32", country="JP", registry="apnic")

    client = IpRdapClient(base_url=registry.base_url, cache=MemoryRdapCache(), retries=0,
                          asn_lookup=origin)
    info = await client.lookup("2001:240:10c:1::ca20:9d1d")
    assert (info.country, info.asn) == ("JP", 2497)


def _domains(srv: LabRdapServer) -> DomainRdapClient:
    # The shipped IANA bootstrap routes each name to its real registry; the rewriting proxy
    # turns https://registry/path into the loopback server.
    return DomainRdapClient(proxy=srv.base_url, cache=MemoryRdapCache(), retries=0)


@pytest.mark.parametrize("name", sorted(DOMAIN_ANSWERS))
async def test_real_domain_answer(registry: LabRdapServer, name: str) -> None:
    registrar, iana_id, abuse = DOMAIN_ANSWERS[name]
    async with _domains(registry) as client:
        info = await client.lookup(_load(name)["ldhName"].lower())
    assert info is not None
    assert (info.name, info.iana_id, info.abuse_email) == (registrar, iana_id, abuse)


async def test_registrar_without_vcard_is_fetched(registry: LabRdapServer) -> None:
    async with _domains(registry) as client:
        await client.lookup("cvut.cz")
    assert registry.requests["/rdap.nic.cz/entity/REG-GRANSY"] == 1


async def test_thin_registry_related_link_is_followed_one_hop(registry: LabRdapServer) -> None:
    # Derived from the real Verisign answer: a thin registry gives no registrar abuse
    # contact (its nested abuse entity removed here), only the `related` link to the
    # registrar's RDAP server. There the real Namecheap answer is served.
    thin = _load("phishingalert-verisign-BAELDUNG.COM.json")
    for ent in thin["entities"]:
        ent.pop("entities", None)
    related = next(lk["href"] for lk in thin["links"] if lk["rel"] == "related")
    registrar_answer = _load("ctf-namecheap-646f776e756e646572.xyz.json")
    registrar_answer["links"] = [{"rel": "related", "href": related + "/more",
                                  "type": "application/rdap+json"}]
    registry.add_domain(thin)
    path = "/" + related.split("://", 1)[1]
    registry.override(path, body=json.dumps(registrar_answer))
    async with _domains(registry) as client:
        info = await client.lookup("baeldung.com")
        again = await client.lookup("baeldung.com")
    assert info is not None and again == info
    assert (info.name, info.abuse_email, info.abuse_phone) == (
        "NameCheap, Inc.", "abuse@namecheap.com", "+1.6613102107")
    assert info.registrar_rdap == related
    assert registry.requests[path] == 1  # one hop, cached; its own related link not followed
    assert registry.count("other") == 0 and not any("/more" in p for p in registry.requests)


def test_registrar_name_from_org_when_fn_is_missing() -> None:
    # MarkMonitor's registrar vCard as published in microsoft.click, with `fn` removed (the
    # shape MarkMonitor's own server answers with: org only).
    ent = next(e for e in _load("icann-microsoft.click.json")["entities"]
               if "registrar" in e["roles"])
    card = copy.deepcopy(ent["vcardArray"])
    card[1] = [p for p in card[1] if p[0] != "fn"] + [["org", {}, "text", "MarkMonitor Inc."]]
    assert vcard_fields(card)["fn"] is None
    assert vcard_fields(card)["org"] == "MarkMonitor Inc."


@pytest.mark.parametrize(("text", "code"), [
    ("UNITED STATES", "US"), ("United States", "US"), ("Japan", "JP"), ("GB", "GB"),
    ("Switzerland", "CH"), ("Kenya", "KE"), ("Atlantis", None),
])
def test_country_from_name(text: str, code: str | None) -> None:
    assert country_from_name(text) == code
