"""Built-in resolve stage: who hosts a confirmed URL, who registered its domain, whom to notify.

For each case in ``confirmed`` (and ``unresolved`` once its retry is due):

1. DNS (``plugins.resolve.dns``): A/AAAA and the CNAME chain; ``[resolve.hosts]`` first.
2. IP → network (``plugins.resolve.rdap.IpRdapClient``, ipwhois in bounded threads) for the first
   address: ASN, range, organisation, **country**, abuse contacts. Team Cymru's origin-AS
   answer over DNS fills the ASN when the registry's RDAP has none (``[resolve] origin_asn``).
3. Domain → registrar (``DomainRdapClient``, httpx + IANA bootstrap).
4. CDN and platform rules (``plugins.resolve.hosting_rules``).
5. Ranked contacts (``plugins.resolve.contacts``): contacts book, RDAP, plugins, rules,
   RFC 2142 guess.

Outcomes: the host does not resolve, or the hosting network cannot be looked up → ``unresolved``
with a reason (``dns_nxdomain``, ``dns_servfail``, ``dns_timeout``, ``dns_no_answer``,
``rdap_<reason>`` such as ``rdap_rate_limited`` / ``rdap_malformed_rdap`` / ``rdap_not_found``)
and a retry time that doubles per attempt; after ``max_attempts`` the case is ``failed``.
Hosting information is essential, registrar information is not: a failed registrar lookup still
resolves the case, with ``registrar: null`` and a note.

Caching: both RDAP clients cache through :class:`StoreRdapCache` — an in-memory front loaded from
the store's ``cache`` table at first use and written through to it — so 10,000 URLs on one hoster
cost one lookup and results survive restarts until ``[resolve] cache_ttl`` expires.

Per-run objects live in ``ctx.state["resolve"]`` and are created on first use (a run that never
resolves anything needs no DNS configuration).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import plugins.resolve.contacts as ranking
from engine.api import MEDIA_SCHEME, Case, StageContext
from engine.clock import Clock, fmt, parse
from engine.config import Config
from engine.errors import ConfigError, ResolutionError
from engine.models import StageResult
from engine.plugin_manager import call_all
from plugins.resolve.dns import DnsResolver, DnsResult, parse_dns_server
from plugins.resolve.hosting_rules import HostingRules
from plugins.resolve.rdap import (
    DomainRdapClient,
    IpBootstrap,
    IpRdapClient,
    NetworkInfo,
    RegistrarInfo,
)

log = logging.getLogger("ntd.resolve")

STATE_KEY = "resolve"
IP_NAMESPACE = "rdap-ip"
DOMAIN_NAMESPACE = "rdap-domain"
BOOK_REFRESH_SECONDS = 5.0  # an edited contacts book is seen by a running engine this soon
MAX_RETRY_SECONDS = 24 * 3600


# ====================================================================== configuration


def _dns_server_check(value: str) -> str | None:
    try:
        parse_dns_server(value)
    except ConfigError as exc:
        return exc.message.removeprefix("dns_server: ")
    return None


def _url_check(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) else "must be an http(s) URL"


def _url_table_check(value: dict[str, Any]) -> str | None:
    for tld, url in value.items():
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return f"{tld!r} must map to an http(s) URL"
    return None


# ====================================================================== store-backed cache


class StoreRdapCache:
    """:class:`plugins.resolve.rdap.RdapCache` over the store's ``cache`` table, memory in front.

    The RDAP clients call ``get``/``put`` synchronously on the event loop, so the store (whose
    methods run on the database thread) is never touched there: :meth:`load` fills the front
    from the store once, ``put`` queues a write, and :meth:`flush` writes queued entries on the
    database thread. The stage flushes after each case, so an answer is durable before the case
    that needed it is committed.
    """

    def __init__(self, namespace: str, clock: Clock) -> None:
        """An empty cache for ``namespace`` timed by ``clock`` (the run's clock)."""
        self.namespace = namespace
        self._clock = clock
        self._front: dict[str, tuple[datetime, dict[str, Any]]] = {}
        self._pending: list[tuple[str, dict[str, Any], str]] = []

    async def load(self, store: Any) -> int:
        """Read every unexpired entry of the namespace from ``store`` (the async store)."""
        items = await store.cache_items(self.namespace, self._clock.now_text())
        for key, wrapped in items:
            if isinstance(wrapped, dict) and "value" in wrapped and "expires_at" in wrapped:
                self._front[key] = (parse(wrapped["expires_at"]), wrapped["value"])
        return len(items)

    def get(self, key: str) -> dict[str, Any] | None:
        """The live value for ``key`` or None."""
        hit = self._front.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock.now():
            del self._front[key]
            return None
        return hit[1]

    def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Cache ``value`` for ``ttl_seconds`` (in memory now, in the store at the next flush)."""
        expires = self._clock.now() + timedelta(seconds=ttl_seconds)
        self._front[key] = (expires, value)
        text = fmt(expires)
        # The expiry travels inside the value: cache_items does not return it.
        self._pending.append((key, {"value": value, "expires_at": text}, text))

    async def flush(self, store: Any) -> int:
        """Write queued entries to the store (one call on the database thread)."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, []
        await store.call_fn(_put_many, self.namespace, batch)
        return len(batch)

    def __len__(self) -> int:
        return len(self._front)


def _put_many(store: Any, namespace: str, batch: list[tuple[str, Any, str]]) -> None:
    for key, value, expires_at in batch:
        store.cache_put(namespace, key, value, expires_at)


# ====================================================================== the service


@dataclass
class Outcome:
    """Result of resolving one host: a resolution, or a failure reason with partial facts."""

    resolution: dict[str, Any] | None = None
    reason: str | None = None
    message: str | None = None
    partial: dict[str, Any] = field(default_factory=dict)


class ResolveService:
    """Per-run clients and caches; :meth:`resolve` is the stage logic for one host."""

    def __init__(self, config: Config, clock: Clock) -> None:
        """Build clients from configuration (no I/O yet; see :meth:`open`)."""
        res, rdap = config.section("resolve"), config.section("rdap")
        self.settings = res
        hosts = {k: list(v) if isinstance(v, list) else [v]
                 for k, v in config.section("resolve.hosts").items()}
        self.dns = DnsResolver(dns_server=res.get("dns_server"),
                               timeout=res.get("timeout", 5.0), hosts=hosts)
        extra = res.get("extra_rules_file")
        self.rules = HostingRules.builtin(*([extra] if extra else []),
                                          snapshot_dir=res.get("snapshot_dir"))
        ttl = float(res.get("cache_ttl", 86400))
        self.ip_cache = StoreRdapCache(IP_NAMESPACE, clock)
        self.domain_cache = StoreRdapCache(DOMAIN_NAMESPACE, clock)
        self.ip = IpRdapClient(
            base_url=rdap.get("ip_base_url"), proxy=rdap.get("proxy"), cache=self.ip_cache,
            max_in_flight=rdap.get("max_in_flight", 4), retries=rdap.get("retries", 3),
            backoff_base=rdap.get("backoff_base", 1.0), ttl_seconds=ttl,
            timeout=rdap.get("timeout", 10.0),
            asn_lookup=self.dns.origin_asn if res.get("origin_asn", True) else None,
            ip_bootstrap=IpBootstrap.from_snapshots(res.get("snapshot_dir")))
        snapshots = res.get("snapshot_dir")
        self.domain = DomainRdapClient(
            bootstrap_file=rdap.get("bootstrap_file") or (
                f"{snapshots}/iana-dns.json" if snapshots else None),
            base_url_override=rdap.get("domain_base_urls") or None, cache=self.domain_cache,
            retries=rdap.get("retries", 3), backoff_base=rdap.get("backoff_base", 1.0),
            ttl_seconds=ttl, timeout=rdap.get("timeout", 10.0), proxy=rdap.get("proxy"))
        # Lab only: loopback hosts stand for public hosters, whose RDAP key is given here.
        self.lab_rdap = (dict(config.section("lab.rdap_addresses"))
                         if config.get("lab", "allow_private_networks") else {})
        self._book: list[dict[str, Any]] = []
        self._book_at = -BOOK_REFRESH_SECONDS
        self._failures: dict[str, int] = {}

    @classmethod
    async def open(cls, ctx: StageContext) -> ResolveService:
        """Build the service and warm its caches from the store."""
        try:
            # On a thread: reading the bootstrap and rules files and loading the CA bundle
            # for the RDAP client stalled the event loop ~100 ms at the first case.
            service = await asyncio.to_thread(cls, ctx.config, ctx.clock)
        except ResolutionError as exc:  # e.g. an unreadable bootstrap file
            raise ConfigError(f"[rdap] bootstrap_file: {exc.message}") from exc
        loaded = await service.ip_cache.load(ctx.store)
        loaded += await service.domain_cache.load(ctx.store)
        log.debug("resolve: %d cached RDAP entries loaded from the store", loaded)
        return service

    async def aclose(self, ctx: StageContext | None = None) -> None:
        """Flush the caches (when a context is given) and close the HTTP client."""
        try:
            if ctx is not None:
                await self.flush(ctx)
        finally:
            await self.domain.aclose()

    async def flush(self, ctx: StageContext) -> None:
        """Write new cache entries to the store."""
        await self.ip_cache.flush(ctx.store)
        await self.domain_cache.flush(ctx.store)

    async def book(self, ctx: StageContext, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The contacts book, re-read at most every few seconds."""
        now = time.monotonic()
        if fresh or now - self._book_at >= BOOK_REFRESH_SECONDS:
            self._book = await ctx.store.contacts_list()
            self._failures = {}  # bounce counts are re-read on the same schedule
            self._book_at = now
        return self._book

    async def failures(self, ctx: StageContext, addresses: list[str]) -> dict[str, int]:
        """Recorded failures of ``addresses``; counts are kept as long as the book copy, so
        10,000 cases on one hoster ask the database once, not 10,000 times."""
        missing = [a for a in addresses if a not in self._failures]
        if missing:
            found = await ctx.store.contact_failures(missing)
            self._failures.update({a: int(found.get(a, 0)) for a in missing})
        return {a: self._failures[a] for a in addresses if self._failures.get(a)}

    # ------------------------------------------------------------------ stage logic

    async def resolve(self, host: str, ctx: StageContext, *, domain: str | None = None,
                      fresh_book: bool = False) -> Outcome:
        """Resolve ``host``; never raises for DNS or RDAP failures (they are outcomes)."""
        try:
            return await self._resolve(host, ctx, domain=domain, fresh_book=fresh_book)
        finally:
            await self.flush(ctx)

    async def _resolve(self, host: str, ctx: StageContext, *, domain: str | None,
                       fresh_book: bool) -> Outcome:
        try:
            dns_result = await self.dns.resolve(host)
        except ResolutionError as exc:  # an unusable host name
            return Outcome(reason=f"dns_{exc.reason}", message=exc.message,
                           partial={"host": host})
        partial = _dns_facts(dns_result)
        if not dns_result.addresses:
            message = f"{dns_result.host} did not resolve: {dns_result.outcome}"
            if dns_result.error:
                message += f" ({dns_result.error})"
            return Outcome(reason=f"dns_{dns_result.outcome}", message=message, partial=partial)
        # Lab: the host's RDAP key, else its loopback address's (a lab host can move between
        # loopback servers standing for different networks).
        ip = (self.lab_rdap.get(dns_result.host) or self.lab_rdap.get(dns_result.addresses[0])
              or dns_result.addresses[0])
        is_ip_host = dns_result.source == "literal"
        reg_domain = None if is_ip_host else (domain or _registered(dns_result.host))
        ip_task = asyncio.ensure_future(self.ip.lookup(ip))
        dom_task = (asyncio.ensure_future(self._registrar(dns_result.host))
                    if reg_domain else None)
        try:
            network = await ip_task
        except BaseException as exc:
            if dom_task is not None:  # no orphan task: the registrar is moot without a host
                dom_task.cancel()
                await asyncio.gather(dom_task, return_exceptions=True)
            if not isinstance(exc, ResolutionError):
                raise
            return Outcome(reason=f"rdap_{exc.reason}",
                           message=f"hosting network of {ip}: {exc.message}", partial=partial)
        registrar, notes = (await dom_task) if dom_task is not None else (None, [])
        resolution = await self._assemble(ctx, dns_result, ip, network, registrar, notes,
                                          reg_domain, fresh_book)
        return Outcome(resolution=resolution)

    async def _registrar(self, host: str) -> tuple[RegistrarInfo | None, list[str]]:
        """Registrar lookup; failures become notes (the case still resolves)."""
        try:
            info = await self.domain.lookup(host)
        except ResolutionError as exc:
            return None, [f"registrar lookup failed ({exc.reason}): {exc.message}"]
        if info is None:
            return None, ["registrar lookup: the registry does not know the domain"]
        return info, []

    async def _assemble(self, ctx: StageContext, dns_result: DnsResult, ip: str,
                        network: NetworkInfo,
                        registrar: RegistrarInfo | None, notes: list[str],
                        reg_domain: str | None, fresh_book: bool) -> dict[str, Any]:
        cdn = None
        for address in dns_result.addresses:
            cdn = self.rules.cdn_info(address, network.asn if address == ip else None)
            if cdn is not None:
                break
        platform = self.rules.platform_for(dns_result.host)
        reg_dict = _registrar_dict(registrar)
        resolution: dict[str, Any] = {
            **_dns_facts(dns_result),
            "asn": network.asn,
            "network": network.cidr,
            "network_name": network.network_name,
            "network_handle": network.handle,
            "org": network.org,
            "country": network.country,
            "abuse_phones": list(network.abuse_phones),
            "rdap_source": network.raw_source,
            "domain": reg_domain,
            "registrar": reg_dict,
            "cdn": cdn.name if cdn else None,
            "platform": platform.name if platform else None,
            "platform_rule": platform.pattern if platform else None,
            "contacts": [],
            "notes": list(notes),
            "resolved_at": ctx.clock.now_text(),
        }
        candidates: list[ranking.Contact] = []
        facts = {"host": dns_result.host, "domain": reg_domain, "asn": network.asn,
                 "org": network.org, "platform": resolution["platform"],
                 "cdn": resolution["cdn"]}
        candidates += ranking.book_matches(await self.book(ctx, fresh=fresh_book), facts)
        # The network's abuse desk is the CDN's when the address is the CDN's.
        candidates += ranking.rdap_contacts(abuse_emails=network.abuse_emails,
                                         scope="cdn" if cdn else "hosting")
        candidates += ranking.registrar_contacts(reg_dict)
        if cdn is not None:
            candidates.append(ranking.rule_contact(scope="cdn", name=cdn.name,
                                                channel=cdn.abuse_channel,
                                                address=cdn.abuse_address))
        if platform is not None:
            candidates.append(ranking.rule_contact(scope="platform", name=platform.name,
                                                channel=platform.abuse_channel,
                                                address=platform.abuse_address))
        candidates += await self._plugin_contacts(ctx, dns_result.host, resolution)
        if self.settings.get("guess_abuse", True):
            candidates += ranking.guess_contact(reg_domain,
                                             scope="platform" if platform else "hosting")
        failures = await self.failures(ctx, ranking.addresses(candidates))
        resolution["contacts"] = [c.to_dict() for c in ranking.rank(candidates, failures)]
        return resolution

    async def _plugin_contacts(self, ctx: StageContext, host: str,
                               resolution: dict[str, Any]) -> list[ranking.Contact]:
        """Contacts from ``ntd_contact_sources`` plugins (e.g. the Abusix contact DB)."""
        if not hasattr(ctx.pm.hook, "ntd_contact_sources"):
            return []
        view = dict(resolution)  # plugins get a copy: they add contacts, not edit the record
        try:
            answers = await call_all(ctx.pm, "ntd_contact_sources", host=host,
                                     resolution=view, ctx=ctx)
        except Exception as exc:  # a broken contact source must not lose the case
            log.warning("ntd_contact_sources failed for %s: %s", host, exc)
            resolution["notes"].append(f"contact source failed: {type(exc).__name__}: {exc}")
            return []
        out: list[ranking.Contact] = []
        for answer, plugin in answers:
            for item in answer if isinstance(answer, list) else []:
                contact = ranking.plugin_contact(item, plugin)
                if contact is None:
                    resolution["notes"].append(f"plugin {plugin!r} offered an unusable contact")
                else:
                    out.append(contact)
        return out


def _dns_facts(result: DnsResult) -> dict[str, Any]:
    return {"host": result.host, "ips": list(result.addresses), "cnames": list(result.cnames),
            "dns_outcome": result.outcome, "dns_source": result.source}


def _registered(host: str) -> str:
    # deferred: pulls in httpx, dns, ipwhois, loaded on first use
    from plugins.resolve.rdap import registered_domain

    return registered_domain(host)


def _registrar_dict(info: RegistrarInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"name": info.name, "iana_id": info.iana_id, "abuse_email": info.abuse_email,
            "abuse_phone": info.abuse_phone, "registry": info.registry,
            "created": info.created, "status": list(info.status), "domain": info.domain}


# ====================================================================== hooks


@dataclass
class _RunState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    service: ResolveService | None = None


async def service_for(ctx: StageContext) -> ResolveService:
    """The run's service, created on first use."""
    state: _RunState = ctx.state.setdefault(STATE_KEY, _RunState())
    if state.service is None:
        async with state.lock:
            if state.service is None:
                state.service = await ResolveService.open(ctx)
    return state.service


async def host_addresses(host: str, ctx: StageContext) -> dict[str, Any]:
    """The host's DNS facts now (the ``ntd_host_addresses`` hook): no registry lookups."""
    service = await service_for(ctx)
    try:
        return _dns_facts(await service.dns.resolve(host))
    except ResolutionError as exc:  # an unusable host name
        return {"host": host, "ips": [], "cnames": [], "dns_outcome": exc.reason or "error",
                "dns_source": "dns"}


def retry_delay(settings: dict[str, Any], attempts: int) -> timedelta:
    """Delay before the next attempt: ``retry_minutes`` doubled per attempt, at most a day."""
    minutes = float(settings.get("retry_minutes", 15.0))
    return timedelta(seconds=min(MAX_RETRY_SECONDS, minutes * 60 * 2 ** (attempts - 1)))


async def resolve_case(case: Case, ctx: StageContext) -> StageResult:
    """Resolve one confirmed case (the ``ntd_resolve`` hook)."""
    if case.canonical_url.startswith(MEDIA_SCHEME):
        # Media an intake source handed in (an attached image): nothing to look up, no host
        # to notify. The analyst decides what follows (the report's sender, police, ICCAM).
        return StageResult(state="awaiting_routing", action="not_resolvable",
                           reason="media report: no location to resolve")
    service = await service_for(ctx)
    outcome = await service.resolve(case.host, ctx, domain=None)
    if outcome.resolution is not None:
        res = outcome.resolution
        top = res["contacts"][0] if res["contacts"] else None
        detail = {"ips": res["ips"], "asn": res["asn"], "country": res["country"],
                  "org": res["org"], "cdn": res["cdn"], "platform": res["platform"],
                  "registrar": (res["registrar"] or {}).get("name"),
                  "contacts": len(res["contacts"]),
                  "top_contact": top["address"] if top else None}
        if res["notes"]:
            detail["notes"] = res["notes"]
        return StageResult(state="resolved", action="resolved", data={"resolution": res},
                           detail=detail)
    attempts = case.attempts + 1
    settings = ctx.config.section("resolve")
    detail = {**outcome.partial, "error": outcome.message, "attempts": attempts}
    if attempts >= settings.get("max_attempts", 8):
        detail["final"] = True
        return StageResult(state="failed", action="unresolved", reason=outcome.reason,
                           detail=detail)
    return StageResult(state="unresolved", action="unresolved", reason=outcome.reason,
                       retry_at=ctx.clock.now() + retry_delay(settings, attempts),
                       detail=detail)
