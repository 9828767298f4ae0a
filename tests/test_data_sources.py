"""`ntd data update/status`, the shipped snapshots, and the resolver reading them.

The shipped snapshots (plugins/resolve/data/snapshots) are made from the published files in
``shared/data`` (beside the repository: CI lays a copy of shared/ next to the clone; see its
README for where each file comes from). ``ntd data update --from-dir`` on those files must
reproduce them byte for byte.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import InputError
from engine.lab.rdap_server import LabRdapServer
from plugins.resolve import datasources
from plugins.resolve.hosting_rules import BUILTIN_FILES, HostingRules
from plugins.resolve.rdap import IpBootstrap
from tests.conftest import run_ntd

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "aws-ip-ranges.json").is_file(),
    reason=f"published files not found at {SHARED_DATA} (shared/ beside the repository)")


def _config(tmp_path: Path, snapshots: Path, extra: str = "") -> Path:
    cfg = tmp_path / "ntd.toml"
    cfg.write_text(f'[resolve]\nsnapshot_dir = "{snapshots}"\n{extra}')
    return cfg


@needs_shared
def test_update_from_dir_reproduces_the_shipped_snapshots(tmp_path: Path) -> None:
    out = tmp_path / "snapshots"
    proc = run_ntd("--config", str(_config(tmp_path, out)), "data", "update", "--from-dir",
                   str(SHARED_DATA), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["source"] for r in report["updated"]] == list(datasources.SOURCES)
    shipped = sorted(p.name for p in datasources.SNAPSHOT_DIR.glob("*.json"))
    assert sorted(p.name for p in out.glob("*.json")) == shipped
    for name in shipped:
        assert (out / name).read_bytes() == (datasources.SNAPSHOT_DIR / name).read_bytes(), name


def test_shipped_snapshots_hold_the_published_counts() -> None:
    counts = {row["source"]: row["count"] for row in datasources.status(datasources.SNAPSHOT_DIR)}
    # Fastly: 19 IPv4 + 2 IPv6; CloudFront: 193 IPv4 + 27 IPv6; Cloudflare: 15 + 7.
    assert counts["fastly"] == 21 and counts["cloudfront"] == 220 and counts["cloudflare"] == 22
    cloudfront = datasources.read_snapshot("cloudfront")
    assert cloudfront["url"] == "https://ip-ranges.amazonaws.com/ip-ranges.json"
    assert cloudfront["file_date"] == "2025-07-24T20:23:14Z"
    assert len(cloudfront["data"]["ipv4"]) == 193 and len(cloudfront["data"]["ipv6"]) == 27
    assert datasources.read_snapshot("iana-dns")["file_date"] == "2024-07-25T00:00:01Z"


@needs_shared
def test_one_source_only_and_validation_keeps_the_old_snapshot(tmp_path: Path) -> None:
    out = tmp_path / "snapshots"
    done = datasources.update_from_dir(SHARED_DATA, out, ["fastly"])
    assert [s["source"] for s in done] == ["fastly"]
    before = (out / "fastly.json").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fastly-ip-ranges.json").write_text(
        json.dumps({"addresses": ["151.101.0.0/16", "not-a-range"], "ipv6_addresses": []}))
    with pytest.raises(InputError, match="not-a-range"):
        datasources.update_from_dir(bad, out, ["fastly"])
    assert (out / "fastly.json").read_bytes() == before
    with pytest.raises(InputError, match="unknown"):
        datasources.update_from_dir(SHARED_DATA, out, ["akamai"])


def test_status_warns_when_older_than_90_days(tmp_path: Path) -> None:
    out = tmp_path / "snapshots"
    source = datasources.SOURCES["fastly"]
    fresh = datasources.build_snapshot(
        source, [json.dumps({"addresses": ["151.101.0.0/16"],
                             "ipv6_addresses": ["2a04:4e40::/32"]}).encode()], "2026-11-01")
    datasources.write_snapshot(fresh, out)
    rows = {r["source"]: r for r in datasources.status(out, today=dt.date(2026, 12, 1))}
    assert (rows["fastly"]["age_days"], rows["fastly"]["stale"]) == (30, False)
    rows = {r["source"]: r for r in datasources.status(out, today=dt.date(2027, 3, 1))}
    assert (rows["fastly"]["age_days"], rows["fastly"]["stale"]) == (120, True)
    # The other sources fall back to the shipped snapshots: all older than 90 days.
    assert rows["cloudfront"]["stale"] and rows["iana-dns"]["age_days"] > 90
    proc = run_ntd("--config", str(_config(tmp_path, out)), "data", "status")
    assert proc.returncode == 0, proc.stderr
    assert "warning: snapshot cloudfront is older than 90 days" in proc.stderr
    assert "fastly" in proc.stdout and "https://api.fastly.com/public-ip-list" in proc.stdout


async def test_update_online_through_an_ordinary_client(tmp_path: Path) -> None:
    import httpx

    pages = {"/ips-v4": "173.245.48.0/20\n104.16.0.0/13\n", "/ips-v6": "2606:4700::/32\n"}

    def handler(request: httpx.Request) -> httpx.Response:
        body = pages.get(request.url.path)
        return httpx.Response(200, text=body) if body else httpx.Response(404)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        done = await datasources.update_online(tmp_path, ["cloudflare"], http_client=client,
                                               today="2026-12-04")
    assert done[0]["data"] == {"ipv4": ["104.16.0.0/13", "173.245.48.0/20"],
                               "ipv6": ["2606:4700::/32"]}
    assert datasources.read_snapshot("cloudflare", tmp_path)["retrieved"] == "2026-12-04"


# ---------------------------------------------------------------------------- CDN ranges


def _published(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c) for c in datasources.cdn_ranges(name)]


@pytest.mark.parametrize(("snapshot", "cdn"), [
    ("cloudfront", "Amazon CloudFront"), ("fastly", "Fastly"), ("cloudflare", "Cloudflare")])
def test_every_published_range_is_recognised(snapshot: str, cdn: str) -> None:
    rules = HostingRules.builtin()
    nets = _published(snapshot)
    assert nets
    for net in nets:
        first, last = net.network_address, net.broadcast_address
        assert rules.cdn_for(str(first), None) == cdn, net
        assert rules.cdn_for(str(last), None) == cdn, net


def test_akamai_is_recognised_by_asn_only() -> None:
    rules = HostingRules.builtin()
    assert rules.cdn_for("23.0.0.1", 20940) == "Akamai"
    assert rules.cdn_for("23.0.0.1", None) is None
    akamai = json.loads(BUILTIN_FILES[0].read_text())["cdns"]
    assert next(c for c in akamai if c["name"] == "Akamai")["ranges"] == []


def test_ip_bootstrap_names_the_rir() -> None:
    boot = IpBootstrap.from_snapshots()
    assert boot.base_for("1.1.1.1") == "https://rdap.apnic.net"
    assert boot.base_for("193.0.6.139") == "https://rdap.db.ripe.net"
    # 130/8 is an ARIN-administered block (legacy space): ARIN answers, or redirects.
    assert boot.base_for("130.59.31.80") == "https://rdap.arin.net/registry"
    assert boot.base_for("8.8.8.8") == "https://rdap.arin.net/registry"
    assert boot.base_for("200.57.141.161") == "https://rdap.lacnic.net/rdap"
    assert boot.base_for("2001:43f8:7b0::1") == "https://rdap.afrinic.net/rdap"


async def test_ntd_resolve_reports_the_cdn(tmp_path: Path) -> None:
    """A few published ranges through the whole `ntd resolve` command (DNS from
    [resolve.hosts], RDAP from the loopback server through the IANA bootstrap and proxy)."""
    picks = {"cf.example": ("cloudfront", 0), "cf6.example": ("cloudfront", -1),
             "fastly.example": ("fastly", 0), "fastly6.example": ("fastly", -1),
             "cloudflare.example": ("cloudflare", 3)}
    hosts: dict[str, str] = {}
    async with LabRdapServer() as srv:
        for host, (snap, index) in picks.items():
            net = _published(snap)[index]
            address = str(net.network_address + 1)
            hosts[host] = address
            srv.add_hoster(name=f"{snap} network", country="US", cidr=str(net), asn=None,
                           abuse_email=f"abuse@{snap}.example", style="arin")
        extra = "origin_asn = false\n[resolve.hosts]\n" + "".join(
            f'"{h}" = ["{a}"]\n' for h, a in hosts.items()) + (
            f'[rdap]\nproxy = "{srv.base_url}"\nretries = 0\n'
            f'[rdap.domain_base_urls]\nexample = "{srv.base_url}"\n')
        cfg = _config(tmp_path, datasources.SNAPSHOT_DIR, extra)
        db = tmp_path / "ntd.db"
        assert (await asyncio.to_thread(run_ntd, "--config", str(cfg), "db", "migrate",
                                        db=db)).returncode == 0
        results: dict[str, Any] = {}
        for host in picks:
            proc = await asyncio.to_thread(run_ntd, "--config", str(cfg), "resolve",
                                           f"http://{host}/x", "--json", db=db)
            results[host] = json.loads(proc.stdout)
        # The IANA bootstrap sent each lookup to the RIR's server (ARIN here), via the proxy.
        assert any(p.startswith("/rdap.arin.net/registry/ip/") for p in srv.requests)
    expected = {"cloudfront": "Amazon CloudFront", "fastly": "Fastly",
                "cloudflare": "Cloudflare"}
    for host, (snap, _index) in picks.items():
        assert results[host]["cdn"] == expected[snap], (host, results[host])


def test_every_platform_pattern_is_a_platform_suffix() -> None:
    """The bundled Public Suffix List lacks five of the platforms ntd knows (wordpress.com,
    netlify.com, 000webhostapp.com, tumblr.com, weebly.com): engine.urls adds them."""
    from engine.urls import EXTRA_PLATFORM_SUFFIXES, platform_suffix, registrable_domain

    platforms = json.loads(BUILTIN_FILES[1].read_text())["platforms"]
    wildcards = [p[2:] for item in platforms for p in item["patterns"] if p.startswith("*.")]
    for suffix in wildcards:
        assert platform_suffix(f"someone.{suffix}") == suffix, suffix
    assert EXTRA_PLATFORM_SUFFIXES <= set(wildcards)
    # Registrable domains are unchanged: the registrar of someone.tumblr.com is tumblr.com's.
    assert registrable_domain("someone.tumblr.com") == "tumblr.com"
