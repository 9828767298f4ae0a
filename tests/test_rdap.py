"""plugins.resolve.rdap: the real ipwhois and httpx code against the loopback lab RDAP server.

The IP addresses below are only keys for the loopback server (ipwhois refuses TEST-NET and other
reserved ranges, so they have to look public); nothing outside 127.0.0.1 is contacted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from engine.errors import ResolutionError
from engine.lab.rdap_server import LabRdapServer
from plugins.resolve.dns import OriginAsn
from plugins.resolve.hosting_rules import HostingRules
from plugins.resolve.rdap import (
    DEFAULT_BOOTSTRAP_FILE,
    DomainRdapClient,
    IpRdapClient,
    MemoryRdapCache,
    NetworkInfo,
    RewritingOpener,
    _ipwhois_rdap,
    load_bootstrap,
    registered_domain,
    update_bootstrap,
)

NL_NET, DE_NET, QZ_NET, CF_NET = "185.4.0.0/22", "46.20.0.0/20", "41.77.0.0/20", "104.16.0.0/13"


@pytest.fixture
async def srv() -> AsyncIterator[LabRdapServer]:
    async with LabRdapServer() as server:
        server.add_hoster(name="Polder Hosting", country="NL", cidr=NL_NET, asn=64501,
                          abuse_email="Abuse@Polder-Hosting.test", abuse_phone="+31.205550100")
        server.add_hoster(name="Rhein Rechenzentrum", country="DE", cidr=DE_NET, asn=64502,
                          abuse_email="abuse@rhein-rz.test", inline_entities=False,
                          org_name="Rhein Rechenzentrum GmbH")
        server.add_hoster(name="Faraway Hosting", country="QZ", cidr=QZ_NET, asn=64503,
                          abuse_email="abuse@faraway.example", style="arin")
        server.add_hoster(name="Cloudflare", country="US", cidr=CF_NET, asn=13335,
                          abuse_email="abuse@cloudflare.example", style="arin",
                          org_name="Cloudflare, Inc.")
        server.add_hoster(name="V6 Hoster", country="NL", cidr="2a0b:4d00::/32", asn=64504,
                          abuse_email="abuse@v6.test")
        yield server


def _client(srv: LabRdapServer, **kw: object) -> IpRdapClient:
    kw.setdefault("backoff_base", 0.01)
    return IpRdapClient(base_url=srv.base_url, proxy=None, cache=MemoryRdapCache(), **kw)


# ---------------------------------------------------------------------------- IP → network


async def test_ip_lookup_hoster_nl(srv: LabRdapServer) -> None:
    async def origin(ip: str) -> OriginAsn:
        return OriginAsn(asn=64501, cidr=NL_NET, country="NL", registry="ripencc")

    info = await _client(srv, asn_lookup=origin).lookup("185.4.1.7")
    assert info == NetworkInfo(
        asn=64501, asn_cidr=NL_NET, network_name="POLDERHOSTIN-NET", cidr=NL_NET,
        org="Polder Hosting B.V.", country="NL",
        abuse_emails=["abuse@polder-hosting.test"], abuse_phones=["+31.205550100"],
        raw_source="https://rdap-bootstrap.arin.net/bootstrap/ip/185.4.1.7",
        handle="NET-POLDERHOSTIN-185.4.0.0",
    )
    assert json.loads(json.dumps(info.to_dict()))["abuse_emails"] == info.abuse_emails
    assert srv.requests["/ip/185.4.1.7"] == 1


async def test_ip_lookup_hoster_de_fetches_entity(srv: LabRdapServer) -> None:
    info = await _client(srv).lookup("46.20.3.4")
    assert info.country == "DE" and info.cidr == DE_NET
    assert info.org == "Rhein Rechenzentrum GmbH"  # only in /entity/<handle>
    assert info.abuse_emails == ["abuse@rhein-rz.test"]
    assert info.asn is None  # RIPE-style answers carry no origin AS
    assert srv.count("entity") == 1


async def test_ip_lookup_country_without_hotline(srv: LabRdapServer) -> None:
    info = await _client(srv).lookup("41.77.9.9")
    assert (info.country, info.asn, info.org) == ("QZ", 64503, "Faraway Hosting B.V.")
    assert info.abuse_emails == ["abuse@faraway.example"]  # nested under the org (ARIN style)


async def test_ip_lookup_cdn_fronted(srv: LabRdapServer) -> None:
    info = await _client(srv).lookup("104.21.8.1")
    assert info.asn == 13335 and info.cidr == CF_NET
    rules = HostingRules.builtin()
    assert rules.cdn_for("104.21.8.1", info.asn) == "Cloudflare"


async def test_ip_lookup_ipv6(srv: LabRdapServer) -> None:
    info = await _client(srv).lookup("2a0b:4d00:1::80")
    assert info.cidr == "2a0b:4d00::/32" and info.abuse_emails == ["abuse@v6.test"]


async def test_ip_lookup_through_rewriting_proxy_and_registry_redirect(
        srv: LabRdapServer) -> None:
    # Production shape: ARIN's bootstrap redirects to the RIR; both hops go through the proxy.
    srv.override("/rdap-bootstrap.arin.net/bootstrap/ip/", status=302,
                 headers={"Location": "https://rdap.db.ripe.net/ip/185.4.2.2"})
    client = IpRdapClient(base_url=None, proxy=srv.base_url, cache=MemoryRdapCache())
    info = await client.lookup("185.4.2.2")
    assert info.country == "NL"
    assert info.raw_source == "https://rdap.db.ripe.net/ip/185.4.2.2"
    assert srv.requests["/rdap.db.ripe.net/ip/185.4.2.2"] == 1


async def test_ip_lookup_429_then_success(srv: LabRdapServer) -> None:
    srv.script("/ip/", [429, 429])
    client = _client(srv, retries=3)
    info = await client.lookup("185.4.0.9")
    assert info.country == "NL"
    assert client.lookups == 3 and srv.count("ip") == 3


async def test_ip_lookup_429_exhausted(srv: LabRdapServer) -> None:
    srv.script("/ip/", [429] * 5)
    client = _client(srv, retries=2)
    with pytest.raises(ResolutionError) as info:
        await client.lookup("185.4.0.9")
    assert info.value.reason == "rate_limited" and "3 attempts" in str(info.value)
    assert srv.count("ip") == 3


async def test_ip_lookup_malformed_json(srv: LabRdapServer) -> None:
    srv.override("/ip/185.4.3.", body=b'{"objectClassName": "ip network", "handle": ')
    with pytest.raises(ResolutionError) as info:
        await _client(srv).lookup("185.4.3.3")
    assert info.value.reason == "malformed_rdap" and "not JSON" in str(info.value)
    assert srv.count("ip") == 1  # not retried


@pytest.mark.parametrize("body", [
    {"objectClassName": "ip network", "startAddress": "185.4.0.0"},  # no handle
    {"objectClassName": "ip network", "handle": "X", "ipVersion": "v4",
     "startAddress": "9.9.9.0", "endAddress": "9.9.9.255"},  # does not contain the IP
    ["not", "an", "object"],
    {"objectClassName": "ip network", "handle": "X", "ipVersion": "v4",
     "startAddress": "185.4.0.0", "endAddress": "185.4.3.255", "entities": "oops"},
])
async def test_ip_lookup_malformed_rdap(srv: LabRdapServer, body: object) -> None:
    srv.override("/ip/185.4.3.", body=json.dumps(body))
    with pytest.raises(ResolutionError) as info:
        await _client(srv).lookup("185.4.3.3")
    assert info.value.reason == "malformed_rdap"


async def test_ip_lookup_unknown_is_not_found(srv: LabRdapServer) -> None:
    client = _client(srv)
    with pytest.raises(ResolutionError) as info:
        await client.lookup("9.9.9.9")
    assert info.value.reason == "not_found" and "404" in str(info.value)
    assert client.lookups == 1


async def test_ip_lookup_reserved_and_bad_addresses(srv: LabRdapServer) -> None:
    client = _client(srv)
    for ip, reason in (("192.0.2.1", "reserved_address"), ("10.1.2.3", "reserved_address"),
                       ("not-an-ip", "bad_address")):
        with pytest.raises(ResolutionError) as info:
            await client.lookup(ip)
        assert info.value.reason == reason
    assert srv.count("ip") == 0


async def test_ip_lookup_unreachable_registry() -> None:
    async with LabRdapServer() as gone:
        url = gone.base_url
    client = IpRdapClient(base_url=url, proxy=None, retries=1, backoff_base=0.01)
    with pytest.raises(ResolutionError) as info:
        await client.lookup("185.4.1.1")
    assert info.value.reason == "unreachable" and client.lookups == 2


async def test_cache_one_lookup_per_range(srv: LabRdapServer) -> None:
    client = _client(srv, max_in_flight=4)
    ips = [f"185.4.{i // 250}.{i % 250 + 1}" for i in range(100)]
    results = await asyncio.gather(*(client.lookup(ip) for ip in ips))
    assert {r.cidr for r in results} == {NL_NET}
    assert srv.count("ip") == 1 and client.lookups == 1 and client.cache_hits == 99


async def test_cache_ttl_expiry_and_persisted_index(srv: LabRdapServer) -> None:
    now = [0.0]
    cache = MemoryRdapCache(clock=lambda: now[0])
    first = IpRdapClient(base_url=srv.base_url, proxy=None, cache=cache, ttl_seconds=60,
                         clock=lambda: now[0])
    await first.lookup("46.20.0.1")
    # A new client (a restart) sharing the cache finds the range through the persisted index.
    second = IpRdapClient(base_url=srv.base_url, proxy=None, cache=cache, ttl_seconds=60,
                          clock=lambda: now[0])
    assert (await second.lookup("46.20.15.254")).cidr == DE_NET
    assert second.lookups == 0
    now[0] = 61.0
    await second.lookup("46.20.0.2")
    assert second.lookups == 1 and srv.count("ip") == 2


async def test_semaphore_bounds_threads(srv: LabRdapServer) -> None:
    client = _client(srv, max_in_flight=2)
    peak, current = [0], [0]
    real = client._lookup_sync

    def counting(ip: str):  # type: ignore[no-untyped-def]
        current[0] += 1
        peak[0] = max(peak[0], current[0])
        try:
            return real(ip)
        finally:
            current[0] -= 1

    client._lookup_sync = counting  # type: ignore[method-assign]
    await asyncio.gather(*(client.lookup(ip) for ip in
                           ("185.4.0.1", "46.20.0.1", "41.77.0.1", "104.16.0.1", "2a0b:4d00::1")))
    assert client.lookups == 5 and 1 <= peak[0] <= 2


def test_ipwhois_runs_from_thread_server_without_system_resolver() -> None:
    server = LabRdapServer().start_in_thread()
    try:
        server.add_hoster(name="Thread Hoster", country="DE", cidr="80.10.0.0/16", asn=64510,
                          abuse_email="abuse@thread.test")
        opener = RewritingOpener(base_url=server.base_url)
        results = _ipwhois_rdap("80.10.2.3", opener, 5.0, use_ipwhois_class=False)
        assert results["network"]["cidr"] == "80.10.0.0/16"
        assert server.requests["/ip/80.10.2.3"] == 1
    finally:
        server.stop()


def test_rewriting_opener_rules() -> None:
    both = RewritingOpener(base_url="http://127.0.0.1:1/base/", proxy="http://127.0.0.1:2")
    assert both.rewrite("https://rdap-bootstrap.arin.net/bootstrap/ip/1.2.3.4") == (
        "http://127.0.0.1:1/base/ip/1.2.3.4")
    proxy = RewritingOpener(proxy="http://127.0.0.1:2/")
    assert proxy.rewrite("https://rdap.apnic.net/ip/1.2.3.4?x=1") == (
        "http://127.0.0.1:2/rdap.apnic.net/ip/1.2.3.4?x=1")
    assert proxy.rewrite("http://127.0.0.1:2/a/b") == "http://127.0.0.1:2/a/b"
    assert RewritingOpener().rewrite("https://x.example/ip/1") == "https://x.example/ip/1"


# ---------------------------------------------------------------------------- domain → registrar


@pytest.fixture
async def domains(srv: LabRdapServer) -> LabRdapServer:
    srv.add_registrar_domain(domain="hoster-1.test", registrar_name="Lab Registrar B.V.",
                             iana_id="9999", abuse_email="abuse@lab-registrar.test",
                             abuse_phone="+31.205550199", created="2021-02-03T04:05:06Z",
                             status=["active", "client transfer prohibited"])
    srv.add_registrar_domain(domain="freesites.example", registrar_name="Example Registrar",
                             iana_id=None, abuse_email=None)
    return srv


def _domains(srv: LabRdapServer, **kw: object) -> DomainRdapClient:
    kw.setdefault("backoff_base", 0.01)
    return DomainRdapClient(base_url_override={"test": srv.base_url, "example": srv.base_url},
                            cache=MemoryRdapCache(), **kw)


async def test_domain_lookup_registrar(domains: LabRdapServer) -> None:
    async with _domains(domains) as client:
        info = await client.lookup("www.shop.hoster-1.test")
    assert info is not None
    assert (info.name, info.iana_id, info.abuse_email, info.abuse_phone) == (
        "Lab Registrar B.V.", "9999", "abuse@lab-registrar.test", "+31.205550199")
    assert info.created == "2021-02-03T04:05:06Z"
    assert info.status == ["active", "client transfer prohibited"]
    assert info.registry == domains.base_url and info.domain == "hoster-1.test"
    assert domains.requests["/domain/hoster-1.test"] == 1


async def test_domain_lookup_platform_subdomain(domains: LabRdapServer) -> None:
    rules = HostingRules.builtin()
    extra = {"platforms": [{"name": "Free Sites", "patterns": ["*.freesites.example"],
                            "abuse_channel": "email", "abuse_address": "abuse@freesites.example"}]}
    rules.add_rules(extra, where="test")
    platform = rules.platform_for("alice.freesites.example")
    assert platform is not None and platform.abuse_address == "abuse@freesites.example"
    async with _domains(domains) as client:
        info = await client.lookup("alice.freesites.example")
    assert info is not None and info.name == "Example Registrar" and info.iana_id is None
    assert info.abuse_email is None


async def test_domain_lookup_cached_and_single_flight(domains: LabRdapServer) -> None:
    async with _domains(domains) as client:
        results = await asyncio.gather(*(client.lookup(f"h{i}.hoster-1.test")
                                         for i in range(20)))
        assert {r.name for r in results if r} == {"Lab Registrar B.V."}
        await client.lookup("hoster-1.test")
    assert domains.count("domain") == 1 and client.lookups == 1


async def test_domain_lookup_404_is_none_and_negative_cached(domains: LabRdapServer) -> None:
    async with _domains(domains) as client:
        assert await client.lookup("unknown.test") is None
        assert await client.lookup("www.unknown.test") is None
    assert domains.requests["/domain/unknown.test"] == 1


async def test_domain_lookup_429_then_success(domains: LabRdapServer) -> None:
    domains.script("/domain/", [429, 503])
    async with _domains(domains, retries=3) as client:
        info = await client.lookup("hoster-1.test")
    assert info is not None and client.lookups == 3


async def test_domain_lookup_429_exhausted(domains: LabRdapServer) -> None:
    domains.script("/domain/", [429] * 4)
    async with _domains(domains, retries=1) as client:
        with pytest.raises(ResolutionError) as info:
            await client.lookup("hoster-1.test")
    assert info.value.reason == "rate_limited" and domains.count("domain") == 2


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"objectClassName": "entity"}',
                                  b'{"objectClassName": "domain", "entities": [1]}'])
async def test_domain_lookup_malformed(domains: LabRdapServer, body: bytes) -> None:
    domains.override("/domain/hoster-1.test", body=body)
    async with _domains(domains) as client:
        with pytest.raises(ResolutionError) as info:
            await client.lookup("hoster-1.test")
    assert info.value.reason == "malformed_rdap" and "hoster-1.test" in str(info.value)


async def test_domain_lookup_no_service() -> None:
    async with DomainRdapClient(cache=MemoryRdapCache()) as client:
        with pytest.raises(ResolutionError) as info:
            await client.lookup("site.invalid-tld-for-ntd")
    assert info.value.reason == "no_rdap_service"


async def test_domain_bootstrap_routing_through_proxy(domains: LabRdapServer,
                                                      tmp_path: Path) -> None:
    bootstrap = tmp_path / "dns.json"
    bootstrap.write_text(json.dumps({"version": "1.0", "services": [
        [["test"], ["http://rdap.registry.example/plain/", "https://rdap.registry.example/v1/"]],
    ]}))
    async with DomainRdapClient(bootstrap_file=bootstrap, proxy=domains.base_url,
                                cache=MemoryRdapCache()) as client:
        info = await client.lookup("hoster-1.test")
    assert info is not None and info.registry == "https://rdap.registry.example/v1/"
    assert domains.requests["/rdap.registry.example/v1/domain/hoster-1.test"] == 1


def test_shipped_bootstrap_is_iana_file() -> None:
    # The shipped table is IANA's dns.json (publication 2024-07-25, 608 services), not a
    # hand-written subset: registries without RDAP there (.de, .be, .eu, .io) are absent.
    client_table = load_bootstrap(DEFAULT_BOOTSTRAP_FILE)
    assert len(client_table) == 1179
    assert client_table["com"] == "https://rdap.verisign.com/com/v1/"
    assert client_table["nl"] == "https://rdap.sidn.nl/"
    assert client_table["uk"] == "https://rdap.nominet.uk/uk/"
    assert client_table["no"] == "https://rdap.norid.no/"
    for tld in ("de", "be", "eu", "io"):
        assert tld not in client_table


def test_registered_domain() -> None:
    assert registered_domain("a.b.shop.example.co.uk") == "example.co.uk"
    assert registered_domain("www.hoster-1.test") == "hoster-1.test"
    assert registered_domain("alice.blogspot.com") == "blogspot.com"  # ICANN suffixes only


async def test_update_bootstrap_from_loopback(srv: LabRdapServer, tmp_path: Path) -> None:
    good = {"version": "1.0", "services": [[["nl"], ["https://rdap.sidn.nl/"]],
                                           [["com", "net"], ["https://rdap.verisign.com/x/"]]]}
    srv.override("/rdap/dns.json", body=json.dumps(good), content_type="application/json")
    srv.override("/rdap/broken.json", body=b'{"services": [[["nl"], []]]}')
    target = tmp_path / "dns.json"
    async with httpx.AsyncClient(trust_env=False) as http:
        assert await update_bootstrap(f"{srv.base_url}/rdap/dns.json", target,
                                      http_client=http) == 3
        assert load_bootstrap(target)["net"] == "https://rdap.verisign.com/x/"
        with pytest.raises(ResolutionError) as info:
            await update_bootstrap(f"{srv.base_url}/rdap/broken.json", target, http_client=http)
        assert info.value.reason == "bad_bootstrap"
    assert json.loads(target.read_text()) == good  # old file kept
    assert list(tmp_path.iterdir()) == [target]  # no temp files left behind


async def test_bench_resolve_small() -> None:
    from engine.bench.resolve import bench_resolve

    figures = await bench_resolve(n_urls=300, n_hosters=10, workers=16)
    assert figures["ip_lookups"] == 10 and figures["server_ip_requests"] == 10
    assert figures["domain_lookups"] == 10 and figures["server_domain_requests"] == 10
    assert figures["warm_cache_cases_per_s"] > 0
