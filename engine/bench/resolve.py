"""Benchmark of the resolve path against the loopback lab RDAP server (no internet).

Each synthetic case is one URL host: static-map DNS → IP RDAP (ipwhois, range cache) → domain
RDAP (httpx, per-domain cache) → CDN/platform rules. ``n_urls`` hosts are spread over
``n_hosters`` hosters, each with its own /24 and its own registrable domain, so the expected
number of real lookups is ``n_hosters`` IP lookups plus ``n_hosters`` domain lookups.

Run: ``python -m engine.bench.resolve [n_urls] [n_hosters]`` (library path only), or
``ntd bench resolve`` for :func:`bench_pipeline`: the same load through the real pipeline and
store (the stage plugin, SQLite, the store-backed cache, a restart).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.lab.rdap_server import LabRdapServer
from plugins.resolve.dns import DnsResolver
from plugins.resolve.hosting_rules import HostingRules
from plugins.resolve.rdap import DomainRdapClient, IpRdapClient, MemoryRdapCache

# First octets of ordinary unicast space (ipwhois refuses reserved ranges); keys only.
_OCTETS = (5, 31, 37, 46, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 91, 92, 93,
           94, 95, 176, 178, 185, 188, 193, 194, 195, 212, 213, 217)


def _hoster_cidr(i: int) -> str:
    return f"{_OCTETS[i % len(_OCTETS)]}.{i // len(_OCTETS) % 256}.{i // (len(_OCTETS) * 256)}.0/24"


async def bench_resolve(n_urls: int = 10_000, n_hosters: int = 100,
                        workers: int = 64) -> dict[str, Any]:
    """Resolve ``n_urls`` synthetic cases twice (cold cache, then warm) and report figures."""
    if n_hosters > len(_OCTETS) * 256 * 256:
        raise ValueError("too many hosters for the synthetic address plan")
    hosts: dict[str, list[str]] = {}
    urls: list[str] = []
    async with LabRdapServer() as srv:
        for i in range(n_hosters):
            cidr = _hoster_cidr(i)
            srv.add_hoster(name=f"Bench Hoster {i}", country=("NL", "DE", "QZ")[i % 3],
                           cidr=cidr, asn=64512 + i, abuse_email=f"abuse@hoster-{i}.test",
                           style="arin")
            srv.add_registrar_domain(domain=f"hoster-{i}.test", registrar_name=f"Registrar {i}",
                                     iana_id=str(9000 + i), abuse_email=f"abuse@reg-{i}.test")
        for u in range(n_urls):
            i = u % n_hosters
            host = f"site-{u}.hoster-{i}.test"
            base = _hoster_cidr(i).rsplit(".", 1)[0]
            hosts[host] = [f"{base}.{(u // n_hosters) % 254 + 1}"]
            urls.append(host)
        resolver = DnsResolver(dns_server="127.0.0.1:9", hosts=hosts)  # never queried
        rules = HostingRules.builtin()
        ip_client = IpRdapClient(base_url=srv.base_url, proxy=None, cache=MemoryRdapCache(),
                                 max_in_flight=4)
        phases: dict[str, dict[str, float]] = {}
        async with DomainRdapClient(base_url_override={"test": srv.base_url},
                                    cache=MemoryRdapCache()) as dom_client:

            async def one(host: str) -> None:
                dns_result = await resolver.resolve(host)
                ip = dns_result.addresses[0]
                net, registrar = await asyncio.gather(ip_client.lookup(ip),
                                                      dom_client.lookup(host))
                rules.cdn_for(ip, net.asn)
                rules.platform_for(host)
                assert registrar is not None  # noqa: S101 - bench sanity

            async def run(label: str) -> None:
                queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=workers * 2)

                async def worker() -> None:
                    while (item := await queue.get()) is not None:
                        await one(item)

                started = time.perf_counter()
                async with asyncio.TaskGroup() as tg:
                    for _ in range(workers):
                        tg.create_task(worker())
                    for host in urls:
                        await queue.put(host)
                    for _ in range(workers):
                        await queue.put(None)
                elapsed = time.perf_counter() - started
                phases[label] = {"elapsed_s": round(elapsed, 3),
                                 "cases_per_s": round(n_urls / elapsed, 1)}

            await run("cold_cache")
            await run("warm_cache")
            return {
                "n_urls": n_urls,
                "n_hosters": n_hosters,
                "workers": workers,
                **{f"{k}_{m}": v for k, d in phases.items() for m, v in d.items()},
                "ip_lookups": ip_client.lookups,
                "ip_cache_hits": ip_client.cache_hits,
                "domain_lookups": dom_client.lookups,
                "server_ip_requests": srv.count("ip"),
                "server_domain_requests": srv.count("domain"),
            }


def _confirm_all(store: Any, case_ids: list[str], now: str) -> None:
    """Move fresh cases straight to ``confirmed`` (the resolve stage's input)."""
    for case_id in case_ids:
        store.transition(case_id, state="confirmed", stage="bench", actor="bench",
                         action="confirmed", now=now)


async def bench_pipeline(n_urls: int = 10_000, n_hosters: int = 100, *,
                         workers: int = 64, restart_urls: int = 1000) -> dict[str, Any]:
    """The resolve **stage** through the real pipeline: ``n_urls`` confirmed cases over
    ``n_hosters`` hosters, SQLite store, store-backed RDAP cache, lab RDAP server on loopback.

    Then a restarted runtime (fresh clients, same database) resolves ``restart_urls`` new cases
    on the same hosters, to show that the stored cache spares lookups across restarts.
    Only the resolve plugin is loaded; setup (intake, confirming) is not timed.
    """

    import plugins.resolve  # deferred: keeps `ntd` start-up fast (loaded when the command runs)

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.clock import Clock

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.config import validate

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.intake import submit_files

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.plugin_manager import get_plugin_manager

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.runtime import Runtime, merged_schema

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.store import open_store

    if n_hosters > len(_OCTETS) * 256 * 256:
        raise ValueError("too many hosters for the synthetic address plan")
    total = n_urls + restart_urls
    hosts: dict[str, str] = {}
    lines: list[str] = []
    for u in range(total):
        i = u % n_hosters
        host = f"site-{u}.hoster-{i}.test"
        base = _hoster_cidr(i).rsplit(".", 1)[0]
        hosts[host] = f"{base}.{(u // n_hosters) % 254 + 1}"
        lines.append(f"http://{host}/gallery/{u}.html")
    async with LabRdapServer() as srv:
        for i in range(n_hosters):
            srv.add_hoster(name=f"Bench Hoster {i}", country=("NL", "DE", "QZ")[i % 3],
                           cidr=_hoster_cidr(i), asn=64512 + i,
                           abuse_email=f"abuse@hoster-{i}.test", style="arin")
            srv.add_registrar_domain(domain=f"hoster-{i}.test", registrar_name=f"Registrar {i}",
                                     iana_id=str(9000 + i), abuse_email=f"abuse@reg-{i}.test")
        raw = {
            "pipeline": {"workers": workers, "poll_seconds": 0.05, "queue_size": 512},
            "resolve": {"dns_server": "127.0.0.1:9", "origin_asn": False,
                        "hosts": hosts},
            "rdap": {"ip_base_url": srv.base_url, "domain_base_urls": {"test": srv.base_url},
                     "backoff_base": 0.05},
        }

        def runtime(db: Path) -> Runtime:
            # Only the resolve plugin, and no ntd.toml from the working directory.
            pm = get_plugin_manager(load_entrypoints=False,
                                    extra_plugins=[("resolve", plugins.resolve)])
            config = validate(raw, merged_schema(pm))
            return Runtime(pm=pm, config=config, store=open_store(str(db)), clock=Clock())

        async def phase(rt: Runtime, urls: list[str], tmp: Path, label: str) -> dict[str, Any]:
            src = tmp / f"{label}.txt"
            src.write_text("\n".join(urls) + "\n", encoding="utf-8")
            ids = list(submit_files(rt.store, [str(src)], keep_case_ids=True).case_ids)
            _confirm_all(rt.store, ids, rt.clock.now_text())
            before = (srv.count("ip"), srv.count("domain"), srv.count("entity"))
            started = time.perf_counter()
            summary = await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
            elapsed = time.perf_counter() - started
            states = rt.store.count_by_state()
            return {
                f"{label}_cases": len(ids),
                f"{label}_seconds": round(elapsed, 3),
                f"{label}_cases_per_s": round(len(ids) / elapsed, 1),
                f"{label}_resolved": states.get("resolved", 0),
                f"{label}_errors": sum(summary.errors.values()),
                f"{label}_ip_lookups": srv.count("ip") - before[0],
                f"{label}_domain_lookups": srv.count("domain") - before[1],
                f"{label}_entity_lookups": srv.count("entity") - before[2],
            }

        with tempfile.TemporaryDirectory(prefix="ntd-bench-resolve-") as tmp_name:
            tmp = Path(tmp_name)
            db = tmp / "bench.db"
            out: dict[str, Any] = {"n_urls": n_urls, "n_hosters": n_hosters,
                                   "workers": workers}
            rt = runtime(db)
            try:
                out.update(await phase(rt, lines[:n_urls], tmp, "pipeline"))
            finally:
                rt.close()
            if restart_urls:
                rt = runtime(db)
                try:
                    out.update(await phase(rt, lines[n_urls:], tmp, "after_restart"))
                finally:
                    rt.close()
            out["server_requests_total"] = sum(srv.requests.values())
            return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(asyncio.run(bench_resolve(*args)), indent=1))
