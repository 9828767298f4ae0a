"""Loopback RDAP server for labs, tests and benchmarks.

Serves canned JSON for ``/ip/<ip>`` (most specific registered network containing the address),
``/entity/<handle>`` and ``/domain/<name>``. Any prefix before those segments is ignored, so the
same server answers both ways ntd reaches it offline:

* a base-URL override (``http://127.0.0.1:PORT/ip/...``), and
* the rewriting proxy (``http://127.0.0.1:PORT/rdap.db.ripe.net/ip/...``).

Test hooks: per-path request counters (:attr:`LabRdapServer.requests`), scripted statuses
(:meth:`script` — e.g. 429 twice then the real answer), fixed overrides (:meth:`override` for
malformed bodies), and 404 for anything unknown.

Runs on the caller's event loop (``async with LabRdapServer() as srv``) or on its own loop in a
thread (``srv.start_in_thread()`` / ``srv.stop()``) for synchronous callers such as ipwhois.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from engine.lab import rdap_fixtures
from engine.lab.threaded import LoopThread

_KINDS = ("ip", "entity", "domain")
_RDAP_JSON = "application/rdap+json"


@dataclass(frozen=True, kw_only=True)
class _Override:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


class LabRdapServer:
    """A canned RDAP registry on 127.0.0.1 (port 0 → any free port)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Create an empty server; register data with the ``add_*`` methods."""
        self.host = host
        self.port = port
        self.requests: Counter[str] = Counter()
        # (IP version, prefix length) → network → answer
        self._networks: dict[tuple[int, int], dict[ipaddress._BaseNetwork, dict[str, Any]]] = {}
        self._entities: dict[str, dict[str, Any]] = {}
        self._domains: dict[str, dict[str, Any]] = {}
        self._scripts: list[tuple[str, deque[int]]] = []
        self._overrides: list[tuple[str, _Override]] = []
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._runner_thread: LoopThread | None = None

    # ---------------------------------------------------------------- data registration

    def add_network(self, network: dict[str, Any], *, with_entities: bool = True) -> None:
        """Serve an RDAP ``ip network`` object for every address in its range."""
        start = ipaddress.ip_address(network["startAddress"])
        end = ipaddress.ip_address(network["endAddress"])
        for net in ipaddress.summarize_address_range(start, end):  # type: ignore[type-var]
            self._networks.setdefault((net.version, net.prefixlen), {})[net] = network
        if with_entities:
            self._entities.update(rdap_fixtures.entities_of(network))

    def add_response(self, body: dict[str, Any], cidr: str) -> None:
        """Serve a registry's answer as published (e.g. a real RIR response whose addresses
        carry leading zeros) for every address in ``cidr``."""
        net = ipaddress.ip_network(cidr, strict=False)
        self._networks.setdefault((net.version, net.prefixlen), {})[net] = body

    def add_hoster(self, **kwargs: Any) -> dict[str, Any]:
        """Build a hoster with :func:`rdap_fixtures.hoster_network` and serve it."""
        network = rdap_fixtures.hoster_network(**kwargs)
        # Entities are served whole on /entity/<handle> even when the network omits their vCard.
        full = rdap_fixtures.hoster_network(**{**kwargs, "inline_entities": True})
        self.add_network(network, with_entities=False)
        self._entities.update(rdap_fixtures.entities_of(full))
        return network

    def add_entity(self, entity: dict[str, Any]) -> None:
        """Serve an entity under ``/entity/<handle>``."""
        self._entities[entity["handle"]] = entity

    def add_domain(self, domain: dict[str, Any]) -> None:
        """Serve an RDAP ``domain`` object under ``/domain/<ldhName>``."""
        self._domains[domain["ldhName"].lower()] = domain

    def add_registrar_domain(self, **kwargs: Any) -> dict[str, Any]:
        """Build a domain with :func:`rdap_fixtures.registrar_domain` and serve it."""
        domain = rdap_fixtures.registrar_domain(**kwargs)
        self.add_domain(domain)
        return domain

    # ---------------------------------------------------------------- behaviour hooks

    def script(self, match: str, statuses: list[int]) -> None:
        """Answer the next requests whose path contains ``match`` with ``statuses`` in order.

        ``200`` in the list means "the real answer". Example: ``script("/ip/", [429, 429])``.
        """
        with self._lock:
            self._scripts.append((match, deque(statuses)))

    def override(
        self,
        match: str,
        *,
        status: int = 200,
        body: bytes | str = b"",
        content_type: str = _RDAP_JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Always answer paths containing ``match`` with this response (e.g. malformed JSON)."""
        raw = body.encode() if isinstance(body, str) else body
        self._overrides.append(
            (match, _Override(status=status, body=raw, content_type=content_type,
                              headers=headers or {}))
        )

    def count(self, kind: str) -> int:
        """Total requests of one kind: ``"ip"``, ``"entity"``, ``"domain"`` or ``"other"``."""
        return sum(n for path, n in self.requests.items() if _kind_of(path)[0] == kind)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        return f"http://{self.host}:{self.port}"

    # ---------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self._lock:
            self.requests[path] += 1
            scripted: int | None = None
            for match, queue in self._scripts:
                if match in path and queue:
                    scripted = queue.popleft()
                    break
        if scripted is not None and scripted != 200:
            return _problem(scripted, headers={"Retry-After": "0"} if scripted == 429 else None)
        for match, ov in self._overrides:
            if match in path:
                return web.Response(status=ov.status, body=ov.body,
                                    content_type=ov.content_type, headers=ov.headers)
        kind, key = _kind_of(path)
        body: dict[str, Any] | None = None
        if kind == "ip":
            body = self._find_network(key)
        elif kind == "entity":
            body = self._entities.get(key)
        elif kind == "domain":
            body = self._domains.get(key.lower().rstrip("."))
        if body is None:
            return _problem(404)
        return web.Response(body=json.dumps(body).encode(), content_type=_RDAP_JSON)

    def _find_network(self, key: str) -> dict[str, Any] | None:
        try:
            address = ipaddress.ip_address(key.split("/")[0])
        except ValueError:
            return None
        for version, prefixlen in sorted(self._networks, reverse=True):
            if version != address.version:
                continue
            probe = ipaddress.ip_network(f"{address}/{prefixlen}", strict=False)
            hit = self._networks[(version, prefixlen)].get(probe)
            if hit is not None:
                return hit
        return None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start on the running loop."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the real port when 0 was asked for

    async def close(self) -> None:
        """Stop serving (on the loop that started it)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LabRdapServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start_in_thread(self, timeout: float = 10.0) -> LabRdapServer:
        """Run the server on its own event loop in a daemon thread; returns once listening."""
        self._runner_thread = LoopThread(self.start, self.close, name="lab-rdap")
        self._runner_thread.start(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread`."""
        if self._runner_thread is not None:
            self._runner_thread.stop(timeout)
            self._runner_thread = None


def _kind_of(path: str) -> tuple[str, str]:
    """``/rdap.db.ripe.net/ip/1.2.3.4`` → ``("ip", "1.2.3.4")`` (last kind segment wins)."""
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in _KINDS:
            return parts[i], "/".join(parts[i + 1 :])
    return "other", ""


def _problem(status: int, headers: dict[str, str] | None = None) -> web.Response:
    body = {"errorCode": status, "title": str(status),
            "description": [f"lab RDAP server answered {status}"]}
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type=_RDAP_JSON, headers=headers)
