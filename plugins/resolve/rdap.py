"""Network and registrar resolution over RDAP.

* :class:`IpRdapClient` — IP → network (ASN, CIDR, organisation, country, abuse contacts) with
  **ipwhois** (``lookup_rdap(bootstrap=True, inc_nir=False, retry_count=0)``), run in worker
  threads behind a semaphore. Results are cached per network *range*: every address inside a
  cached CIDR is answered without a lookup, so 10,000 URLs on one hoster cost one RDAP query.
* :class:`DomainRdapClient` — domain → registrar (name, IANA id, abuse email/phone, registry,
  creation date, status) over **httpx**, routed by the IANA RDAP bootstrap file shipped in
  ``plugins/resolve/data/rdap_bootstrap_dns.json`` (refresh with :func:`update_bootstrap`).

Offline operation is configuration, not patching: ``[rdap] ip_base_url`` replaces ipwhois's
ARIN bootstrap base (``https://rdap-bootstrap.arin.net/bootstrap``) and ``[rdap] proxy`` is a
*rewriting gateway*: ``https://host/path`` is requested as ``{proxy}/host/path``. The lab RDAP
server (:mod:`engine.lab.rdap_server`) answers both forms.

Errors: ``ResolutionError`` with ``reason`` one of ``not_found``, ``malformed_rdap``,
``rate_limited``, ``unreachable``, ``registry_error`` (5xx), ``rejected`` (other 4xx),
``reserved_address``, ``bad_address``, ``no_rdap_service``, ``bad_bootstrap``. Rate limits,
unreachable registries and 5xx are retried with exponential backoff
(``backoff_base * 2**attempt`` seconds); the others are final.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import ipaddress
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import dns.resolver
import httpx
import ipwhois
import ipwhois.exceptions
import ipwhois.net
import ipwhois.rdap
import ipwhois.utils
import pycountry

from engine.errors import InputError, ResolutionError
from plugins.resolve.datasources import SNAPSHOT_DIR, bootstrap_document
from plugins.resolve.hosting_rules import RangeTable

IPWHOIS_BOOTSTRAP_URL: str = ipwhois.rdap.BOOTSTRAP_URL
IANA_BOOTSTRAP_URL = "https://data.iana.org/rdap/dns.json"
DEFAULT_BOOTSTRAP_FILE = SNAPSHOT_DIR / "iana-dns.json"
DEFAULT_TTL_SECONDS = 24 * 3600
NEGATIVE_TTL_SECONDS = 3600
# Registry answers are small; anything bigger is refused rather than held in memory.
MAX_RDAP_BYTES = 2 * 1024 * 1024
_RDAP_ACCEPT = "application/rdap+json, application/json;q=0.9"


# ====================================================================== records and cache


@dataclass(frozen=True, kw_only=True)
class NetworkInfo:
    """What a regional registry says about the network holding one IP address."""

    asn: int | None
    asn_cidr: str | None
    network_name: str | None
    cidr: str | None
    org: str | None
    country: str | None
    abuse_emails: list[str] = field(default_factory=list)
    abuse_phones: list[str] = field(default_factory=list)
    raw_source: str = ""
    handle: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (also the cache value)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkInfo:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class RegistrarInfo:
    """What a domain registry says about the registrar of one domain."""

    name: str | None
    iana_id: str | None
    abuse_email: str | None
    abuse_phone: str | None
    registry: str | None
    created: str | None
    status: list[str] = field(default_factory=list)
    domain: str | None = None
    registrar_rdap: str | None = None  # the registrar's RDAP URL asked (``related`` link)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (also the cache value)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegistrarInfo:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in names})


class RdapCache(Protocol):
    """Key/value cache with a per-entry TTL; the store's cache table implements it too."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The live value for ``key`` or None (missing or expired)."""
        ...

    def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds``."""
        ...


class MemoryRdapCache:
    """In-process :class:`RdapCache`; ``clock`` is injectable so tests can expire entries."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty cache."""
        self._clock = clock
        self._data: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """The live value for ``key`` or None; expired entries are dropped on read."""
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._data[key]
            return None
        return item[1]

    def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Store ``value`` for ``ttl_seconds``."""
        self._data[key] = (self._clock() + ttl_seconds, value)

    def __len__(self) -> int:
        return len(self._data)


# ====================================================================== jCard / entity helpers


def vcard_fields(vcard_array: Any) -> dict[str, Any]:
    """Extract ``fn``, ``org``, ``kind``, ``emails``, ``phones`` and ``country`` (ISO-2) from a
    jCard (RFC 7095).

    ``country`` comes from the ``adr`` property: its ``cc`` parameter (RFC 8605), else the
    country-name component of a structured address, else the last line of its ``label``
    (ARIN writes "United States" there; some registries escape the line breaks as ``\\n``).
    Tolerant of the variations registries emit; raises ``ValueError`` if it is not a jCard.
    """
    if not (isinstance(vcard_array, list) and len(vcard_array) >= 2
            and isinstance(vcard_array[1], list)):
        raise ValueError("vcardArray is not a jCard")
    out: dict[str, Any] = {"fn": None, "org": None, "kind": None, "emails": [], "phones": [],
                           "country": None}
    for prop in vcard_array[1]:
        if not isinstance(prop, list) or len(prop) < 4:
            continue
        name, params, value = str(prop[0]).lower(), prop[1], prop[3]
        if name == "fn" and isinstance(value, str):
            out["fn"] = value.strip() or None
        elif name == "org":
            text = value if isinstance(value, str) else (
                next((v for v in value if isinstance(v, str) and v.strip()), "")
                if isinstance(value, list) else "")
            out["org"] = out["org"] or (text.strip() or None)
        elif name == "kind" and isinstance(value, str):
            out["kind"] = value.strip().lower()
        elif name == "email" and isinstance(value, str) and "@" in value:
            out["emails"].append(value.strip().removeprefix("mailto:").lower())
        elif name == "tel" and isinstance(value, str):
            # "tel:+31-20-555-0100;ext=12" → "+31-20-555-0100;ext=12"
            out["phones"].append(value.strip().removeprefix("tel:"))
        elif name == "adr" and out["country"] is None:
            out["country"] = _adr_country(params if isinstance(params, dict) else {}, value)
    return out


def _adr_country(params: Mapping[str, Any], value: Any) -> str | None:
    cc = params.get("cc")
    if isinstance(cc, str) and len(cc.strip()) == 2 and cc.strip().isalpha():
        return cc.strip().upper()
    if isinstance(value, list) and len(value) >= 7 and isinstance(value[6], str):
        code = country_from_name(value[6])
        if code:
            return code
    label = params.get("label")
    if isinstance(label, str) and label.strip():
        lines = [ln.strip() for ln in label.replace("\\n", "\n").splitlines() if ln.strip()]
        if lines:
            last = lines[-1]
            # "Chiyoda-ku, Tokyo 101-0047,Japan", "London GB": the country is the last part.
            for candidate in (last, last.rpartition(",")[2], last.rpartition(" ")[2]):
                code = country_from_name(candidate)
                if code:
                    return code
    return None


def country_from_name(name: str) -> str | None:
    """ISO 3166-1 alpha-2 code of a country written out ("UNITED STATES", "Japan", "GB")."""
    text = name.strip().strip(".").strip()
    if len(text) < 2:
        return None
    try:
        country = pycountry.countries.lookup(text)
    except LookupError:
        country = None
    if country is None:
        alias = _COUNTRY_ALIASES.get(text.lower())
        return alias
    return str(country.alpha_2)


# Names registries write that ISO 3166's names do not cover (pycountry knows the rest).
_COUNTRY_ALIASES = {"usa": "US", "u.s.a": "US", "uk": "GB", "england": "GB",
                    "great britain": "GB", "south korea": "KR", "korea": "KR",
                    "russia": "RU", "czech republic": "CZ", "the netherlands": "NL",
                    "holland": "NL", "iran": "IR", "vietnam": "VN", "taiwan": "TW"}


def _iso2(value: Any) -> str | None:
    if isinstance(value, str) and len(value.strip()) == 2 and value.strip().isalpha():
        return value.strip().upper()
    return None


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _walk_entities(
    entities: Any, fetched: Mapping[str, Any], depth: int = 0
) -> list[tuple[set[str], dict[str, Any]]]:
    """Flatten nested RDAP entities to (roles, entity) pairs.

    An entity without a vCard is replaced by its full object if ipwhois fetched it from
    ``/entity/<handle>``. Depth is bounded: registries nest two or three levels at most.
    """
    out: list[tuple[set[str], dict[str, Any]]] = []
    if depth > 6 or not isinstance(entities, list):
        return out
    for ent in entities:
        if not isinstance(ent, dict):
            raise TypeError("entity is not an object")
        full = ent
        handle = ent.get("handle")
        if "vcardArray" not in ent and isinstance(handle, str):
            fetched_raw = fetched.get(handle)
            if isinstance(fetched_raw, dict):
                full = {**fetched_raw, **{k: v for k, v in ent.items() if k != "entities"}}
                full.setdefault("entities", fetched_raw.get("entities"))
        roles_raw = ent.get("roles") or full.get("roles") or []
        roles = {str(r).lower() for r in roles_raw} if isinstance(roles_raw, list) else set()
        out.append((roles, full))
        out.extend(_walk_entities(full.get("entities") or ent.get("entities"), fetched,
                                  depth + 1))
    return out


# ====================================================================== IP → network


class RewritingOpener(urllib.request.OpenerDirector):
    """urllib opener for ipwhois that can redirect registry URLs to configured places.

    * ``base_url`` replaces ipwhois's ARIN bootstrap base (``[rdap] ip_base_url``);
    * ``proxy`` turns ``https://host/path`` into ``{proxy}/host/path`` (``[rdap] proxy``),
      including redirects between registries.

    It also buffers each answer (capped at :data:`MAX_RDAP_BYTES`) so no socket outlives the
    call, and remembers the last HTTP status and every URL asked for (before rewriting), which
    ipwhois's own exceptions do not carry.
    """

    def __init__(self, *, base_url: str | None = None, proxy: str | None = None,
                 registry_base: str | None = None) -> None:
        """Build an opener with urllib's standard handlers. ``registry_base`` (the RIR that
        IANA's bootstrap names for the address) replaces the ARIN bootstrap base like
        ``base_url`` does, but is still sent through ``proxy``."""
        super().__init__()
        self.base_url = base_url.rstrip("/") if base_url else None
        self.registry_base = registry_base.rstrip("/") if registry_base else None
        self.proxy = proxy.rstrip("/") if proxy else None
        # Rewritten targets are explicit: never let http(s)_proxy variables reroute them.
        proxies: dict[str, str] | None = {} if (self.base_url or self.proxy) else None
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler(proxies),
            urllib.request.UnknownHandler(),
            urllib.request.HTTPHandler(),
            urllib.request.HTTPSHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPRedirectHandler(),
            urllib.request.HTTPErrorProcessor(),
        ]
        for handler in handlers:
            self.add_handler(handler)
        self.requested: list[str] = []
        self.last_status: int | None = None

    def rewrite(self, url: str) -> str:
        """Where ``url`` is really fetched."""
        if self.base_url and url.startswith(IPWHOIS_BOOTSTRAP_URL):
            # The configured base is where bootstrap queries go: final, not proxied again.
            return self.base_url + url[len(IPWHOIS_BOOTSTRAP_URL):]
        if self.registry_base and url.startswith(IPWHOIS_BOOTSTRAP_URL):
            url = self.registry_base + url[len(IPWHOIS_BOOTSTRAP_URL):]
        if self.proxy and not url.startswith(self.proxy + "/"):
            parts = urlsplit(url)
            if parts.scheme in ("http", "https"):
                url = f"{self.proxy}/{parts.netloc}{parts.path or '/'}"
                if parts.query:
                    url += f"?{parts.query}"
        return url

    def open(  # type: ignore[override]
        self, fullurl: str | urllib.request.Request, data: bytes | None = None,
        timeout: float | None = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    ) -> Any:
        """Open with rewriting; returns a fully read, in-memory response."""
        req = fullurl if isinstance(fullurl, urllib.request.Request) else (
            urllib.request.Request(fullurl))
        self.requested.append(req.full_url)
        req.full_url = self.rewrite(req.full_url)
        try:
            with super().open(req, data, timeout) as resp:
                body = resp.read(MAX_RDAP_BYTES + 1)
                status = resp.status
                headers = resp.headers
                url = resp.url
        except urllib.error.HTTPError as exc:
            self.last_status = exc.code
            exc.close()  # ipwhois only reads .code; release the socket now
            raise
        except urllib.error.URLError:
            self.last_status = None
            raise
        self.last_status = status
        if len(body) > MAX_RDAP_BYTES:
            # ipwhois turns any parse failure into HTTPLookupError; status 200 marks it malformed.
            body = b"\x00oversized"
        return urllib.response.addinfourl(io.BytesIO(body), headers, url, status)


def _ipwhois_rdap(ip: str, opener: RewritingOpener, timeout: float,
                  use_ipwhois_class: bool = True) -> dict[str, Any]:
    """Run ipwhois's RDAP lookup for ``ip`` (blocking; call in a thread).

    ``IPWhois()`` builds a system DNS resolver it does not need for bootstrap RDAP and fails
    when ``resolv.conf`` has no nameserver; then the same RDAP code runs on a resolver-less Net.
    """
    kwargs: dict[str, Any] = dict(inc_raw=True, retry_count=0, bootstrap=True,
                                  rate_limit_timeout=0)
    if use_ipwhois_class:
        try:
            who = ipwhois.IPWhois(ip, timeout=timeout, proxy_opener=opener)
        except dns.resolver.NoResolverConfiguration:
            pass
        else:
            return who.lookup_rdap(inc_nir=False, **kwargs)
    net = _resolverless_net(ip, timeout, opener)
    return ipwhois.rdap.RDAP(net).lookup(**kwargs)


def _resolverless_net(ip: str, timeout: float, opener: RewritingOpener) -> ipwhois.net.Net:
    """An ``ipwhois.net.Net`` with the attributes RDAP lookups use, without a DNS resolver."""
    address = ipaddress.ip_address(ip)
    check = (ipwhois.utils.ipv4_is_defined if address.version == 4
             else ipwhois.utils.ipv6_is_defined)
    defined = check(str(address))
    if defined[0]:
        raise ipwhois.exceptions.IPDefinedError(
            f"IP address {address} is already defined as {defined[1]} via {defined[2]}.")
    net = ipwhois.net.Net.__new__(ipwhois.net.Net)
    net.address = address
    net.address_str = str(address)
    net.version = address.version
    net.timeout = timeout
    net.opener = opener
    net.dns_resolver = None
    return net


AsnLookup = Callable[[str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _CachedRange:
    info: NetworkInfo
    expires_at: float


class IpRdapClient:
    """IP → :class:`NetworkInfo` with ipwhois, a range cache, bounded threads and 429 backoff."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        proxy: str | None = None,
        cache: RdapCache | None = None,
        max_in_flight: int = 4,
        retries: int = 3,
        backoff_base: float = 1.0,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        timeout: float = 10.0,
        asn_lookup: AsnLookup | None = None,
        clock: Callable[[], float] = time.monotonic,
        ip_bootstrap: IpBootstrap | None = None,
    ) -> None:
        """``base_url``/``proxy``: see the module docstring; ``asn_lookup(ip)`` is optional and
        returns an object with ``asn``/``cidr``/``country`` (e.g. ``DnsResolver.origin_asn``) for
        registries whose RDAP answer has no origin AS (all but ARIN). ``clock`` drives the
        in-memory expiry of cached ranges (injectable for tests)."""
        self.base_url = base_url
        self.proxy = proxy
        # Without a configured base, IANA's bootstrap names the RIR (no ARIN redirect hop).
        self.ip_bootstrap = ip_bootstrap
        self.cache: RdapCache = cache if cache is not None else MemoryRdapCache()
        self.retries = retries
        self.backoff_base = backoff_base
        self.ttl_seconds = ttl_seconds
        self.timeout = timeout
        self.asn_lookup = asn_lookup
        self.lookups = 0  # real RDAP lookups started (attempts, including retries)
        self.cache_hits = 0
        self._sem = asyncio.Semaphore(max_in_flight)
        self._clock = clock
        self._index: RangeTable[_CachedRange] = RangeTable()
        self._bucket_locks: dict[tuple[int, int], asyncio.Lock] = {}
        self._loaded_buckets: set[tuple[int, int]] = set()

    # ------------------------------------------------------------------ cache
    # Hot path: an in-memory range table with its own expiry (no cache round trip per URL).
    # Cold path (first sight of a /16 or /32 bucket, e.g. after a restart): the bucket's list of
    # cached ranges is read from ``cache``, so a persistent cache also spares lookups.

    @staticmethod
    def _bucket(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
        """Coarse bucket (IPv4 /16, IPv6 /32) for single-flight and the persisted index."""
        if address.version == 4:
            return 4, int(address) >> 16
        return 6, int(address) >> 96

    @staticmethod
    def _bucket_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        prefix = 16 if address.version == 4 else 32
        return f"rdap:ip:bucket:{ipaddress.ip_network(f'{address}/{prefix}', strict=False)}"

    def _index_add(self, info: NetworkInfo, cidrs: list[str], expires_at: float) -> None:
        entry = _CachedRange(info=info, expires_at=expires_at)
        for cidr in cidrs:
            self._index.add(cidr, entry)

    def _load_bucket(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        bucket = self._bucket(address)
        if bucket in self._loaded_buckets:
            return
        self._loaded_buckets.add(bucket)
        saved = self.cache.get(self._bucket_key(address))
        for key in (saved or {}).get("keys", []):
            value = self.cache.get(key)
            if value is None:
                continue
            remaining = float(value.get("expires_wall", 0)) - time.time()
            if remaining > 0:
                self._index_add(NetworkInfo.from_dict(value["info"]), value["cidrs"],
                                self._clock() + remaining)

    def cached(self, ip: str) -> NetworkInfo | None:
        """The cached network containing ``ip`` (most specific first), or None."""
        return self._cached(ipaddress.ip_address(ip))

    def _cached(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address
                ) -> NetworkInfo | None:
        self._load_bucket(address)
        now = self._clock()
        while (hit := self._index.lookup(address)) is not None:
            cidr, entry = hit
            if entry.expires_at <= now:
                self._index.remove(cidr)  # expired: forget the range, look for a wider one
                continue
            return entry.info if entry.info.cidr == cidr else replace(entry.info, cidr=cidr)
        return None

    def _store(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
               info: NetworkInfo, cidrs: list[str]) -> None:
        self._index_add(info, cidrs, self._clock() + self.ttl_seconds)
        key = f"rdap:ip:net:{cidrs[0]}"
        self.cache.put(key, {"info": info.to_dict(), "cidrs": cidrs,
                             "expires_wall": time.time() + self.ttl_seconds}, self.ttl_seconds)
        bucket_key = self._bucket_key(address)
        saved = self.cache.get(bucket_key) or {"keys": []}
        keys = [k for k in saved["keys"] if k != key and self.cache.get(k) is not None]
        self.cache.put(bucket_key, {"keys": [*keys, key]}, self.ttl_seconds)

    # ------------------------------------------------------------------ lookup

    async def lookup(self, ip: str) -> NetworkInfo:
        """Network, organisation, country and abuse contacts for ``ip``.

        Raises ``ResolutionError`` (reasons in the module docstring).
        """
        try:
            address = ipaddress.ip_address(ip.strip().strip("[]"))
        except ValueError as exc:
            raise ResolutionError(f"{ip!r} is not an IP address", reason="bad_address") from exc
        hit = self._cached(address)
        if hit is not None:
            self.cache_hits += 1
            return hit
        lock = self._bucket_locks.setdefault(self._bucket(address), asyncio.Lock())
        async with lock:
            # Another task may have cached this range while we waited for the bucket.
            hit = self._cached(address)
            if hit is not None:
                self.cache_hits += 1
                return hit
            info, cidrs = await self._lookup_with_retries(str(address))
            self._store(address, info, cidrs)
        return info  # already carries the CIDR that contains this address

    async def _lookup_with_retries(self, ip: str) -> tuple[NetworkInfo, list[str]]:
        last: ResolutionError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_base * 2 ** (attempt - 1))
            try:
                async with self._sem:
                    self.lookups += 1
                    info, cidrs = await asyncio.to_thread(self._lookup_sync, ip)
            except ResolutionError as exc:
                if exc.reason not in ("rate_limited", "unreachable", "registry_error"):
                    raise
                last = exc
                continue
            if (info.asn is None or info.country is None) and self.asn_lookup is not None:
                # No origin AS in RDAP (all RIRs but ARIN), or no country anywhere in the
                # answer: the origin lookup carries the country of the RIR delegation data.
                info = await self._add_origin_asn(ip, info)
            return info, cidrs
        assert last is not None  # noqa: S101 - the loop ran at least once
        raise ResolutionError(f"{last.message} (gave up after {self.retries + 1} attempts)",
                              reason=last.reason) from last

    async def _add_origin_asn(self, ip: str, info: NetworkInfo) -> NetworkInfo:
        assert self.asn_lookup is not None  # noqa: S101
        origin = await self.asn_lookup(ip)
        if origin is None:
            return info
        if info.asn is not None:
            return replace(info, country=info.country or _iso2(getattr(origin, "country", None)))
        return replace(info, asn=origin.asn, asn_cidr=origin.cidr,
                       country=info.country or _iso2(getattr(origin, "country", None)))

    def _lookup_sync(self, ip: str) -> tuple[NetworkInfo, list[str]]:
        """One ipwhois lookup mapped to ntd errors (runs in a worker thread)."""
        registry = (self.ip_bootstrap.base_for(ip)
                    if self.ip_bootstrap is not None and not self.base_url else None)
        opener = RewritingOpener(base_url=self.base_url, proxy=self.proxy,
                                 registry_base=registry)
        where = registry or IPWHOIS_BOOTSTRAP_URL
        try:
            results = _ipwhois_rdap(ip, opener, self.timeout)
        except ipwhois.exceptions.IPDefinedError as exc:
            raise ResolutionError(f"{ip} is a reserved address: {exc}",
                                  reason="reserved_address") from exc
        except ipwhois.exceptions.HTTPRateLimitError as exc:
            raise ResolutionError(f"RDAP registry rate-limited the lookup of {ip}",
                                  reason="rate_limited") from exc
        except ipwhois.exceptions.HTTPLookupError as exc:
            status = opener.last_status
            url = opener.requested[-1] if opener.requested else where
            if status == 404:
                raise ResolutionError(f"no RDAP network for {ip} ({url} answered 404)",
                                      reason="not_found") from exc
            if status == 200:
                raise ResolutionError(f"malformed RDAP answer for {ip} from {url}: not JSON",
                                      reason="malformed_rdap") from exc
            if status is None:
                raise ResolutionError(f"RDAP registry unreachable for {ip} ({url})",
                                      reason="unreachable") from exc
            # 5xx is worth retrying; any other 4xx means the registry rejects this query.
            reason = "registry_error" if status >= 500 else "rejected"
            raise ResolutionError(f"RDAP lookup of {ip} failed: {url} answered {status}",
                                  reason=reason) from exc
        except (ipwhois.exceptions.BaseIpwhoisException, ipwhois.rdap.InvalidNetworkObject,
                KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResolutionError(
                f"malformed RDAP answer for {ip}: {type(exc).__name__}: {exc}",
                reason="malformed_rdap") from exc
        ip_urls = [u for u in opener.requested if "/ip/" in u]
        source = ip_urls[-1] if ip_urls else where
        try:
            return _network_info(ip, results, source)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResolutionError(
                f"malformed RDAP answer for {ip} from {source}: {type(exc).__name__}: {exc}",
                reason="malformed_rdap") from exc


# Registries and national registries (NIRs) whose own role addresses show up as "abuse"
# contacts of networks they delegated (APNIC's IRT objects for KRNIC, JPNIC, ...): an abuse
# address of the network's own organisation is preferred over theirs.
REGISTRY_MAIL_DOMAINS = frozenset({
    "apnic.net", "ripe.net", "arin.net", "lacnic.net", "afrinic.net", "nic.or.kr",
    "krnic.or.kr", "kisa.or.kr", "nic.ad.jp", "jpnic.ad.jp", "twnic.net.tw", "twnic.tw",
    "cnnic.cn", "cnnic.net.cn", "idnic.net", "apjii.or.id", "vnnic.vn", "vnnic.net.vn",
    "irinn.in", "nic.br", "registro.br", "nic.mx"})


def _is_registry_address(email: str) -> bool:
    domain = email.rpartition("@")[2].lower()
    return any(domain == d or domain.endswith("." + d) for d in REGISTRY_MAIL_DOMAINS)


def _is_maintainer(ent: Mapping[str, Any]) -> bool:
    """RIPE/AFRINIC maintainer objects (``*-MNT``) carry role ``registrant`` but are not
    organisations: they say who may edit the object."""
    handle = str(ent.get("handle") or "").upper()
    return handle.endswith("-MNT") or handle.startswith("MNT-")


def _network_org(entities: list[tuple[set[str], dict[str, Any]]]
                 ) -> tuple[str | None, str | None]:
    """(organisation, its country) from the ``registrant`` entity that is an organisation.

    Order: a registrant whose vCard says ``kind: org``; else any registrant with a name that is
    not a maintainer; else (registries that give entities no roles, e.g. AFRINIC) the one
    entity of kind ``org``; else the handle of a registrant organisation object without vCard
    (``ORG-...``). Maintainers never count.
    """
    registrants = [e for roles, e in entities if "registrant" in roles and not _is_maintainer(e)]
    cards = [(e, vcard_fields(e["vcardArray"])) for e in registrants if "vcardArray" in e]
    for _ent, card in cards:
        if card["kind"] == "org" and (card["fn"] or card["org"]):
            return card["fn"] or card["org"], card["country"]
    for _ent, card in cards:
        if card["kind"] != "individual" and (card["org"] or card["fn"]):
            return card["org"] or card["fn"], card["country"]
    if not any(roles for roles, _ in entities):
        orgs = [vcard_fields(e["vcardArray"]) for _, e in entities if "vcardArray" in e]
        orgs = [c for c in orgs if c["kind"] == "org" and (c["fn"] or c["org"])]
        if len(orgs) == 1:
            return orgs[0]["fn"] or orgs[0]["org"], orgs[0]["country"]
    for ent in registrants:
        handle = ent.get("handle")
        if "vcardArray" not in ent and isinstance(handle, str) and handle.upper().startswith(
                "ORG-"):
            return handle, None
    return None, None


def _network_abuse(entities: list[tuple[set[str], dict[str, Any]]]
                   ) -> tuple[list[str], list[str]]:
    """Abuse e-mails and phones: entities with role ``abuse`` at any depth, the network's own
    before a registry's (when the only abuse entity is a registry's, an ``abuse@`` address on
    the network's other entities comes first)."""
    own: list[str] = []
    registry: list[str] = []
    phones: list[str] = []
    for roles, ent in entities:
        if "abuse" not in roles or "vcardArray" not in ent:
            continue
        card = vcard_fields(ent["vcardArray"])
        for address in card["emails"]:
            (registry if _is_registry_address(address) else own).append(address)
        phones.extend(card["phones"])
    if not own and registry:
        for roles, ent in entities:
            if "abuse" in roles or "vcardArray" not in ent:
                continue
            own.extend(e for e in vcard_fields(ent["vcardArray"])["emails"]
                       if e.split("@")[0].startswith("abuse") and not _is_registry_address(e))
    return _dedupe([*own, *registry]), _dedupe(phones)


def _network_info(ip: str, results: Mapping[str, Any], source: str) -> tuple[NetworkInfo,
                                                                             list[str]]:
    """Build :class:`NetworkInfo` (and all CIDRs of the range) from ipwhois results."""
    raw = results["raw"]
    network = results["network"] or {}
    if not isinstance(raw, dict):
        raise TypeError("RDAP answer is not an object")
    cidrs = [str(ipaddress.ip_network(c.strip(), strict=False))
             for c in str(network.get("cidr") or "").split(",") if c.strip()]
    if not cidrs:
        raise ValueError("RDAP network has no address range")
    address = ipaddress.ip_address(ip)
    if not any(address in ipaddress.ip_network(c) for c in cidrs):
        raise ValueError(f"RDAP network {', '.join(cidrs)} does not contain {ip}")
    fetched = {h: o.get("raw") for h, o in (results.get("objects") or {}).items()
                if isinstance(o, dict)}
    entities = _walk_entities(raw.get("entities"), fetched)
    org, org_country = _network_org(entities)
    emails, phones = _network_abuse(entities)
    asn: int | None = None
    origins = raw.get("arin_originas0_originautnums")
    if isinstance(origins, list) and origins and str(origins[0]).isdigit():
        asn = int(origins[0])
    containing = next(c for c in cidrs if address in ipaddress.ip_network(c))
    info = NetworkInfo(
        asn=asn,
        asn_cidr=None,
        network_name=network.get("name"),
        cidr=containing,
        org=org,
        country=_iso2(network.get("country")) or _iso2(raw.get("country")) or org_country,
        abuse_emails=_dedupe(emails),
        abuse_phones=_dedupe(phones),
        raw_source=source,
        handle=network.get("handle"),
    )
    return info, cidrs


# ====================================================================== domain → registrar


def load_bootstrap(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an IANA ``dns.json`` bootstrap file → ``{tld: base_url}`` (https preferred)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResolutionError(f"cannot read RDAP bootstrap file {path}: {exc}",
                              reason="bad_bootstrap") from exc
    if isinstance(data, dict) and "source" in data and isinstance(data.get("data"), dict):
        data = data["data"]  # an `ntd data update` snapshot wraps IANA's document
    return parse_bootstrap(data, where=str(path))


class IpBootstrap:
    """IANA's IPv4/IPv6 RDAP bootstrap: which RIR's RDAP server answers for an address."""

    def __init__(self, ipv4: Mapping[str, Any], ipv6: Mapping[str, Any]) -> None:
        """Build from the two bootstrap documents (``ipv4.json``, ``ipv6.json``)."""
        self._table: RangeTable[str] = RangeTable()
        for doc in (ipv4, ipv6):
            for cidrs, urls in doc.get("services") or []:
                good = sorted((u for u in urls if isinstance(u, str)),
                              key=lambda u: not u.startswith("https://"))
                for cidr in cidrs:
                    self._table.add(cidr, good[0].rstrip("/"))

    @classmethod
    def from_snapshots(cls, directory: str | os.PathLike[str] | None = None) -> IpBootstrap:
        """From the ``iana-ipv4``/``iana-ipv6`` snapshots (``[resolve] snapshot_dir``)."""
        folder = Path(directory) if directory else None
        return cls(bootstrap_document("ipv4", folder), bootstrap_document("ipv6", folder))

    def base_for(self, ip: str) -> str | None:
        """RDAP base URL of the RIR for ``ip`` (e.g. ``https://rdap.db.ripe.net``), or None."""
        hit = self._table.lookup(ipaddress.ip_address(ip))
        return hit[1] if hit else None


def parse_bootstrap(data: Any, *, where: str = "bootstrap") -> dict[str, str]:
    """Validate a ``dns.json`` document and map each TLD to its first (https) base URL."""
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, list) or not services:
        raise ResolutionError(f"{where}: 'services' must be a non-empty list",
                              reason="bad_bootstrap")
    table: dict[str, str] = {}
    for i, service in enumerate(services):
        if (not isinstance(service, list) or len(service) != 2
                or not all(isinstance(part, list) for part in service)):
            raise ResolutionError(f"{where}: services[{i}] must be [[tlds], [urls]]",
                                  reason="bad_bootstrap")
        tlds, urls = service
        good = [u for u in urls if isinstance(u, str) and u.startswith(("https://", "http://"))]
        if not good or not tlds or not all(isinstance(t, str) and t for t in tlds):
            raise ResolutionError(f"{where}: services[{i}] has no TLD or no http(s) URL",
                                  reason="bad_bootstrap")
        good.sort(key=lambda u: not u.startswith("https://"))
        for tld in tlds:
            table[tld.lower().strip(".")] = good[0]
    return table


async def update_bootstrap(
    url: str = IANA_BOOTSTRAP_URL,
    path: str | os.PathLike[str] = DEFAULT_BOOTSTRAP_FILE,
    *,
    http_client: httpx.AsyncClient | None = None,
    timeout: float = 30.0,
) -> int:
    """Download the IANA RDAP bootstrap file, validate it and replace ``path`` atomically.

    Returns the number of TLDs it covers. The old file is kept if anything fails.
    """
    client = http_client or httpx.AsyncClient(timeout=timeout)
    try:
        try:
            resp = await client.get(url, headers={"Accept": "application/json"},
                                    follow_redirects=True)
        except httpx.HTTPError as exc:
            raise ResolutionError(f"cannot download {url}: {exc}",
                                  reason="unreachable") from exc
    finally:
        if http_client is None:
            await client.aclose()
    if resp.status_code != 200:
        raise ResolutionError(f"{url} answered {resp.status_code}", reason="bad_bootstrap")
    try:
        data = resp.json()
    except ValueError as exc:
        raise ResolutionError(f"{url} did not return JSON", reason="bad_bootstrap") from exc
    table = parse_bootstrap(data, where=url)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".bootstrap-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(table)


def registered_domain(host: str) -> str:
    """The registrable domain of ``host`` (ICANN suffixes only, offline): the engine's own
    ``engine.urls.registrable_domain``, one Public Suffix List snapshot for the whole process.

    Unknown suffixes (``.test`` labs) fall back to the last two labels, and so does a name the
    URL rules would refuse.
    """
    from engine.urls import registrable_domain  # deferred: pulls in tldextract, loaded on first use

    name = host.strip().rstrip(".").lower()
    try:
        return registrable_domain(name)
    except InputError:
        return ".".join(name.split(".")[-2:])


class DomainRdapClient:
    """Domain → :class:`RegistrarInfo` over httpx, routed by the IANA bootstrap file."""

    def __init__(
        self,
        *,
        bootstrap_file: str | os.PathLike[str] | None = None,
        base_url_override: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        cache: RdapCache | None = None,
        retries: int = 3,
        backoff_base: float = 1.0,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        timeout: float = 10.0,
        proxy: str | None = None,
        max_retry_after: float = 300.0,
    ) -> None:
        """``base_url_override`` maps TLD (or ``"*"`` for every TLD) → RDAP base URL and wins
        over the bootstrap file; ``proxy`` is the rewriting gateway described in the module
        docstring."""
        self._bootstrap = load_bootstrap(bootstrap_file or DEFAULT_BOOTSTRAP_FILE)
        self._override = {k.lower().strip("."): v for k, v in (base_url_override or {}).items()}
        self._own_client = http_client is None
        # Few connections: httpcore's pool bookkeeping slows down sharply with many (FIELD-NOTES).
        self._client = http_client or httpx.AsyncClient(
            timeout=timeout, trust_env=False, limits=httpx.Limits(max_connections=10))
        self.cache: RdapCache = cache if cache is not None else MemoryRdapCache()
        self.retries = retries
        self.backoff_base = backoff_base
        self.ttl_seconds = ttl_seconds
        self.proxy = proxy.rstrip("/") if proxy else None
        self.max_retry_after = max_retry_after
        self.lookups = 0
        self._locks: dict[str, asyncio.Lock] = {}

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> DomainRdapClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def base_url_for(self, domain: str) -> str | None:
        """RDAP base URL responsible for ``domain`` (longest matching suffix), or None."""
        labels = domain.lower().rstrip(".").split(".")
        for i in range(len(labels)):
            suffix = ".".join(labels[i:])
            if suffix in self._override:
                return self._override[suffix]
            if suffix in self._bootstrap:
                return self._bootstrap[suffix]
        return self._override.get("*")

    def _rewrite(self, url: str) -> str:
        if self.proxy and not url.startswith(self.proxy + "/"):
            parts = urlsplit(url)
            url = f"{self.proxy}/{parts.netloc}{parts.path or '/'}"
            if parts.query:
                url += f"?{parts.query}"
        return url

    async def lookup(self, domain: str) -> RegistrarInfo | None:
        """Registrar of the registrable domain of ``domain``; None if the registry has no such
        domain (404). Raises ``ResolutionError`` otherwise."""
        ascii_name = domain if domain.isascii() else domain.encode("idna").decode("ascii")
        name = registered_domain(ascii_name)
        key = f"rdap:domain:{name}"
        hit = self.cache.get(key)
        if hit is not None:
            return RegistrarInfo.from_dict(hit["info"]) if hit.get("info") else None
        async with self._locks.setdefault(name, asyncio.Lock()):
            hit = self.cache.get(key)
            if hit is not None:
                return RegistrarInfo.from_dict(hit["info"]) if hit.get("info") else None
            info = await self._lookup_uncached(name)
            ttl = self.ttl_seconds if info is not None else NEGATIVE_TTL_SECONDS
            self.cache.put(key, {"info": info.to_dict() if info else None}, ttl)
        self._locks.pop(name, None)
        return info

    async def _lookup_uncached(self, name: str) -> RegistrarInfo | None:
        base = self.base_url_for(name)
        if base is None:
            raise ResolutionError(f"no RDAP service known for {name}", reason="no_rdap_service")
        url = f"{base.rstrip('/')}/domain/{name}"
        last: ResolutionError | None = None
        for attempt in range(self.retries + 1):
            retry_after: float | None = None
            try:
                status, body, final_url, retry_after = await self._get(url)
            except ResolutionError as exc:
                last = exc
            else:
                if status == 200:
                    return await self._complete(name, _parse_domain(name, body, base,
                                                                    final_url), base)
                if status == 404:
                    return None
                if status < 500 and status != 429:
                    raise ResolutionError(f"RDAP {final_url} answered {status}",
                                          reason="rejected")
                reason = "rate_limited" if status == 429 else "registry_error"
                last = ResolutionError(f"RDAP {final_url} answered {status}", reason=reason)
            if attempt < self.retries:
                delay = self.backoff_base * 2 ** attempt
                if retry_after is not None:
                    # Honour the registry's Retry-After, within reason.
                    delay = max(delay, min(retry_after, self.max_retry_after))
                await asyncio.sleep(delay)
        assert last is not None  # noqa: S101
        raise ResolutionError(f"{last.message} (gave up after {self.retries + 1} attempts)",
                              reason=last.reason) from last

    async def _complete(self, name: str, answer: _DomainAnswer, base: str) -> RegistrarInfo:
        """Fill what the registry's answer lacks, one hop each, bounded and cached:

        * a registrar entity without vCard is fetched (its ``self`` link, else
          ``{base}/entity/<handle>``) for its name and abuse contact;
        * a thin registry's answer without a registrar abuse contact: its ``related`` link,
          the registrar's own RDAP server, is asked once (no further links are followed).

        A hop that fails leaves the registry's answer as it was.
        """
        info = answer.info
        if answer.entity_handle is not None:
            url = answer.entity_url or f"{base.rstrip('/')}/entity/{answer.entity_handle}"
            ent = await self._hop_json(url)
            if isinstance(ent, dict) and "vcardArray" in ent:
                try:
                    email, phone = _abuse_card(_walk_entities(ent.get("entities"), {}))
                    info = replace(info, name=_registrar_name(ent) or info.name,
                                   abuse_email=info.abuse_email or email,
                                   abuse_phone=info.abuse_phone or phone)
                except (ValueError, TypeError, AttributeError, KeyError):
                    pass  # an unreadable entity: keep the handle
        if info.abuse_email is None and answer.related is not None:
            raw = await self._hop_json(answer.related)
            if isinstance(raw, dict):
                try:
                    theirs = _parse_domain(name, json.dumps(raw).encode(), base,
                                           answer.related).info
                except ResolutionError:
                    theirs = None
                if theirs is not None:
                    info = replace(info, name=info.name or theirs.name,
                                   abuse_email=theirs.abuse_email,
                                   abuse_phone=info.abuse_phone or theirs.abuse_phone,
                                   registrar_rdap=answer.related)
        return info

    async def _hop_json(self, url: str) -> Any:
        """One GET of a linked RDAP object (cached; None on any failure)."""
        key = f"rdap:hop:{url}"
        hit = self.cache.get(key)
        if hit is not None:
            return hit.get("body")
        body: Any = None
        try:
            status, raw, _final, _retry = await self._get(url)
            if status == 200:
                body = json.loads(raw)
        except (ResolutionError, ValueError):
            body = None
        self.cache.put(key, {"body": body},
                       self.ttl_seconds if body is not None else NEGATIVE_TTL_SECONDS)
        return body

    async def _get(self, url: str) -> tuple[int, bytes, str, float | None]:
        """GET with manual redirects (so every hop is rewritten) → status, body, url, retry."""
        self.lookups += 1
        current = url
        for _hop in range(6):
            try:
                resp = await self._client.get(self._rewrite(current),
                                              headers={"Accept": _RDAP_ACCEPT})
            except httpx.HTTPError as exc:
                raise ResolutionError(f"RDAP registry unreachable ({current}): {exc!r}",
                                      reason="unreachable") from exc
            if resp.is_redirect and "location" in resp.headers:
                current = str(httpx.URL(current).join(resp.headers["location"]))
                continue
            body = resp.content
            if len(body) > MAX_RDAP_BYTES:
                raise ResolutionError(f"RDAP answer from {current} is too large",
                                      reason="malformed_rdap")
            return resp.status_code, body, current, _retry_after(resp.headers.get("retry-after"))
        raise ResolutionError(f"too many RDAP redirects from {url}", reason="registry_error")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True, kw_only=True)
class _DomainAnswer:
    """One parsed domain RDAP answer, before any registrar hop."""

    info: RegistrarInfo
    related: str | None  # the registrar's own RDAP URL for this domain (``rel: related``)
    entity_url: str | None  # where the registrar entity can be fetched (it had no vCard)
    entity_handle: str | None


def _registrar_name(ent: Mapping[str, Any]) -> str | None:
    """Registrar name: vCard ``fn``, else ``org``, else a public id, else the handle."""
    if "vcardArray" in ent:
        card = vcard_fields(ent["vcardArray"])
        if card["fn"] or card["org"]:
            return card["fn"] or card["org"]
    for pid in ent.get("publicIds") or []:
        if (isinstance(pid, dict) and isinstance(pid.get("identifier"), str)
                and pid.get("type") != "IANA Registrar ID" and pid["identifier"].strip()):
            return pid["identifier"].strip()
    handle = ent.get("handle")
    return handle.strip() if isinstance(handle, str) and handle.strip() else None


def _abuse_card(entities: list[tuple[set[str], dict[str, Any]]]
                ) -> tuple[str | None, str | None]:
    for roles, ent in entities:
        if "abuse" in roles and "vcardArray" in ent:
            card = vcard_fields(ent["vcardArray"])
            if card["emails"] or card["phones"]:
                return next(iter(card["emails"]), None), next(iter(card["phones"]), None)
    return None, None


def _parse_domain(name: str, body: bytes, base: str, url: str) -> _DomainAnswer:
    """Parse a domain RDAP answer; anything unexpected is ``malformed_rdap``.

    The registrar is the entity with role ``registrar`` (any depth); its abuse contact is an
    ``abuse`` entity under it, else one at the top level of the answer (Namecheap's own RDAP
    server puts it there).
    """
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("objectClassName") != "domain":
            raise ValueError("not an RDAP domain object")
        entities = _walk_entities(data.get("entities"), {})
        registrar = next((ent for roles, ent in entities if "registrar" in roles), None)
        registrar_name = iana_id = abuse_email = abuse_phone = None
        entity_url = entity_handle = None
        if registrar is not None:
            registrar_name = _registrar_name(registrar)
            for pid in registrar.get("publicIds") or []:
                if isinstance(pid, dict) and pid.get("type") == "IANA Registrar ID":
                    iana_id = str(pid.get("identifier")) or None
            abuse_email, abuse_phone = _abuse_card(_walk_entities(registrar.get("entities"),
                                                                  {}))
            handle = registrar.get("handle")
            if "vcardArray" not in registrar and isinstance(handle, str) and handle:
                entity_handle = handle
                entity_url = next((lk.get("href") for lk in registrar.get("links") or []
                                   if isinstance(lk, dict) and lk.get("rel") == "self"
                                   and isinstance(lk.get("href"), str)), None)
        if abuse_email is None and abuse_phone is None:
            top = [(roles, ent) for roles, ent in entities if "abuse" in roles]
            abuse_email, abuse_phone = _abuse_card(top)
        created = None
        for event in data.get("events") or []:
            if isinstance(event, dict) and event.get("eventAction") == "registration":
                created = event.get("eventDate")
        status = [str(s) for s in data.get("status") or []]
        related = next((lk.get("href") for lk in data.get("links") or []
                        if isinstance(lk, dict) and lk.get("rel") == "related"
                        and isinstance(lk.get("href"), str)
                        and "/domain/" in lk["href"]
                        and lk.get("type", "application/rdap+json") == "application/rdap+json"),
                       None)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ResolutionError(f"malformed RDAP answer for {name} from {url}: {exc}",
                              reason="malformed_rdap") from exc
    info = RegistrarInfo(name=registrar_name, iana_id=iana_id, abuse_email=abuse_email,
                         abuse_phone=abuse_phone, registry=base, created=created,
                         status=status, domain=name)
    return _DomainAnswer(info=info, related=related, entity_url=entity_url,
                         entity_handle=entity_handle)


def _registrar_info(name: str, body: bytes, base: str, url: str) -> RegistrarInfo:
    """Parse a domain RDAP answer (no hops); anything unexpected is ``malformed_rdap``."""
    return _parse_domain(name, body, base, url).info
