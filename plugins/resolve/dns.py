"""Host → addresses: async A/AAAA resolution with the CNAME chain, plus a static host map for labs.

Every answer is recorded as a :class:`DnsResult`; NXDOMAIN, SERVFAIL, timeouts and empty answers
are *outcomes*, not exceptions, because "the host does not resolve" is evidence a hotline keeps.
Only :func:`DnsResolver.resolve_addresses` (for the SSRF-safe fetcher) raises.

The resolver never reads ``/etc/resolv.conf`` when ``dns_server`` is configured
(``dns.asyncresolver.Resolver(configure=False)``), so labs and tests can point it at a loopback
server. Static map keys are exact host names or wildcards (``*.hoster-3.test`` matches every
sub-domain of ``hoster-3.test``, not the apex); the map is consulted before DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename

from engine.errors import ConfigError, ResolutionError

Outcome = Literal["ok", "nxdomain", "servfail", "timeout", "no_answer"]

# When A and AAAA disagree and neither has addresses, report the most telling failure first.
_OUTCOME_PRIORITY: tuple[Outcome, ...] = ("nxdomain", "servfail", "timeout", "no_answer")


@dataclass(frozen=True, kw_only=True)
class DnsResult:
    """One resolution of one host: addresses (A then AAAA), CNAMEs followed, and the outcome."""

    host: str
    addresses: list[str] = field(default_factory=list)
    cnames: list[str] = field(default_factory=list)
    outcome: Outcome = "ok"
    error: str | None = None
    source: Literal["dns", "static", "literal"] = "dns"

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form for the store and ``--json`` output."""
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class OriginAsn:
    """Team Cymru origin answer for one IP: ``13335 | 104.16.0.0/13 | US | arin | 2014-03-28``."""

    asn: int
    cidr: str
    country: str | None
    registry: str | None


def parse_dns_server(value: str) -> tuple[str, int]:
    """Parse the ``dns_server`` setting ``IP[:port]`` (IPv6 as ``[::1]:5353`` or bare ``::1``)."""
    text = value.strip()
    host, port = text, 53
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ConfigError(f"dns_server: unbalanced '[' in {value!r}")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"dns_server: expected ':port' after ']' in {value!r}")
            port = _parse_port(rest[1:], value)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _parse_port(port_text, value)
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"dns_server: {host!r} is not an IP address (in {value!r})") from exc
    return host, port


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"dns_server: bad port {text!r} in {whole!r}")
    return int(text)


def normalise_host(host: str) -> str:
    """Lower-case, drop trailing dot, IDNA-encode (``bücher.test`` → ``xn--bcher-kva.test``)."""
    text = host.strip().rstrip(".").lower()
    if not text:
        raise ResolutionError("empty host name", reason="bad_host")
    if ":" in text or text.replace(".", "").isdigit():
        try:
            return str(ipaddress.ip_address(text.strip("[]")))
        except ValueError:
            pass
    if text.isascii():
        return text  # the common case; the IDNA codec is slow
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ResolutionError(f"host {host!r} is not a valid IDNA name", reason="bad_host") from exc


class DnsResolver:
    """Async A/AAAA resolver with a lab host map. Safe to share between tasks."""

    def __init__(
        self,
        *,
        dns_server: str | None = None,
        timeout: float = 5.0,
        hosts: Mapping[str, list[str]] | None = None,
    ) -> None:
        """``dns_server`` is ``IP[:port]``; ``None`` uses the system configuration."""
        if dns_server is not None:
            address, port = parse_dns_server(dns_server)
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [address]
            resolver.port = port
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                raise ConfigError(
                    "dns_server: not set and the system has no resolver configured"
                ) from exc
        resolver.timeout = timeout
        resolver.lifetime = timeout
        self._resolver = resolver
        self._exact: dict[str, list[str]] = {}
        self._wildcards: dict[str, list[str]] = {}
        for key, addresses in (hosts or {}).items():
            checked = [str(ipaddress.ip_address(a)) for a in addresses]
            name = key.strip().rstrip(".").lower()
            if name.startswith("*."):
                self._wildcards[name[2:]] = checked
            else:
                self._exact[name] = checked

    def _static(self, host: str) -> list[str] | None:
        if host in self._exact:
            return self._exact[host]
        labels = host.split(".")
        # Most specific wildcard wins: a.b.hoster.test tries *.b.hoster.test, then *.hoster.test.
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:])
            if parent in self._wildcards:
                return self._wildcards[parent]
        return None

    async def resolve(self, host: str) -> DnsResult:
        """Resolve ``host`` to its A and AAAA addresses; never raises for DNS failures."""
        name = normalise_host(host)
        if ":" in name or name.replace(".", "").isdigit():
            try:
                ipaddress.ip_address(name)
                return DnsResult(host=name, addresses=[name], source="literal")
            except ValueError:
                pass
        static = self._static(name)
        if static is not None:
            return DnsResult(host=name, addresses=list(static), source="static")
        a, aaaa = await asyncio.gather(self._query(name, "A"), self._query(name, "AAAA"))
        addresses = a[0] + aaaa[0]
        cnames = a[1] or aaaa[1]
        if addresses:
            return DnsResult(host=name, addresses=addresses, cnames=cnames)
        by_outcome = {a[2]: a[3], aaaa[2]: aaaa[3]}
        for outcome in _OUTCOME_PRIORITY:
            if outcome in by_outcome:
                return DnsResult(
                    host=name, cnames=cnames, outcome=outcome, error=by_outcome[outcome]
                )
        return DnsResult(host=name, cnames=cnames, outcome="no_answer")

    async def _query(
        self, name: str, rdtype: str
    ) -> tuple[list[str], list[str], Outcome, str | None]:
        """One query → (addresses, cname chain, outcome, error text)."""
        try:
            answer = await self._resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return [], [], "nxdomain", str(exc)
        except dns.resolver.NoNameservers as exc:
            # dnspython reports SERVFAIL/REFUSED from every server this way.
            return [], [], "servfail", str(exc)
        except dns.exception.Timeout as exc:
            return [], [], "timeout", str(exc)
        except dns.exception.DNSException as exc:
            return [], [], "servfail", f"{type(exc).__name__}: {exc}"
        cnames = [
            rdata.target.to_text(omit_final_dot=True)
            for rrset in answer.chaining_result.cnames
            for rdata in rrset
        ]
        if answer.rrset is None:
            return [], cnames, "no_answer", None
        addresses = [rdata.address for rdata in answer.rrset]
        return addresses, cnames, "ok", None

    async def resolve_addresses(self, host: str) -> list[str]:
        """Addresses for the SSRF-safe fetcher; raises ``ResolutionError(reason=outcome)``."""
        result = await self.resolve(host)
        if not result.addresses:
            raise ResolutionError(
                f"{result.host} did not resolve: {result.outcome}"
                + (f" ({result.error})" if result.error else ""),
                reason=result.outcome,
            )
        return result.addresses

    async def origin_asn(self, ip: str) -> OriginAsn | None:
        """Origin AS of ``ip`` via Team Cymru's DNS service (``origin[6].asn.cymru.com`` TXT).

        Returns None when there is no answer. Point ``dns_server`` at a lab server in tests.
        """
        address = ipaddress.ip_address(ip)
        reverse = dns.reversename.from_address(str(address))
        suffix = "origin.asn.cymru.com." if address.version == 4 else "origin6.asn.cymru.com."
        zone = "in-addr.arpa." if address.version == 4 else "ip6.arpa."
        qname = reverse.to_text().removesuffix(zone) + suffix
        try:
            answer = await self._resolver.resolve(qname, "TXT", raise_on_no_answer=False)
        except dns.exception.DNSException:
            return None
        if answer.rrset is None:
            return None
        for rdata in answer.rrset:
            text = b"".join(rdata.strings).decode("ascii", "replace")
            parsed = parse_cymru_origin(text)
            if parsed is not None:
                return parsed
        return None


def parse_cymru_origin(text: str) -> OriginAsn | None:
    """Parse one Cymru TXT answer; the first of several space-separated ASNs is kept."""
    parts = [p.strip() for p in text.split("|")]
    if len(parts) < 2 or not parts[0]:
        return None
    first = parts[0].split()[0]
    if not first.isdigit():
        return None
    try:
        cidr = str(ipaddress.ip_network(parts[1], strict=False))
    except ValueError:
        return None
    country = parts[2].upper() if len(parts) > 2 and len(parts[2]) == 2 else None
    registry = parts[3].lower() if len(parts) > 3 and parts[3] else None
    return OriginAsn(asn=int(first), cidr=cidr, country=country, registry=registry)
