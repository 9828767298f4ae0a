"""CDN / reverse-proxy and shared-hosting platform recognition, driven by data files.

A URL behind a CDN resolves to the CDN, not to the hoster that holds the content; a URL on a
free-hosting platform (``someone.blogspot.com``) is removed by the platform, not by the network
under it. Both change who gets the notice, so resolution records them.

Data: ``plugins/resolve/data/cdn_ranges.json`` (``"cdns"``) and
``plugins/resolve/data/platforms.json`` (``"platforms"``). Users add or override entries with
extra files in the same format (``[resolve] extra_rules_file``); any file may hold either or both
keys, and later files win on equal names.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from engine.errors import ConfigError, InputError
from plugins.resolve.datasources import cdn_ranges

DATA_DIR = Path(__file__).parent / "data"
BUILTIN_FILES = (DATA_DIR / "cdn_ranges.json", DATA_DIR / "platforms.json")
AbuseChannel = Literal["web_form", "email", "api"]
_CHANNELS = ("web_form", "email", "api")
V = TypeVar("V")


class RangeTable(Generic[V]):
    """Longest-prefix match of IP addresses against CIDRs using integer keys.

    One dict per (version, prefix length); a lookup shifts the address once per distinct
    prefix length, so it costs a handful of dict probes and no ``ipaddress`` string parsing.
    """

    def __init__(self) -> None:
        """An empty table."""
        self._tables: dict[tuple[int, int], dict[int, tuple[str, V]]] = {}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}

    def add(self, cidr: str, value: V) -> str:
        """Map every address of ``cidr`` to ``value``; returns the normalised CIDR."""
        net = ipaddress.ip_network(cidr, strict=False)
        bits = net.max_prefixlen
        slot = (net.version, net.prefixlen)
        if slot not in self._tables:
            self._tables[slot] = {}
            self._lengths[net.version] = sorted({*self._lengths[net.version], net.prefixlen},
                                                reverse=True)
        text = str(net)
        self._tables[slot][int(net.network_address) >> (bits - net.prefixlen)] = (text, value)
        return text

    def remove(self, cidr: str) -> None:
        """Forget ``cidr`` (no error if absent)."""
        net = ipaddress.ip_network(cidr, strict=False)
        table = self._tables.get((net.version, net.prefixlen), {})
        table.pop(int(net.network_address) >> (net.max_prefixlen - net.prefixlen), None)

    def lookup(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address
               ) -> tuple[str, V] | None:
        """``(cidr, value)`` of the most specific range containing ``address``, or None."""
        version = address.version
        bits = 32 if version == 4 else 128
        number = int(address)
        for prefixlen in self._lengths[version]:
            hit = self._tables[(version, prefixlen)].get(number >> (bits - prefixlen))
            if hit is not None:
                return hit
        return None


@dataclass(frozen=True, kw_only=True)
class Platform:
    """A shared/free hosting platform and where to report abuse on it."""

    name: str
    abuse_channel: AbuseChannel
    abuse_address: str
    pattern: str | None = None  # the rule that matched, for the case record


@dataclass(frozen=True, kw_only=True)
class Cdn:
    """A CDN or reverse proxy: its ASNs, and where to report abuse (it forwards to the origin)."""

    name: str
    asns: tuple[int, ...]
    abuse_channel: AbuseChannel
    abuse_address: str


class HostingRules:
    """Lookup tables built from rule files; cheap to query (dict probes, no scans)."""

    def __init__(self) -> None:
        """An empty rule set; see :meth:`load` and :meth:`builtin`."""
        self._cdns: dict[str, Cdn] = {}
        self._asn_to_cdn: dict[int, str] = {}
        self._ranges: RangeTable[str] = RangeTable()
        self._exact_hosts: dict[str, Platform] = {}
        self._wildcards: dict[str, Platform] = {}
        self.snapshot_dir: Path | None = None

    @classmethod
    def builtin(cls, *extra_paths: str | os.PathLike[str],
                snapshot_dir: str | os.PathLike[str] | None = None) -> HostingRules:
        """Rules shipped with ntd, then ``extra_paths`` (``extra_rules_file``) on top.

        A CDN's ``ranges_snapshot`` names the data snapshot holding its published ranges
        (``[resolve] snapshot_dir``, else the shipped snapshots; see :mod:`datasources`).
        """
        rules = cls()
        rules.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        return rules.load(*BUILTIN_FILES, *extra_paths)

    def load(self, *paths: str | os.PathLike[str]) -> HostingRules:
        """Add the rules of each file in order (later entries win); returns ``self``."""
        for path in paths:
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"extra_rules_file: cannot read {path}: {exc}") from exc
            self.add_rules(data, where=str(path))
        return self

    def add_rules(self, data: Any, *, where: str = "rules") -> HostingRules:
        """Add rules from an already parsed document (same format as the files)."""
        if not isinstance(data, dict) or not ({"cdns", "platforms"} & data.keys()):
            raise ConfigError(f"{where}: expected an object with 'cdns' and/or 'platforms'")
        for i, item in enumerate(_list(data, "cdns", where)):
            self._add_cdn(item, f"{where}: cdns[{i}]")
        for i, item in enumerate(_list(data, "platforms", where)):
            self._add_platform(item, f"{where}: platforms[{i}]")
        return self

    def _add_cdn(self, item: Any, where: str) -> None:
        name = _text(item, "name", where)
        asns = item.get("asns", [])
        if not isinstance(asns, list) or not all(isinstance(a, int) and a > 0 for a in asns):
            raise ConfigError(f"{where}.asns must be a list of positive integers")
        cdn = Cdn(name=name, asns=tuple(asns), abuse_channel=_channel(item, where),
                  abuse_address=_text(item, "abuse_address", where))
        self._cdns[name] = cdn
        for asn in asns:
            self._asn_to_cdn[asn] = name
        ranges = list(item.get("ranges", []))
        snapshot = item.get("ranges_snapshot")
        if snapshot is not None:
            try:
                ranges += cdn_ranges(str(snapshot), self.snapshot_dir)
            except (InputError, OSError, ValueError) as exc:
                raise ConfigError(f"{where}.ranges_snapshot: {exc}") from exc
        for cidr in ranges:
            try:
                self._ranges.add(cidr, name)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}.ranges: {cidr!r} is not a CIDR") from exc

    def _add_platform(self, item: Any, where: str) -> None:
        name = _text(item, "name", where)
        patterns = item.get("patterns")
        if not isinstance(patterns, list) or not patterns:
            raise ConfigError(f"{where}.patterns must be a non-empty list")
        channel = _channel(item, where)
        address = _text(item, "abuse_address", where)
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern.strip("*.").strip():
                raise ConfigError(f"{where}.patterns: {pattern!r} is not a host pattern")
            key = pattern.strip().lower().rstrip(".")
            platform = Platform(name=name, abuse_channel=channel, abuse_address=address,
                                pattern=key)
            if key.startswith("*."):
                self._wildcards[key[2:]] = platform
            else:
                self._exact_hosts[key] = platform

    # ---------------------------------------------------------------- queries

    def cdn_info(self, ip: str | None, asn: int | None) -> Cdn | None:
        """The CDN serving ``ip`` (published range first, then a CDN-only ASN), or None."""
        if ip:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                address = None
            hit = self._ranges.lookup(address) if address is not None else None
            if hit is not None:
                return self._cdns[hit[1]]
        if asn is not None and asn in self._asn_to_cdn:
            return self._cdns[self._asn_to_cdn[asn]]
        return None

    def cdn_for(self, ip: str | None, asn: int | None) -> str | None:
        """Name of the CDN in front of ``ip`` / ``asn``, or None."""
        cdn = self.cdn_info(ip, asn)
        return cdn.name if cdn else None

    def platform_for(self, host: str) -> Platform | None:
        """The platform hosting ``host`` (exact rule, then the most specific wildcard)."""
        name = host.strip().lower().rstrip(".")
        if name in self._exact_hosts:
            return self._exact_hosts[name]
        labels = name.split(".")
        for i in range(1, len(labels)):
            hit = self._wildcards.get(".".join(labels[i:]))
            if hit is not None:
                return hit
        return None

    @property
    def cdns(self) -> list[Cdn]:
        """All known CDNs."""
        return list(self._cdns.values())


def _list(data: dict[str, Any], key: str, path: Any) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{path}: '{key}' must be a list")
    return value


def _text(item: Any, key: str, where: str) -> str:
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be an object")
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key} must be a non-empty string")
    return value.strip()


def _channel(item: Any, where: str) -> AbuseChannel:
    value = _text(item, "abuse_channel", where)
    if value not in _CHANNELS:
        raise ConfigError(f"{where}.abuse_channel must be one of {', '.join(_CHANNELS)}")
    return value  # type: ignore[return-value]
