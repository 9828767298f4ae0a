"""Resolution stage (entry point resolve): the hook implementations; the logic is in
service (DNS, RDAP, contacts), dns, rdap, contacts and hosting_rules.
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine import hookimpl
from engine.api import Case, StageContext
from engine.config import Option, non_negative, positive
from engine.models import StageResult
from plugins.resolve.service import (
    STATE_KEY,
    _dns_server_check,
    _RunState,
    _url_check,
    _url_table_check,
    host_addresses,
    resolve_case,
)


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {
        "lab.rdap_addresses": {
            "*": Option(type=str, help="lab only: public-looking RDAP key for a loopback host "
                                       "(or a loopback address)"),
        },
        "resolve": {
            "dns_server": Option(type=str, default=None, check=_dns_server_check,
                                 help="resolver IP[:port]; unset = the system's resolver"),
            "timeout": Option(type=float, default=5.0, check=positive,
                              help="DNS timeout in seconds"),
            "cache_ttl": Option(type=int, default=86400, check=positive,
                                help="seconds RDAP answers stay cached (per range / domain)"),
            "snapshot_dir": Option(type=str, default=None,
                                   help="where `ntd data update` writes and the resolver reads "
                                        "data snapshots; default: the ones shipped with ntd"),
            "extra_rules_file": Option(type=str, default=None,
                                       help="CDN/platform rules added to the shipped ones"),
            "origin_asn": Option(type=bool, default=True,
                                 help="ask Team Cymru (DNS) for the ASN when RDAP has none"),
            "guess_abuse": Option(type=bool, default=True,
                                  help="add RFC 2142 abuse@<domain> as a last-resort contact"),
            "retry_minutes": Option(type=float, default=15.0, check=positive,
                                    help="first retry delay of an unresolved case (doubles)"),
            "max_attempts": Option(type=int, default=8, check=positive,
                                   help="resolution attempts before a case is marked failed"),
        },
        "rdap": {
            "ip_base_url": Option(type=str, default=None, check=_url_check,
                                  help="replaces https://rdap-bootstrap.arin.net/bootstrap"),
            "bootstrap_file": Option(type=str, default=None,
                                     help="IANA dns.json; default: the file shipped with ntd"),
            "proxy": Option(type=str, default=None, check=_url_check,
                            help="rewriting gateway: https://host/path → {proxy}/host/path"),
            "domain_base_urls": Option(type=dict, default={}, check=_url_table_check,
                                       help="TLD (or '*') → domain RDAP base URL override"),
            "max_in_flight": Option(type=int, default=4, check=positive,
                                    help="ipwhois lookups running at once (threads)"),
            "retries": Option(type=int, default=3, check=non_negative,
                              help="retries after 429 / 5xx / unreachable"),
            "backoff_base": Option(type=float, default=1.0, check=non_negative,
                                   help="first retry delay in seconds (doubles)"),
            "timeout": Option(type=float, default=10.0, check=positive,
                              help="RDAP request timeout in seconds"),
        },
    }


@hookimpl
async def ntd_startup(ctx: StageContext) -> None:
    # Created lazily in service_for: a run with nothing to resolve needs no resolver.
    ctx.state.setdefault(STATE_KEY, _RunState())
    # The registrable-domain extractor loads its suffix list at first use (~0.1-0.3 s): load it
    # now, on a thread, rather than stall the event loop at the first case.
    # deferred: pulls in httpx, dns, ipwhois, loaded on first use
    from plugins.resolve.rdap import registered_domain

    await asyncio.to_thread(registered_domain, "example.com")


@hookimpl
async def ntd_shutdown(ctx: StageContext) -> None:
    state = ctx.state.get(STATE_KEY)
    if isinstance(state, _RunState) and state.service is not None:
        service, state.service = state.service, None
        await service.aclose(ctx)




@hookimpl
def ntd_register_commands(cli: Any) -> None:
    # deferred: pulls in httpx, dns, ipwhois, loaded on first use
    from plugins.resolve.cli import register

    register(cli)


@hookimpl
async def ntd_resolve(case: Case, ctx: StageContext) -> StageResult:
    return await resolve_case(case, ctx)


@hookimpl
async def ntd_host_addresses(host: str, ctx: StageContext) -> dict[str, Any]:
    return await host_addresses(host, ctx)
