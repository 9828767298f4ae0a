"""Published reference data the resolver depends on, as validated snapshots.

Seven sources, each written to ``<snapshot dir>/<name>.json``:

========== ====================================================== ==========================
name       official address                                       offline file (--from-dir)
========== ====================================================== ==========================
iana-dns   https://data.iana.org/rdap/dns.json                    iana-rdap-dns.json
iana-ipv4  https://data.iana.org/rdap/ipv4.json                   iana-rdap-ipv4.json
iana-ipv6  https://data.iana.org/rdap/ipv6.json                   iana-rdap-ipv6.json
iana-asn   https://data.iana.org/rdap/asn.json                    iana-rdap-asn.json
cloudflare https://www.cloudflare.com/ips-v4 and /ips-v6          cloudflare-v4-ip-ranges.txt,
                                                                  cloudflare-v6-ip-ranges.txt
cloudfront https://ip-ranges.amazonaws.com/ip-ranges.json         aws-ip-ranges.json
           (service ``CLOUDFRONT`` only)
fastly     https://api.fastly.com/public-ip-list                  fastly-ip-ranges.json
========== ====================================================== ==========================

A snapshot is ``{"source", "url", "file_date", "retrieved", "count", "data"}``:
``file_date`` is the date the file itself carries (IANA's ``publication``, AWS's
``createDate``) or None,
``retrieved`` the day it was downloaded (None for ``--from-dir``: when a local copy was taken
is not known). A snapshot made with ``--from-dir`` is a pure function of the files, so the
same files always give byte-identical snapshots (a test checks the shipped ones). Files are
validated before anything is replaced (a CIDR that does not parse, an empty list or a
bootstrap file without services keeps the old snapshot), and written atomically.

Akamai publishes no list of its addresses: it is recognised by its AS numbers
(``cdn_ranges.json``), not by a snapshot.

Downloads use an ordinary HTTPS client (these are fixed public addresses of IANA and the CDN
operators, not user-supplied URLs, so the SSRF-safe fetcher's lab rules do not apply).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.errors import InputError

SNAPSHOT_DIR = Path(__file__).parent / "data" / "snapshots"
MAX_AGE_DAYS = 90
MAX_SOURCE_BYTES = 16 * 2**20  # AWS's full list is ~2 MB


@dataclass(frozen=True, kw_only=True)
class Source:
    """One published file (or pair of files) and how to turn it into snapshot data."""

    name: str
    urls: tuple[str, ...]
    files: tuple[str, ...]
    parse: Callable[[list[bytes]], tuple[Any, str | None, int]]
    what: str

    @property
    def url(self) -> str:
        """The official address(es), as recorded in the snapshot."""
        return " ".join(self.urls)


# ---------------------------------------------------------------------------- parsers


def _json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{where}: not JSON ({exc})") from exc


def _cidrs(values: Any, where: str, version: int) -> list[str]:
    if not isinstance(values, list) or not values:
        raise InputError(f"{where}: expected a non-empty list of IPv{version} ranges")
    out = []
    for value in values:
        try:
            net = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError as exc:
            raise InputError(f"{where}: {value!r} is not a CIDR") from exc
        if net.version != version:
            raise InputError(f"{where}: {value!r} is not an IPv{version} range")
        out.append(str(net))
    return sorted(set(out), key=lambda c: (ipaddress.ip_network(c).network_address, c))


def _bootstrap(kind: str) -> Callable[[list[bytes]], tuple[Any, str | None, int]]:
    def parse(raws: list[bytes]) -> tuple[Any, str | None, int]:
        where = f"IANA {kind}.json"
        data = _json(raws[0], where)
        services = data.get("services") if isinstance(data, dict) else None
        if not isinstance(services, list) or not services:
            raise InputError(f"{where}: 'services' must be a non-empty list")
        count = 0
        for i, service in enumerate(services):
            if (not isinstance(service, list) or len(service) != 2
                    or not all(isinstance(part, list) and part for part in service)):
                raise InputError(f"{where}: services[{i}] must be [[keys], [urls]]")
            keys, urls = service
            if not all(isinstance(u, str) and u.startswith(("https://", "http://"))
                       for u in urls):
                raise InputError(f"{where}: services[{i}] has a URL that is not http(s)")
            for key in keys:
                if not isinstance(key, str) or not key:
                    raise InputError(f"{where}: services[{i}] has an empty key")
                if kind in ("ipv4", "ipv6"):
                    _cidrs([key], f"{where}: services[{i}]", 4 if kind == "ipv4" else 6)
                elif kind == "asn" and not _asn_range(key):
                    raise InputError(f"{where}: services[{i}]: {key!r} is not an AS range")
            count += len(keys)
        publication = data.get("publication")
        file_date = publication if isinstance(publication, str) and publication else None
        return data, file_date, count

    return parse


def _asn_range(key: str) -> tuple[int, int] | None:
    low, _, high = key.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        return None
    return int(low), int(high or low)


def _cloudflare(raws: list[bytes]) -> tuple[Any, str | None, int]:
    v4 = _cidrs(raws[0].decode("ascii", "replace").split(), "Cloudflare ips-v4", 4)
    v6 = _cidrs(raws[1].decode("ascii", "replace").split(), "Cloudflare ips-v6", 6)
    return {"ipv4": v4, "ipv6": v6}, None, len(v4) + len(v6)


def _cloudfront(raws: list[bytes]) -> tuple[Any, str | None, int]:
    where = "AWS ip-ranges.json"
    data = _json(raws[0], where)
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected an object")
    v4 = [p.get("ip_prefix") for p in data.get("prefixes") or []
          if isinstance(p, dict) and p.get("service") == "CLOUDFRONT"]
    v6 = [p.get("ipv6_prefix") for p in data.get("ipv6_prefixes") or []
          if isinstance(p, dict) and p.get("service") == "CLOUDFRONT"]
    v4c, v6c = _cidrs(v4, f"{where} CLOUDFRONT", 4), _cidrs(v6, f"{where} CLOUDFRONT", 6)
    created = data.get("createDate")
    file_date = None
    if isinstance(created, str):
        try:  # "2025-07-24-20-23-14"
            file_date = dt.datetime.strptime(created, "%Y-%m-%d-%H-%M-%S").strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            file_date = None
    return {"ipv4": v4c, "ipv6": v6c}, file_date, len(v4c) + len(v6c)


def _fastly(raws: list[bytes]) -> tuple[Any, str | None, int]:
    where = "Fastly public-ip-list"
    data = _json(raws[0], where)
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected an object")
    v4 = _cidrs(data.get("addresses"), f"{where} addresses", 4)
    v6 = _cidrs(data.get("ipv6_addresses"), f"{where} ipv6_addresses", 6)
    return {"ipv4": v4, "ipv6": v6}, None, len(v4) + len(v6)


_IANA = "https://data.iana.org/rdap/"
SOURCES: dict[str, Source] = {s.name: s for s in (
    Source(name="iana-dns", urls=(_IANA + "dns.json",), files=("iana-rdap-dns.json",),
           parse=_bootstrap("dns"), what="RDAP bootstrap: TLD → registry"),
    Source(name="iana-ipv4", urls=(_IANA + "ipv4.json",), files=("iana-rdap-ipv4.json",),
           parse=_bootstrap("ipv4"), what="RDAP bootstrap: IPv4 block → RIR"),
    Source(name="iana-ipv6", urls=(_IANA + "ipv6.json",), files=("iana-rdap-ipv6.json",),
           parse=_bootstrap("ipv6"), what="RDAP bootstrap: IPv6 block → RIR"),
    Source(name="iana-asn", urls=(_IANA + "asn.json",), files=("iana-rdap-asn.json",),
           parse=_bootstrap("asn"), what="RDAP bootstrap: AS number → RIR"),
    Source(name="cloudflare", urls=("https://www.cloudflare.com/ips-v4",
                                    "https://www.cloudflare.com/ips-v6"),
           files=("cloudflare-v4-ip-ranges.txt", "cloudflare-v6-ip-ranges.txt"),
           parse=_cloudflare, what="Cloudflare's published ranges"),
    Source(name="cloudfront", urls=("https://ip-ranges.amazonaws.com/ip-ranges.json",),
           files=("aws-ip-ranges.json",), parse=_cloudfront,
           what="Amazon CloudFront ranges (AWS ip-ranges.json, service CLOUDFRONT)"),
    Source(name="fastly", urls=("https://api.fastly.com/public-ip-list",),
           files=("fastly-ip-ranges.json",), parse=_fastly, what="Fastly's public IP list"),
)}


# ---------------------------------------------------------------------------- snapshots


def snapshot_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    """Where snapshots live: ``[resolve] snapshot_dir`` if set, else the shipped directory."""
    return Path(configured) if configured else SNAPSHOT_DIR


def build_snapshot(source: Source, raws: list[bytes], retrieved: str | None
                   ) -> dict[str, Any]:
    """Validate ``raws`` (the source's files, in order) and return the snapshot document."""
    data, file_date, count = source.parse(raws)
    return {"source": source.name, "url": source.url, "file_date": file_date,
            "retrieved": retrieved, "count": count, "data": data}


def write_snapshot(snapshot: Mapping[str, Any], directory: Path) -> Path:
    """Replace ``directory/<source>.json`` atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{snapshot['source']}.json"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".snapshot-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(snapshot, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; snapshots are public data
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_snapshot(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The snapshot ``name`` (falls back to the shipped one if ``directory`` lacks it)."""
    for folder in (directory, SNAPSHOT_DIR):
        if folder is None:
            continue
        path = folder / f"{name}.json"
        if path.is_file():
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or "data" not in doc:
                raise InputError(f"{path}: not an ntd data snapshot")
            return doc
    raise InputError(f"no snapshot {name!r} (run `ntd data update --source {name}`)")


def _selected(names: list[str] | None) -> list[Source]:
    if not names:
        return list(SOURCES.values())
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise InputError(f"--source: unknown {', '.join(unknown)} "
                         f"(known: {', '.join(SOURCES)})")
    return [SOURCES[n] for n in names]


def update_from_dir(directory: str | os.PathLike[str], into: Path,
                    names: list[str] | None = None) -> list[dict[str, Any]]:
    """Build snapshots from local copies of the published files (offline)."""
    folder = Path(directory)
    done = []
    for source in _selected(names):
        paths = [folder / f for f in source.files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"{source.name}: missing {', '.join(missing)}")
        snapshot = build_snapshot(source, [p.read_bytes() for p in paths], None)
        write_snapshot(snapshot, into)
        done.append(snapshot)
    return done


async def update_online(into: Path, names: list[str] | None = None, *,
                        http_client: httpx.AsyncClient | None = None,
                        timeout: float = 30.0,
                        today: str | None = None) -> list[dict[str, Any]]:
    """Download each source's files over HTTPS, validate them, write snapshots.

    A source that fails to download or validate raises before its snapshot is touched;
    sources already written stay written.
    """
    client = http_client or httpx.AsyncClient(timeout=timeout, follow_redirects=True)
    retrieved = today or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    done = []
    try:
        for source in _selected(names):
            raws = []
            for url in source.urls:
                try:
                    resp = await client.get(url)
                except httpx.HTTPError as exc:
                    raise InputError(f"{source.name}: cannot download {url}: {exc}") from exc
                if resp.status_code != 200:
                    raise InputError(f"{source.name}: {url} answered {resp.status_code}")
                if len(resp.content) > MAX_SOURCE_BYTES:
                    raise InputError(f"{source.name}: {url} is larger than expected")
                raws.append(resp.content)
            snapshot = build_snapshot(source, raws, retrieved)
            write_snapshot(snapshot, into)
            done.append(snapshot)
    finally:
        if http_client is None:
            await client.aclose()
    return done


def status(directory: Path, *, today: dt.date | None = None) -> list[dict[str, Any]]:
    """Each source's snapshot: dates, age in days (from the file's own date when it has
    one, else from when it was retrieved), and ``stale`` when older than 90 days."""
    now = today or dt.datetime.now(dt.UTC).date()
    rows = []
    for source in SOURCES.values():
        try:
            snap = read_snapshot(source.name, directory)
        except (InputError, OSError, ValueError) as exc:
            rows.append({"source": source.name, "missing": True, "error": str(exc),
                         "stale": True})
            continue
        dated = snap.get("file_date") or snap.get("retrieved")
        age = None
        if isinstance(dated, str) and dated:
            try:
                age = (now - dt.date.fromisoformat(dated[:10])).days
            except ValueError:
                age = None
        rows.append({"source": source.name, "url": snap.get("url"), "count": snap.get("count"),
                     "file_date": snap.get("file_date"), "retrieved": snap.get("retrieved"),
                     "age_days": age, "stale": age is None or age > MAX_AGE_DAYS})
    return rows


# ---------------------------------------------------------------------------- readers


def cdn_ranges(name: str, directory: Path | None = None) -> list[str]:
    """IPv4 and IPv6 ranges of the CDN snapshot ``name`` (cloudflare, cloudfront, fastly)."""
    data = read_snapshot(name, directory)["data"]
    return [*data.get("ipv4", []), *data.get("ipv6", [])]


def bootstrap_document(kind: str, directory: Path | None = None) -> dict[str, Any]:
    """The IANA bootstrap document ``kind`` (dns, ipv4, ipv6, asn) from its snapshot."""
    data = read_snapshot(f"iana-{kind}", directory)["data"]
    if not isinstance(data, dict):
        raise InputError(f"snapshot iana-{kind} holds no bootstrap document")
    return data
