"""The JSON client the hash sources share: SSRF-safe, one hop, credentials kept out of errors.

Every request goes through ``engine.safe_fetch.SafeFetcher.api_request`` under the run's fetch
policy (``[resolve.hosts]``, ``[lab] allow_private_networks``; the ``[fetch]`` ports unless the
section sets ``allowed_ports``), so a source URL that resolves to a private address is refused
unless the lab switch is on. The credential
travels only in a header; error messages name the path, never the query (it may hold a hash) nor
a header.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from engine.config import Config
from engine.context import fetch_policy
from engine.errors import HashlistError
from engine.hash_sources import HashSource
from engine.safe_fetch import SafeFetcher

log = logging.getLogger("ntd.hashsource")
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
USER_AGENT = "ntd-hashsource/0.1"


class SourceClient:
    """GET/POST JSON to one API root (``base_url``) with fixed headers (the credential)."""

    def __init__(self, config: Any, *, source: str, base_url: str, headers: Mapping[str, str],
                 timeout: float, ports: Sequence[int] = ()) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **headers}
        self.timeout = timeout
        policy = fetch_policy(config)
        if ports:  # the source's own ports (HMA listens on 5100), not the [fetch] ones
            policy = dataclasses.replace(policy, allowed_ports=frozenset(ports))
        self._fetcher = SafeFetcher(policy)
        #: requests sent (for ``ntd hashlist sync`` reports)
        self.requests = 0

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``base_url + path`` with ``params``; the decoded JSON answer."""
        url = self.base_url + path + (f"?{urlencode(params)}" if params else "")
        return await self._call("GET", url, None)

    async def post(self, path: str, body: Any) -> Any:
        """POST a JSON body to ``base_url + path``; the decoded JSON answer."""
        data = json.dumps(body, separators=(",", ":")).encode()
        return await self._call("POST", self.base_url + path, data)

    async def _call(self, method: str, url: str, data: bytes | None) -> Any:
        where = f"{self.source}: {method} {urlsplit(url).path}"
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.requests += 1
        try:
            resp = await self._fetcher.api_request(method, url, body=data, headers=headers,
                                                   timeout=self.timeout,
                                                   max_response_bytes=MAX_RESPONSE_BYTES)
        except Exception as exc:  # FetchError and the like: mapped, without the query string
            reason = getattr(exc, "reason", type(exc).__name__)
            raise HashlistError(f"{where}: request failed ({reason})") from None
        if resp.status in (401, 403):
            raise HashlistError(f"{where}: refused (HTTP {resp.status}): check the credential")
        if not 200 <= resp.status < 300:
            raise HashlistError(f"{where}: HTTP {resp.status}")
        try:
            return json.loads(resp.body)
        except ValueError:
            raise HashlistError(f"{where}: the answer is not JSON "
                                f"({len(resp.body)} bytes)") from None

    async def aclose(self) -> None:
        """Close the connections."""
        await self._fetcher.aclose()


class ApiSource(HashSource):
    """A hash source behind an HTTP API: its ``[hashsource.NAME]`` section and one client a
    run, built on first use (its credentials read from the environment then, by
    :meth:`auth_headers`), counted and closed here."""

    section = ""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.section(self.section)
        self._client: SourceClient | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.get("base_url"))

    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the credentials (never logged)."""
        return {}

    def client(self) -> SourceClient:
        """The run's client."""
        if self._client is None:
            s = self.settings
            self._client = SourceClient(self.config, source=self.name, base_url=s["base_url"],
                                        headers=self.auth_headers(), timeout=s["timeout"],
                                        ports=s["allowed_ports"])
        return self._client

    def request_count(self) -> int:
        return self._client.requests if self._client is not None else 0

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
