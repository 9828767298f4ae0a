"""plugins.resolve.dns against a tiny loopback UDP DNS server built with dnspython."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from engine.errors import ConfigError, ResolutionError
from plugins.resolve.dns import DnsResolver, normalise_host, parse_cymru_origin, parse_dns_server

# name → {"A": [...], "AAAA": [...], "CNAME": "target.", "TXT": [...]} ; special behaviours below.
ZONE: dict[str, dict[str, Any]] = {
    "www.hoster-1.test.": {"A": ["127.0.0.11", "127.0.0.12"], "AAAA": ["::1"]},
    "v4only.hoster-1.test.": {"A": ["127.0.0.13"]},
    "txtonly.hoster-1.test.": {"TXT": ["hello"]},
    "cdn.hoster-2.test.": {"CNAME": "edge.cdn.example."},
    "edge.cdn.example.": {"CNAME": "pop-7.cdn.example."},
    "pop-7.cdn.example.": {"A": ["127.0.0.21"]},
    "dangling.hoster-2.test.": {"CNAME": "gone.hoster-2.test."},
    "xn--bcher-kva.test.": {"A": ["127.0.0.31"]},
    "7.1.4.185.origin.asn.cymru.com.": {
        "TXT": ["64501 | 185.4.0.0/22 | NL | ripencc | 2015-03-02"]
    },
}
SERVFAIL = {"broken.hoster-3.test."}
DROP = {"slow.hoster-3.test."}


class _DnsServer(asyncio.DatagramProtocol):
    """Authoritative-ish answers from ZONE, following CNAMEs like a recursive resolver would."""

    def __init__(self) -> None:
        self.queries: Counter[str] = Counter()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name, rdtype = question.name.to_text(), question.rdtype
        self.queries[f"{name} {dns.rdatatype.to_text(rdtype)}"] += 1
        if name in DROP:
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if name in SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            current = name
            for _ in range(8):
                entry = ZONE.get(current)
                if entry is None:
                    # The name, or the end of its CNAME chain, does not exist.
                    response.set_rcode(dns.rcode.NXDOMAIN)
                    break
                if "CNAME" in entry:
                    response.answer.append(dns.rrset.from_text(
                        current, 300, "IN", "CNAME", entry["CNAME"]))
                    current = entry["CNAME"]
                    continue
                key = dns.rdatatype.to_text(rdtype)
                values = entry.get(key, [])
                if key == "TXT":
                    values = [f'"{v}"' for v in values]
                if values:
                    response.answer.append(
                        dns.rrset.from_text_list(current, 300, "IN", key, values))
                break
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[tuple[str, _DnsServer]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _DnsServer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        yield f"127.0.0.1:{port}", proto
    finally:
        transport.close()


async def test_resolve_a_and_aaaa(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    result = await DnsResolver(dns_server=server, timeout=2).resolve("WWW.hoster-1.test.")
    assert result.outcome == "ok"
    assert result.host == "www.hoster-1.test"
    assert sorted(result.addresses[:2]) == ["127.0.0.11", "127.0.0.12"]  # RRsets are sets
    assert result.addresses[2:] == ["::1"]
    assert result.cnames == [] and result.error is None and result.source == "dns"


async def test_resolve_follows_cname_chain(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    result = await DnsResolver(dns_server=server, timeout=2).resolve("cdn.hoster-2.test")
    assert result.outcome == "ok"
    assert result.addresses == ["127.0.0.21"]
    assert result.cnames == ["edge.cdn.example", "pop-7.cdn.example"]


async def test_resolve_nxdomain_is_an_outcome(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    result = await DnsResolver(dns_server=server, timeout=2).resolve("nope.hoster-1.test")
    assert result.outcome == "nxdomain"
    assert result.addresses == []
    assert result.error and "nope.hoster-1.test" in result.error


async def test_resolve_dangling_cname_is_nxdomain(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    result = await DnsResolver(dns_server=server, timeout=2).resolve("dangling.hoster-2.test")
    assert result.outcome == "nxdomain"


async def test_resolve_servfail_is_an_outcome(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    result = await DnsResolver(dns_server=server, timeout=2).resolve("broken.hoster-3.test")
    assert result.outcome == "servfail"
    assert result.addresses == [] and result.error


async def test_resolve_timeout_is_an_outcome(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    result = await DnsResolver(dns_server=server, timeout=0.3).resolve("slow.hoster-3.test")
    assert result.outcome == "timeout"


async def test_resolve_no_answer(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    resolver = DnsResolver(dns_server=server, timeout=2)
    assert (await resolver.resolve("txtonly.hoster-1.test")).outcome == "no_answer"
    v4 = await resolver.resolve("v4only.hoster-1.test")  # AAAA empty, A present → ok
    assert v4.outcome == "ok" and v4.addresses == ["127.0.0.13"]


async def test_resolve_idna_host(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    result = await DnsResolver(dns_server=server, timeout=2).resolve("bücher.test")
    assert result.host == "xn--bcher-kva.test" and result.addresses == ["127.0.0.31"]


async def test_static_hosts_consulted_first(dns_server: tuple[str, _DnsServer]) -> None:
    server, proto = dns_server
    resolver = DnsResolver(dns_server=server, timeout=2, hosts={
        "www.hoster-1.test": ["127.0.0.99"],
        "*.hoster-3.test": ["127.0.0.3"],
        "*.deep.hoster-3.test": ["::1"],
    })
    assert (await resolver.resolve("www.hoster-1.test")).addresses == ["127.0.0.99"]
    wild = await resolver.resolve("a.b.hoster-3.test")
    assert wild.addresses == ["127.0.0.3"] and wild.source == "static"
    assert (await resolver.resolve("x.deep.hoster-3.test")).addresses == ["::1"]
    # The wildcard does not cover the apex: that one goes to DNS (and does not exist there).
    assert (await resolver.resolve("hoster-3.test")).outcome == "nxdomain"
    assert not any(q.startswith(("www.hoster-1", "a.b.", "x.deep")) for q in proto.queries)


async def test_ip_literal_is_not_queried(dns_server: tuple[str, _DnsServer]) -> None:
    server, proto = dns_server
    result = await DnsResolver(dns_server=server).resolve("[2001:db8::1]")
    assert result.addresses == ["2001:db8::1"] and result.source == "literal"
    assert not proto.queries


async def test_resolve_addresses_raises_with_reason(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    resolver = DnsResolver(dns_server=server, timeout=2)
    assert await resolver.resolve_addresses("cdn.hoster-2.test") == ["127.0.0.21"]
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve_addresses("nope.hoster-1.test")
    assert info.value.reason == "nxdomain"


async def test_origin_asn_via_cymru_txt(dns_server: tuple[str, _DnsServer]) -> None:
    server, _ = dns_server
    resolver = DnsResolver(dns_server=server, timeout=2)
    origin = await resolver.origin_asn("185.4.1.7")
    assert origin is not None
    assert (origin.asn, origin.cidr, origin.country, origin.registry) == (
        64501, "185.4.0.0/22", "NL", "ripencc")
    assert await resolver.origin_asn("185.4.1.8") is None


def test_parse_dns_server_forms() -> None:
    assert parse_dns_server("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_dns_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_dns_server("::1") == ("::1", 53)
    assert parse_dns_server("[::1]:5353") == ("::1", 5353)
    for bad in ("dns.example", "127.0.0.1:0", "[::1", "127.0.0.1:x"):
        with pytest.raises(ConfigError, match="dns_server"):
            parse_dns_server(bad)


def test_parse_cymru_origin_variants() -> None:
    first = parse_cymru_origin("13335 209242 | 104.16.0.0/13 | US | arin | 2014-03-28")
    assert first is not None and first.asn == 13335
    assert parse_cymru_origin("NA | 1.2.3.0/24") is None
    assert parse_cymru_origin("garbage") is None


def test_normalise_host_rejects_empty() -> None:
    with pytest.raises(ResolutionError):
        normalise_host(" . ")
