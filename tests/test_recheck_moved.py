"""Moved content, re-check cadence and removal confirmation (issue 21, item 4).

A host that moves from a Dutch to a German network while it is monitored: the re-check stage
resolves it again (a loopback DNS server whose answer the test changes), sees the addresses
leave the noticed network, re-resolves through the resolve plugin (the loopback RDAP
registry), routes the new hoster through the route plugin and sends the new notices (loopback
SMTP sink) — the takedown clock keeps counting from the first notice. Two loopback web servers
on 127.0.0.2 and 127.0.0.3 (same port) stand for the two hosters; the clock is fixed and moved
by the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

import plugins.recheck
import plugins.recheck.checking as recheck
from engine import stats
from engine.clock import Clock, parse
from engine.context import fetch_policy
from engine.errors import ConfigError
from engine.intake import submit_files
from engine.lab.images import make_image, png_bytes
from engine.lab.rdap_server import LabRdapServer
from engine.lab.smtp_sink import SMTPSink
from engine.lab.webserver import LabWebServer
from engine.media.items import hash_bytes
from engine.models import Item, StageResult
from engine.plugin_manager import get_plugin_manager
from engine.runtime import Runtime, load_config
from engine.safe_fetch import SafeFetcher
from engine.store import Commit
from plugins.recheck.cli import run_sweep

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
HOST = "www.wandering.test"
NL_ADDR, DE_ADDR = "127.0.0.2", "127.0.0.3"
NL_HOSTER, DE_HOSTER = "abuse@polder-hosting.test", "abuse@rhein-rz.test"
POLICE, DE_HOTLINE = "tbkk@politie.test", "reports@hotline-de.test"
REGISTRAR = "abuse@tulip-registrar.test"
IMG = png_bytes(make_image(5))


class _Zone(asyncio.DatagramProtocol):
    """A loopback DNS server answering A records from a dict the test may change."""

    def __init__(self, zone: dict[str, list[str]]) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().rstrip(".")
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if name not in self.zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "A",
                                                            self.zone[name]))
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def zone() -> AsyncIterator[tuple[str, dict[str, list[str]]]]:
    records: dict[str, list[str]] = {HOST: [NL_ADDR]}
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Zone(records),
                                                       local_addr=("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}", records
    finally:
        transport.close()


@pytest.fixture
async def registry() -> AsyncIterator[LabRdapServer]:
    async with LabRdapServer() as server:
        server.add_hoster(name="Polder Hosting", country="NL", cidr="185.4.0.0/22", asn=64501,
                          abuse_email=NL_HOSTER, style="arin")
        server.add_hoster(name="Rhein Rechenzentrum", country="DE", cidr="46.20.0.0/20",
                          asn=64502, abuse_email=DE_HOSTER, style="arin")
        server.add_registrar_domain(domain="wandering.test", registrar_name="Tulip Registrar",
                                    iana_id="9001", abuse_email=REGISTRAR)
        yield server


@pytest.fixture
async def hosters() -> AsyncIterator[tuple[LabWebServer, LabWebServer]]:
    nl = await LabWebServer(bind=NL_ADDR, default_host=HOST).start()
    de = await LabWebServer(bind=DE_ADDR, default_host=HOST, port=nl.port).start()
    try:
        yield nl, de
    finally:
        await nl.close()
        await de.close()


def lab_runtime(tmp_path: Path, *, dns_addr: str, rdap: str, smtp_port: int, web_port: int,
                **recheck_cfg: Any) -> Runtime:
    return Runtime.open(
        db=str(tmp_path / "ntd.db"), clock=Clock(fixed=T0),
        overrides={
            "lab": {"allow_private_networks": True},
            # The two loopback servers stand for an NL and a DE network (their RDAP keys).
            "lab.rdap_addresses": {NL_ADDR: "185.4.1.7", DE_ADDR: "46.20.1.9"},
            "fetch": {"allowed_ports": [web_port]},
            "resolve": {"dns_server": dns_addr, "timeout": 2.0, "origin_asn": False,
                        "guess_abuse": False},
            "rdap": {"ip_base_url": rdap, "backoff_base": 0.01, "retries": 1,
                     "domain_base_urls": {"*": rdap}},
            "routing": {"forward_grace_hours": 24},
            "routing.contacts": {"police:NL": f"email:{POLICE}",
                                 "hotline:DE": f"email:{DE_HOTLINE}"},
            "smtp": {"host": "127.0.0.1", "port": smtp_port,
                     "from_address": "notices@hotline.test"},
            "notices": {"aggregate_minutes": 0.0, "poll_seconds": 0.02},
            "pipeline": {"poll_seconds": 0.02},
            "recheck": {"jitter": 0.0, **recheck_cfg}})


def confirmed_case(rt: Runtime, tmp_path: Path, srv: LabWebServer) -> str:
    """A confirmed case: a page with one matched image, served by ``srv``."""
    srv.set(HOST, "/p/1.html", (b'<html><body><img src="/img/1.png"></body></html>',
                                "text/html"))
    srv.set(HOST, "/img/1.png", (IMG, "image/png"))
    src = tmp_path / "urls.txt"
    src.write_text(srv.url("/p/1.html") + "\n")
    submit_files(rt.store, [str(src)], clock=rt.clock)
    case_id = rt.store.list_cases(state="new")[-1]["id"]
    assert rt.store.claim(["new"], limit=1, owner="t:1", lease_seconds=60,
                          now=rt.clock.now_text()) == [case_id]
    case = rt.store.load_case(case_id)
    items = [Item(url=case.canonical_url, kind="url", status=200, content_type="text/html",
                  hashes={"sha256": "0" * 64}),
             Item(url=srv.url("/img/1.png"), kind="media", status=200,
                  content_type="image/png", hashes=hash_bytes(IMG, "image/png"),
                  matches=[{"list": "t", "category": "baseline", "hash_type": "sha256",
                            "distance": 0}])]
    result = StageResult(state="confirmed", action="confirmed", items=items)
    assert rt.store.apply([Commit(case_id=case_id, owner="t:1", stage="match", actor="test",
                                  result=result)], rt.clock.now_text()) == []
    return case_id


async def sweep(rt: Runtime, records: dict[str, list[str]]) -> dict[str, int]:
    """One ``ntd recheck --due`` sweep; the fetcher asks the same (test-controlled) zone."""

    async def resolver(host: str) -> list[str]:
        return list(records.get(host, []))

    ctx = rt.context()
    ctx._fetcher = SafeFetcher(fetch_policy(rt.config), resolver=resolver)
    counts, _ = await run_sweep(rt, install_signal_handlers=False, ctx=ctx, deliver=True)
    return counts


def sent_to(sink: SMTPSink) -> list[str]:
    return sorted(r for m in sink.messages for r in m.rcpt_tos)


async def until_due(rt: Runtime, case_id: str) -> dict[str, Any]:
    """Move the clock to the case's next check; the case as it is then."""
    case = rt.store.get_case(case_id, events=False)
    due = parse(case["monitoring"]["next_check_at"] if case.get("monitoring")
                else case["retry_at"])
    rt.clock.advance(max(0.0, (due - rt.clock.now()).total_seconds()))
    return case


async def test_host_moving_from_nl_to_de_is_rerouted_and_the_clock_kept(
        tmp_path: Path, zone: Any, registry: LabRdapServer, hosters: Any) -> None:
    dns_addr, records = zone
    nl, de = hosters
    async with SMTPSink() as sink:
        rt = lab_runtime(tmp_path, dns_addr=dns_addr, rdap=registry.base_url,
                         smtp_port=sink.port, web_port=nl.port,
                         schedule=["1h", "4h", "12h", "24h"],
                         confirm={"misses": 3, "apart_minutes": 5})
        case_id = confirmed_case(rt, tmp_path, nl)
        # Resolve (NL), route (hoster, registrar, police), notify and send.
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        case = rt.store.get_case(case_id, events=False)
        assert case["state"] == "noticed", case["state_reason"]
        assert (case["resolution"]["asn"], case["resolution"]["country"]) == (64501, "NL")
        assert sent_to(sink) == sorted([NL_HOSTER, POLICE, REGISTRAR])
        # The schedule's first step: the first check an hour after the notice.
        assert parse(case["retry_at"]) == parse(rt.clock.now_text()).replace(hour=10)

        await until_due(rt, case_id)
        assert await sweep(rt, records) == {**_zero(), "checked": 1, "still_online": 1}
        mon = rt.store.get_case(case_id, events=False)["monitoring"]
        first_notice = mon["first_notice_at"]
        assert mon["first_notice_source"] == "notice_sent"
        assert parse(mon["next_check_at"]) - rt.clock.now() == timedelta(hours=4)  # schedule step 2
        assert mon["escalation_level"] == 0  # no reminder before the 24 h deadline

        # The host moves: DNS now answers the DE server; the NL server no longer has it.
        records[HOST] = [DE_ADDR]
        de.set(HOST, "/p/1.html", (b'<html><img src="/img/1.png"></html>', "text/html"))
        de.set(HOST, "/img/1.png", (IMG, "image/png"))
        nl.set(HOST, "/img/1.png", (b"gone", "text/plain"))
        await until_due(rt, case_id)
        assert await sweep(rt, records) == {**_zero(), "checked": 1, "still_online": 1,
                                            "moved": 1, "notices_sent": 1}
        assert sent_to(sink) == sorted([NL_HOSTER, POLICE, REGISTRAR, DE_HOTLINE])
        case = rt.store.get_case(case_id)
        res, mon = case["resolution"], case["monitoring"]
        assert (res["asn"], res["network"], res["country"]) == (64502, "46.20.0.0/20", "DE")
        [old] = case["resolution_history"]
        assert (old["resolution"]["asn"], old["resolution"]["country"]) == (64501, "NL")
        assert {r["target"] for r in old["routes"]} == {NL_HOSTER, POLICE, REGISTRAR}
        [moved] = [e for e in case["events"] if e["action"] == "moved"]
        assert moved["detail"]["moved"]["from"]["network"] == "185.4.0.0/22"
        assert moved["detail"]["moved"]["to"]["network"] == "46.20.0.0/20"
        # A member country: the partner hotline first, the hoster after its grace period.
        assert [t["target"] for t in moved["detail"]["step"]["targets"]] == [DE_HOTLINE]
        assert [r["target"] for r in case["routes"]] == [DE_HOTLINE]
        assert case["escalation"][0]["route"]["target"] == DE_HOSTER
        assert (mon["moves"], mon["first_notice_at"]) == (1, first_notice)  # clock kept

        # Still online after the partner hotline's grace period: the new hoster is noticed.
        for _ in range(4):
            await until_due(rt, case_id)
            await sweep(rt, records)
            if DE_HOSTER in sent_to(sink):
                break
        assert DE_HOSTER in sent_to(sink)
        assert NL_HOSTER not in [r for m in sink.messages[3:] for r in m.rcpt_tos]

        # Gone at the new hoster: removed after three misses five minutes apart.
        de.set(HOST, "/img/1.png", (b"", "text/plain"))
        de.set(HOST, "/p/1.html", (b"<html>nothing here</html>", "text/html"))
        misses_at = []
        for n in range(1, 4):
            case = await until_due(rt, case_id)
            misses_at.append(rt.clock.now())
            counts = await sweep(rt, records)
            state = rt.store.get_case(case_id, events=False)["state"]
            assert (state, counts["removed"]) == (("monitoring", 0) if n < 3 else
                                                  ("removed", 1)), n
        assert [b - a for a, b in zip(misses_at, misses_at[1:], strict=False)] == \
            [timedelta(minutes=5)] * 2
        mon = rt.store.get_case(case_id, events=False)["monitoring"]
        assert mon["first_notice_at"] == first_notice
        assert mon["seconds_to_removal_from_notice"] == int(
            (parse(mon["removed_at"]) - parse(first_notice)).total_seconds())
        assert parse(mon["removed_at"]) == misses_at[0]  # the first miss is the removal time
        # Statistics count the moved case once, for the network it was last resolved to.
        summary = stats.compute(rt.store, stats.Period(), min_count=0).summary
        assert (summary["cases"], summary["cases_noticed"], summary["removed"]) == (1, 1, 1)
        assert summary["top_networks"] == {"AS64502": {"org": summary["top_networks"][
            "AS64502"]["org"], "country": "DE", "cases": 1}}
        assert summary["removal_by_hoster"]["AS64502"]["noticed"] == 1
        rt.close()


async def test_no_re_resolve_keeps_the_old_network(
        tmp_path: Path, zone: Any, registry: LabRdapServer, hosters: Any) -> None:
    dns_addr, records = zone
    nl, de = hosters
    async with SMTPSink() as sink:
        rt = lab_runtime(tmp_path, dns_addr=dns_addr, rdap=registry.base_url,
                         smtp_port=sink.port, web_port=nl.port, re_resolve=False)
        case_id = confirmed_case(rt, tmp_path, nl)
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        records[HOST] = [DE_ADDR]
        de.set(HOST, "/img/1.png", (IMG, "image/png"))
        await until_due(rt, case_id)
        counts = await sweep(rt, records)
        assert (counts["moved"], counts["still_online"]) == (0, 1)
        case = rt.store.get_case(case_id, events=False)
        assert case["resolution"]["country"] == "NL" and not case.get("resolution_history")
        rt.close()


def _zero() -> dict[str, int]:
    return {"checked": 0, "removed": 0, "still_online": 0, "escalated": 0, "reappeared": 0,
            "moved": 0, "errors": 0, "notices_sent": 0}


# -- settings --------------------------------------------------------------------------------
def _config(**recheck_cfg: Any) -> Any:
    pm = get_plugin_manager(load_entrypoints=False,
                            extra_plugins=[("recheck", plugins.recheck)])
    return load_config(pm, None, {"recheck": recheck_cfg})


def test_schedule_cadence_last_step_repeats() -> None:
    s = recheck.RecheckSettings.from_config(_config(schedule=["1h", "4h", "30m", "1d"]))
    assert s.schedule_hours == (1.0, 4.0, 0.5, 24.0)
    assert [s.gap_hours(n) for n in range(1, 6)] == [4.0, 0.5, 24.0, 24.0, 24.0]
    plain = recheck.RecheckSettings.from_config(_config(interval_hours=6.0))
    assert [plain.gap_hours(n) for n in (1, 9)] == [6.0, 6.0]
    assert (plain.confirm_misses, plain.confirm_apart_minutes) == (1, 5.0)
    partial = recheck.RecheckSettings.from_config(_config(confirm={"misses": 3}))
    assert (partial.confirm_misses, partial.confirm_apart_minutes) == (3, 5.0)


@pytest.mark.parametrize(("cfg", "message"), [
    ({"schedule": ["1h", "4x"]}, r"schedule.*step 2: '4x' is not a duration"),
    ({"schedule": ["0h"]}, "step 1"),
    ({"schedule": "1h"}, r"\[recheck\] schedule: expected a list"),
    ({"confirm": {"misses": 0}}, "misses must be a whole number of at least 1"),
    ({"confirm": {"misses": 2, "apart": 5}}, r"unknown key\(s\) \['apart'\]"),
    ({"confirm": {"apart_minutes": -1}}, "apart_minutes must be a number of at least 0"),
    ({"confirm": 3}, r"\[recheck\] confirm: expected a"),
])
def test_schedule_and_confirm_are_validated(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**cfg)


def test_left_network_and_same_network() -> None:
    old = {"ips": ["185.4.1.7"], "network": "185.4.0.0/22", "asn": 64501}
    assert not recheck.left_network(["185.4.1.7"], old)
    assert not recheck.left_network(["185.4.2.9"], old)  # another address, same prefix
    assert recheck.left_network(["46.20.1.9"], old)
    assert recheck.left_network(["46.20.1.9"], {"ips": ["185.4.1.7"], "network": None})
    assert recheck.same_network(old, {"asn": 64501, "network": "185.4.0.0/22"})
    assert not recheck.same_network(old, {"asn": 64502, "network": "185.4.0.0/22"})
    assert not recheck.same_network(old, {"asn": 64501, "network": "185.4.4.0/22"})
    assert recheck.same_network(old, {"asn": None, "network": None})
