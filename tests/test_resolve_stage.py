"""The resolve stage end to end: pipeline → DNS → ipwhois/httpx RDAP → rules → ranked contacts.

Real ipwhois and httpx code runs against the loopback lab RDAP server; DNS (NXDOMAIN and the
Team Cymru origin-AS answers) comes from a tiny loopback DNS server. The IP addresses are only
keys for those servers (ipwhois refuses reserved ranges, so they look public); nothing outside
127.0.0.1 is contacted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

import plugins.resolve
import plugins.resolve.service
from engine import hookimpl
from engine.clock import Clock
from engine.intake import submit_files
from engine.lab.rdap_server import LabRdapServer
from engine.plugin_manager import get_plugin_manager
from engine.runtime import Runtime, load_config
from engine.store import open_store
from tests.conftest import run_ntd

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

HOSTS: dict[str, Any] = {
    "www.polder.test": "185.4.1.7",
    "www.rhein.test": "46.20.3.4",
    "www.faraway.test": "41.77.9.9",
    "shop.cfsite.test": ["104.21.8.1", "2606:4700::6810:1"],
    "alice.blogspot.com": "142.250.64.1",
    "www.busy.test": "31.13.64.1",
    "www.ghost.test": "93.184.0.1",  # no registry knows it
    "www.broken.test": "77.88.8.8",  # the registry answers garbage
    **{f"site-{n}.polder.test": f"185.4.{n // 200}.{n % 200 + 1}" for n in range(40)},
}
ORIGINS = {"185.4.0.0/22": (64501, "NL"), "46.20.0.0/20": (64502, "DE")}
REGISTRARS = {
    "polder.test": ("Tulip Registrar B.V.", "9001", "abuse@tulip-registrar.test"),
    "rhein.test": ("Rhein Domains GmbH", "9002", "abuse@rhein-domains.test"),
    "faraway.test": ("Faraway Names", "9003", "abuse@faraway-names.example"),
    "cfsite.test": ("Tulip Registrar B.V.", "9001", "abuse@tulip-registrar.test"),
    "blogspot.com": ("MarkMonitor Inc.", "292", "abusecomplaints@markmonitor.test"),
    "busy.test": ("Tulip Registrar B.V.", "9001", "abuse@tulip-registrar.test"),
    "ghost.test": ("Tulip Registrar B.V.", "9001", "abuse@tulip-registrar.test"),
    "broken.test": ("Tulip Registrar B.V.", "9001", "abuse@tulip-registrar.test"),
}
CONTRACT_KEYS = {"host", "ips", "asn", "network", "org", "country", "registrar", "cdn",
                 "platform", "contacts"}


# ------------------------------------------------------------------------ loopback servers


class _Dns(asyncio.DatagramProtocol):
    """NXDOMAIN for every name, except Team Cymru origin TXT answers for ORIGINS."""

    def __init__(self) -> None:
        self.queries: Counter[str] = Counter()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        name = query.question[0].name.to_text()
        self.queries[name] += 1
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        answer = _cymru(name)
        if answer is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.append(dns.rrset.from_text_list(name, 300, "IN", "TXT",
                                                            [f'"{answer}"']))
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


def _cymru(name: str) -> str | None:
    suffix = ".origin.asn.cymru.com."
    if not name.endswith(suffix):
        return None
    ip = ipaddress.ip_address(".".join(reversed(name[: -len(suffix)].split("."))))
    for cidr, (asn, cc) in ORIGINS.items():
        if ip in ipaddress.ip_network(cidr):
            return f"{asn} | {cidr} | {cc} | ripencc | 2015-03-02"
    return None


@pytest.fixture
async def dns_server() -> AsyncIterator[tuple[str, _Dns]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Dns, local_addr=("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}", proto
    finally:
        transport.close()


@pytest.fixture
async def srv() -> AsyncIterator[LabRdapServer]:
    async with LabRdapServer() as server:
        server.add_hoster(name="Polder Hosting", country="NL", cidr="185.4.0.0/22", asn=64501,
                          abuse_email="abuse@polder-hosting.test", abuse_phone="+31.205550100")
        server.add_hoster(name="Rhein Rechenzentrum", country="DE", cidr="46.20.0.0/20",
                          asn=64502, abuse_email="abuse@rhein-rz.test", inline_entities=False,
                          org_name="Rhein Rechenzentrum GmbH")
        server.add_hoster(name="Faraway Hosting", country="QZ", cidr="41.77.0.0/20", asn=64503,
                          abuse_email="abuse@faraway.example", style="arin")
        server.add_hoster(name="Cloudflare", country="US", cidr="104.16.0.0/13", asn=13335,
                          abuse_email="abuse@cloudflare.example", style="arin",
                          org_name="Cloudflare, Inc.")
        server.add_hoster(name="Google", country="US", cidr="142.250.0.0/15", asn=15169,
                          abuse_email="network-abuse@google.example", style="arin",
                          org_name="Google LLC")
        server.add_hoster(name="Busy Networks", country="NL", cidr="31.13.0.0/16", asn=64505,
                          abuse_email="abuse@busy.test", style="arin")
        server.override("/ip/77.88.", body=b'{"objectClassName": "ip network", "handle": ')
        for domain, (name, iana, email) in REGISTRARS.items():
            server.add_registrar_domain(domain=domain, registrar_name=name, iana_id=iana,
                                        abuse_email=email)
        yield server


def _config(srv: LabRdapServer, dns_addr: str) -> dict[str, dict[str, Any]]:
    return {
        "pipeline": {"poll_seconds": 0.05, "workers": 8},
        "resolve": {"dns_server": dns_addr, "timeout": 2.0, "retry_minutes": 10.0},
        "resolve.hosts": HOSTS,
        "rdap": {"ip_base_url": srv.base_url, "backoff_base": 0.01, "retries": 2,
                 "domain_base_urls": {"test": srv.base_url, "com": srv.base_url}},
    }


def lab_runtime(db: Path, srv: LabRdapServer, dns_addr: str, *, clock: Clock | None = None,
                extra: list[tuple[str, object]] | None = None, pm_hook: Any = None) -> Runtime:
    """A runtime with ONLY the resolve plugin (fetch/match and later stages stay out)."""
    pm = get_plugin_manager(load_entrypoints=False,
                            extra_plugins=[("resolve", plugins.resolve), *(extra or [])])
    if pm_hook is not None:
        pm_hook(pm)
    config = load_config(pm, None, _config(srv, dns_addr))
    return Runtime(pm=pm, config=config, store=open_store(str(db)),
                   clock=clock or Clock(fixed=T0))


def confirmed(rt: Runtime, tmp_path: Path, *hosts: str) -> list[str]:
    """Submit one URL per host and move the cases to ``confirmed`` (the stage's input)."""
    src = tmp_path / f"u{len(list(tmp_path.iterdir()))}.txt"
    src.write_text("".join(f"http://{h}/gallery/1.html\n" for h in hosts))
    ids = list(submit_files(rt.store, [str(src)], keep_case_ids=True).case_ids)
    for case_id in ids:
        rt.store.transition(case_id, state="confirmed", stage="test", actor="test",
                            action="confirmed", now=rt.clock.now_text())
    return ids


async def run(rt: Runtime) -> None:
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)


def _contacts(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(c["scope"], c["channel"], c["address"], c["source"]) for c in res["contacts"]]


# ------------------------------------------------------------------------ outcomes


async def test_resolve_hosters_cdn_and_platform(db_path, tmp_path, srv, dns_server) -> None:
    rt = lab_runtime(db_path, srv, dns_server[0])
    ids = confirmed(rt, tmp_path, "www.polder.test", "www.rhein.test", "www.faraway.test",
                    "shop.cfsite.test", "alice.blogspot.com")
    await run(rt)
    nl, de, qz, cf, blog = (rt.store.get_case(i) for i in ids)
    for case in (nl, de, qz, cf, blog):
        assert case["state"] == "resolved", case["state_reason"]
        res = case["resolution"]
        assert CONTRACT_KEYS <= set(res)
        assert all(0.0 <= c["confidence"] <= 1.0 for c in res["contacts"])
        assert [c["confidence"] for c in res["contacts"] if c["source"] != "book"] == sorted(
            (c["confidence"] for c in res["contacts"] if c["source"] != "book"), reverse=True)
    # NL hoster (RIPE style: ASN from Team Cymru over DNS).
    res = nl["resolution"]
    assert (res["host"], res["ips"], res["asn"], res["network"], res["org"], res["country"]) == (
        "www.polder.test", ["185.4.1.7"], 64501, "185.4.0.0/22", "Polder Hosting B.V.", "NL")
    assert res["registrar"] == {
        "name": "Tulip Registrar B.V.", "iana_id": "9001",
        "abuse_email": "abuse@tulip-registrar.test", "abuse_phone": None,
        "registry": srv.base_url, "created": "2019-04-01T12:00:00Z",
        "status": ["client transfer prohibited"], "domain": "polder.test"}
    assert (res["cdn"], res["platform"], res["abuse_phones"]) == (None, None, ["+31.205550100"])
    assert _contacts(res) == [
        ("hosting", "email", "abuse@polder-hosting.test", "rdap"),
        ("registrar", "email", "abuse@tulip-registrar.test", "rdap"),
        ("hosting", "email", "abuse@polder.test", "guess")]
    assert [c["confidence"] for c in res["contacts"]] == [0.9, 0.75, 0.2]
    [event] = [e for e in nl["events"] if e["stage"] == "resolve"]
    assert event["action"] == "resolved" and event["actor"] == "resolve"
    assert event["detail"]["top_contact"] == "abuse@polder-hosting.test"
    # DE hoster: organisation only in /entity/<handle>.
    res = de["resolution"]
    assert (res["country"], res["asn"], res["org"]) == ("DE", 64502, "Rhein Rechenzentrum GmbH")
    assert res["contacts"][0]["address"] == "abuse@rhein-rz.test"
    # A country without a hotline: recorded as such for routing (ARIN style, ASN in RDAP).
    res = qz["resolution"]
    assert (res["country"], res["asn"], res["org"]) == ("QZ", 64503, "Faraway Hosting B.V.")
    # CDN-fronted: the network is Cloudflare's, so its abuse desk is scoped "cdn".
    res = cf["resolution"]
    assert res["cdn"] == "Cloudflare" and res["asn"] == 13335
    assert res["ips"] == ["104.21.8.1", "2606:4700::6810:1"]
    assert ("cdn", "email", "abuse@cloudflare.example", "rdap") in _contacts(res)
    assert ("cdn", "form", "https://abuse.cloudflare.com/", "rules") in _contacts(res)
    # Platform sub-domain: the platform's own channel is listed, the guess goes to it too.
    res = blog["resolution"]
    assert res["platform"] == "Blogger" and res["platform_rule"] == "*.blogspot.com"
    assert res["registrar"]["name"] == "MarkMonitor Inc."
    assert ("platform", "form", "https://support.google.com/blogger/answer/76315",
            "rules") in _contacts(res)
    assert ("platform", "email", "abuse@blogspot.com", "guess") == _contacts(res)[-1]
    rt.close()


async def test_registry_429_then_success(db_path, tmp_path, srv, dns_server) -> None:
    srv.script("/ip/31.13.", [429, 429])
    srv.script("/domain/busy.test", [429])
    rt = lab_runtime(db_path, srv, dns_server[0])
    [case_id] = confirmed(rt, tmp_path, "www.busy.test")
    await run(rt)
    case = rt.store.get_case(case_id)
    assert case["state"] == "resolved"
    assert case["resolution"]["org"] == "Busy Networks B.V."
    assert case["resolution"]["registrar"]["iana_id"] == "9001"
    assert srv.requests["/ip/31.13.64.1"] == 3 and srv.requests["/domain/busy.test"] == 2
    rt.close()


async def test_rate_limit_exhausted_is_retried_later(db_path, tmp_path, srv,
                                                     dns_server) -> None:
    srv.script("/ip/31.13.", [429] * 3)  # retries=2: three attempts, all refused
    clock = Clock(fixed=T0)
    rt = lab_runtime(db_path, srv, dns_server[0], clock=clock)
    [case_id] = confirmed(rt, tmp_path, "www.busy.test")
    await run(rt)
    case = rt.store.get_case(case_id)
    assert (case["state"], case["state_reason"]) == ("unresolved", "rdap_rate_limited")
    assert case["retry_at"] == "2026-12-01T09:10:00.000000Z"  # retry_minutes=10
    assert "gave up after 3 attempts" in case["events"][-1]["detail"]["error"]
    await run(rt)  # not due yet: nothing happens
    assert rt.store.get_case(case_id)["state"] == "unresolved"
    clock.advance(601)
    await run(rt)  # the registry has calmed down
    case = rt.store.get_case(case_id)
    assert case["state"] == "resolved" and case["resolution"]["country"] == "NL"
    rt.close()


async def test_malformed_rdap_keeps_the_case(db_path, tmp_path, srv, dns_server) -> None:
    rt = lab_runtime(db_path, srv, dns_server[0])
    [case_id] = confirmed(rt, tmp_path, "www.broken.test")
    await run(rt)
    case = rt.store.get_case(case_id)
    assert (case["state"], case["state_reason"]) == ("unresolved", "rdap_malformed_rdap")
    assert case["retry_at"] > case["updated_at"]
    event = case["events"][-1]
    assert event["action"] == "unresolved" and event["detail"]["attempts"] == 1
    assert event["detail"]["error"].startswith("hosting network of 77.88.8.8: malformed RDAP")
    assert event["detail"]["ips"] == ["77.88.8.8"]  # what DNS found is kept as evidence
    assert srv.count("ip") == 1  # a malformed answer is not retried at once
    rt.close()


async def test_unknown_ip_and_nxdomain(db_path, tmp_path, srv, dns_server) -> None:
    rt = lab_runtime(db_path, srv, dns_server[0])
    ghost, lost = confirmed(rt, tmp_path, "www.ghost.test", "lost.test")
    await run(rt)
    case = rt.store.get_case(ghost)
    assert (case["state"], case["state_reason"]) == ("unresolved", "rdap_not_found")
    assert "answered 404" in case["events"][-1]["detail"]["error"]
    case = rt.store.get_case(lost)
    assert (case["state"], case["state_reason"]) == ("unresolved", "dns_nxdomain")
    assert case["retry_at"] == "2026-12-01T09:10:00.000000Z"
    assert case["events"][-1]["detail"]["dns_outcome"] == "nxdomain"
    assert dns_server[1].queries["lost.test."] == 2  # A and AAAA
    rt.close()


async def test_attempts_back_off_then_fail(db_path, tmp_path, srv, dns_server) -> None:
    clock = Clock(fixed=T0)
    rt = lab_runtime(db_path, srv, dns_server[0], clock=clock)
    rt.config.values["resolve"]["max_attempts"] = 3
    [case_id] = confirmed(rt, tmp_path, "lost.test")
    retry_at = []
    for _ in range(3):
        await run(rt)
        case = rt.store.get_case(case_id)
        retry_at.append(case["retry_at"])
        clock.advance(3 * 3600)
    assert retry_at[:2] == ["2026-12-01T09:10:00.000000Z", "2026-12-01T12:20:00.000000Z"]
    assert (case["state"], case["state_reason"]) == ("failed", "dns_nxdomain")
    rt.close()


async def test_registrar_failure_still_resolves(db_path, tmp_path, srv, dns_server) -> None:
    srv.override("/domain/rhein.test", body=b"[]")
    rt = lab_runtime(db_path, srv, dns_server[0])
    [case_id] = confirmed(rt, tmp_path, "www.rhein.test")
    await run(rt)
    case = rt.store.get_case(case_id)
    res = case["resolution"]
    assert case["state"] == "resolved" and res["registrar"] is None
    assert res["notes"][0].startswith("registrar lookup failed (malformed_rdap)")
    assert [c["scope"] for c in res["contacts"]] == ["hosting", "hosting"]  # rdap, guess
    rt.close()


# ------------------------------------------------------------------------ cache


async def test_cache_spares_lookups_across_cases_and_restarts(db_path, tmp_path, srv,
                                                              dns_server) -> None:
    rt = lab_runtime(db_path, srv, dns_server[0])
    ids = confirmed(rt, tmp_path, *(f"site-{n}.polder.test" for n in range(30)))
    await run(rt)
    assert {rt.store.get_case(i, events=False)["state"] for i in ids} == {"resolved"}
    # 30 cases, 30 addresses in one /22, one registrable domain: one lookup each.
    assert (srv.count("ip"), srv.count("domain")) == (1, 1)
    assert len(rt.store.cache_items("rdap-ip", rt.clock.now_text())) == 2  # range + bucket
    assert len(rt.store.cache_items("rdap-domain", rt.clock.now_text())) == 1
    rt.close()
    # A new process: fresh clients, same database — the stored cache answers.
    clock = Clock(fixed=T0)
    rt = lab_runtime(db_path, srv, dns_server[0], clock=clock)
    ids = confirmed(rt, tmp_path, *(f"site-{n}.polder.test" for n in range(30, 35)))
    await run(rt)
    assert {rt.store.get_case(i, events=False)["state"] for i in ids} == {"resolved"}
    assert rt.store.get_case(ids[0])["resolution"]["org"] == "Polder Hosting B.V."
    assert (srv.count("ip"), srv.count("domain")) == (1, 1)
    rt.close()
    # After the TTL (24 h by default) the cache is stale and the registry is asked again.
    clock.advance(86400 + 1)
    rt = lab_runtime(db_path, srv, dns_server[0], clock=clock)
    [case_id] = confirmed(rt, tmp_path, "site-35.polder.test")
    await run(rt)
    assert rt.store.get_case(case_id)["state"] == "resolved"
    assert (srv.count("ip"), srv.count("domain")) == (2, 2)
    rt.close()


# ------------------------------------------------------------------------ contacts


async def test_contacts_book_wins_and_failures_rank_lower(db_path, tmp_path, srv,
                                                          dns_server) -> None:
    rt = lab_runtime(db_path, srv, dns_server[0])
    now = rt.clock.now_text()
    rt.store.contacts_add(match_kind="asn", match_value="64501", scope="hosting",
                          channel="api", address="https://api.polder-hosting.test/abuse",
                          priority=0, note="Polder's notice API", now=now)
    rt.store.contacts_add(match_kind="domain", match_value="polder.test", scope="hosting",
                          channel="email", address="noc@polder-hosting.test", priority=5,
                          now=now)
    rt.store.contacts_add(match_kind="org", match_value="nobody b.v.", scope="hosting",
                          channel="email", address="x@nobody.test", now=now)
    rt.store.contact_failed("abuse@polder-hosting.test", "550 mailbox unavailable", now)
    [case_id] = confirmed(rt, tmp_path, "www.polder.test")
    await run(rt)
    contacts = rt.store.get_case(case_id)["resolution"]["contacts"]
    assert [(c["address"], c["source"], c["confidence"]) for c in contacts] == [
        ("noc@polder-hosting.test", "book", 1.0),  # higher priority first
        ("https://api.polder-hosting.test/abuse", "book", 1.0),
        ("abuse@tulip-registrar.test", "rdap", 0.75),
        ("abuse@polder-hosting.test", "rdap", 0.45),  # bounced once: halved
        ("abuse@polder.test", "guess", 0.2)]
    assert contacts[1]["note"] == "Polder's notice API"
    assert contacts[3]["failures"] == 1
    rt.close()


class _AbuseDbSpec:
    """The hookspec the lead adds to engine/hookspecs.py (added here while it is missing)."""

    from engine.hookspecs import hookspec

    @hookspec
    def ntd_contact_sources(self, host, resolution, ctx):  # type: ignore[no-untyped-def]
        """Extra contacts for a resolution."""


class _AbuseDb:
    """A contact-source plugin in the style of the Abusix contact DB."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None]] = []

    @hookimpl
    async def ntd_contact_sources(self, host, resolution, ctx):  # type: ignore[no-untyped-def]
        self.seen.append((host, resolution["asn"]))
        return [{"scope": "hosting", "channel": "email", "address": "Abuse@Polder-Hosting.test",
                 "source": "abusix", "confidence": 0.8},
                {"scope": "upstream", "channel": "email", "address": "abuse@transit.test",
                 "source": "abusix", "confidence": 0.7},
                {"scope": "nonsense", "channel": "email", "address": "a@b.test"}]


async def test_contact_sources_hook_adds_contacts(db_path, tmp_path, srv, dns_server) -> None:
    source = _AbuseDb()

    def add_spec(pm: Any) -> None:
        if not hasattr(pm.hook, "ntd_contact_sources"):
            pm.add_hookspecs(_AbuseDbSpec)
        pm.register(source, name="abusedb")

    rt = lab_runtime(db_path, srv, dns_server[0], pm_hook=add_spec)
    [case_id] = confirmed(rt, tmp_path, "www.polder.test")
    await run(rt)
    res = rt.store.get_case(case_id)["resolution"]
    assert source.seen == [("www.polder.test", 64501)]
    # The same address from RDAP (0.9) beats the plugin's copy (0.8); the upstream one is new.
    assert [(c["scope"], c["address"], c["source"]) for c in res["contacts"]][:3] == [
        ("hosting", "abuse@polder-hosting.test", "rdap"),
        ("registrar", "abuse@tulip-registrar.test", "rdap"),
        ("upstream", "abuse@transit.test", "abusix")]
    assert res["contacts"][2]["plugin"] == "abusedb"
    assert res["notes"] == ["plugin 'abusedb' offered an unusable contact"]
    rt.close()


# ------------------------------------------------------------------------ command line


def _fixture_entry_point(tmp_path: Path) -> Path:
    """A dist-info that declares the resolve plugin (until pyproject.toml carries it)."""
    root = tmp_path / "ep"
    info = root / "ntd_resolve_fixture-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ntd-resolve-fixture\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[ntd.plugins]\nresolve = plugins.resolve.service\n")
    return root


def _has_entry_point() -> bool:
    return any(ep.name == "resolve" for ep in metadata.entry_points(group="ntd.plugins"))


def _toml_config(path: Path, srv: LabRdapServer, dns_addr: str) -> Path:
    hosts = "\n".join(f'"{h}" = {json.dumps(v)}' for h, v in HOSTS.items())
    path.write_text(f"""
[resolve]
dns_server = "{dns_addr}"
timeout = 2.0

[resolve.hosts]
{hosts}

[rdap]
ip_base_url = "{srv.base_url}"
backoff_base = 0.01
retries = 1

[rdap.domain_base_urls]
test = "{srv.base_url}"
com = "{srv.base_url}"
""")
    return path


async def test_cli_resolve_json(db_path, tmp_path, srv, dns_server) -> None:
    cfg = _toml_config(tmp_path / "ntd.toml", srv, dns_server[0])
    plugins_path = None if _has_entry_point() else _fixture_entry_point(tmp_path)

    def ntd(*args: str) -> Any:
        return asyncio.to_thread(run_ntd, "--config", str(cfg), *args, db=db_path,
                                 plugins=plugins_path)

    assert (await ntd("db", "migrate")).returncode == 0  # the lookup cache lives there
    proc = await ntd("resolve", "HTTP://WWW.Polder.test/a/../gallery/1.html", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert CONTRACT_KEYS <= set(res)
    assert res["url"] == "http://www.polder.test/gallery/1.html"
    assert (res["ips"], res["asn"], res["country"], res["org"]) == (
        ["185.4.1.7"], 64501, "NL", "Polder Hosting B.V.")
    assert res["registrar"]["abuse_email"] == "abuse@tulip-registrar.test"
    assert res["contacts"][0] == {"scope": "hosting", "channel": "email",
                                  "address": "abuse@polder-hosting.test", "source": "rdap",
                                  "confidence": 0.9}
    # Analyst tool only: no case was created.
    assert open_store(str(db_path)).count_by_state() == {}
    # The answer was cached in the store: a second call (human output) costs no lookup.
    proc = await ntd("resolve", "http://site-3.polder.test/")
    assert proc.returncode == 0 and "185.4.0.0/22" in proc.stdout
    assert "0.90  hosting   email abuse@polder-hosting.test  (rdap)" in proc.stdout
    assert srv.count("ip") == 1
    # Unresolvable: exit 1 with the reason, JSON still printed.
    proc = await ntd("resolve", "http://lost.test/x", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["unresolved"] == "dns_nxdomain"


async def test_cli_contacts_and_bootstrap(db_path, tmp_path, srv) -> None:
    plugins_path = None if _has_entry_point() else _fixture_entry_point(tmp_path)

    def ntd(*args: str) -> Any:
        return asyncio.to_thread(run_ntd, *args, db=db_path, plugins=plugins_path)

    assert (await ntd("db", "migrate")).returncode == 0  # contacts need a database
    proc = await ntd("contacts", "add", "--match-kind", "asn", "--match", "AS64501",
                     "--scope", "hosting", "--channel", "api", "--address",
                     "https://api.polder-hosting.test/abuse", "--priority", "3", "--note",
                     "preferred", "--json")
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)
    assert first["match_value"] == "64501"
    bad = await ntd("contacts", "add", "--match-kind", "asn", "--match", "sixty",
                    "--scope", "hosting", "--channel", "email", "--address", "a@b.test")
    assert bad.returncode == 2 and "AS number" in bad.stderr
    rt = Runtime.open(db=str(db_path))
    rt.store.contacts_add(match_kind="domain", match_value="polder.test", scope="registrar",
                          channel="email", address="legal@tulip.test", now=rt.clock.now_text())
    rt.close()
    proc = await ntd("contacts", "ls", "--json")
    rows = json.loads(proc.stdout)
    assert [(r["match_kind"], r["match_value"], r["address"], r["priority"]) for r in rows] == [
        ("asn", "64501", "https://api.polder-hosting.test/abuse", 3),
        ("domain", "polder.test", "legal@tulip.test", 0)]
    proc = await ntd("contacts", "rm", str(first["id"]))
    assert proc.returncode == 0
    proc = await ntd("contacts", "rm", str(first["id"]))
    assert proc.returncode == 2 and "no contacts-book entry" in proc.stderr
    assert [r["id"] for r in open_store(str(db_path)).contacts_list()] == [rows[1]["id"]]
    # The bootstrap file is refreshed from a URL (here the loopback server) and validated.
    boot = {"version": "1.0", "services": [[["test"], ["https://rdap.lab.test/"]]]}
    srv.override("/dns.json", body=json.dumps(boot), content_type="application/json")
    target = tmp_path / "dns.json"
    proc = await ntd("rdap", "update-bootstrap", "--url", f"{srv.base_url}/dns.json",
                     "--file", str(target))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(target.read_text())["services"] == boot["services"]


def test_contacts_book_input_checks() -> None:
    from engine.errors import InputError
    from plugins.resolve.contacts import check_entry, normalise_match

    assert normalise_match("domain", "Polder.TEST.") == "polder.test"
    assert normalise_match("host", "*.Bücher.test") == "*.xn--bcher-kva.test"
    assert normalise_match("org", "Polder Hosting B.V.") == "polder hosting b.v."
    assert check_entry(scope="hosting", channel="email", address="mailto:Abuse@X.test") == (
        "abuse@x.test")
    for kwargs in ({"scope": "hosting", "channel": "form", "address": "not-a-url"},
                   {"scope": "hosting", "channel": "email", "address": "no-at-sign"},
                   {"scope": "police", "channel": "email", "address": "a@b.test"}):
        with pytest.raises(InputError):
            check_entry(**kwargs)
    with pytest.raises(InputError, match="AS number"):
        normalise_match("asn", "AS-x")
