"""HTTP API delivery with httpx: POST the X-ARF reports with an ``Idempotency-Key`` header.

A route's ``target`` is an endpoint URL, or the name of a ``[notices.api]`` entry giving the
endpoint, the environment variable holding its credential (``auth_env``), the header
(``auth_header``, default ``Authorization``) and scheme (``auth_scheme``, default ``Bearer``).
2xx is sent; 409 means the endpoint already has this idempotency key (sent); 408, 425, 429, 5xx
and network errors retry; any other 4xx is permanent.
"""

from __future__ import annotations

from typing import Any

import httpx

from engine.config import secret_from_env
from plugins.notify.channels import Outcome
from plugins.notify.message import Prepared

RETRY_STATUSES = frozenset({408, 425, 429})


class APIChannel:
    """The ``api`` channel."""

    name = "api"

    def __init__(self, entries: dict[str, dict[str, Any]], *, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.entries = entries
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport,
                                        headers={"User-Agent": "ntd-notices/0.1"})

    def _target(self, recipient: str) -> tuple[str, dict[str, str], float | None] | None:
        entry = self.entries.get(recipient)
        if entry is None:
            if recipient.startswith(("http://", "https://")):
                return recipient, {}, None
            return None
        headers = {}
        if entry.get("auth_env"):
            secret = secret_from_env("notices.api", f"{recipient}.auth_env", entry["auth_env"])
            scheme = entry.get("auth_scheme", "Bearer")
            headers[entry.get("auth_header", "Authorization")] = (
                f"{scheme} {secret}" if scheme else str(secret))
        return entry["endpoint"], headers, entry.get("timeout")

    async def send(self, prepared: Prepared) -> Outcome:
        """POST one notice."""
        target = self._target(prepared.notice["recipient"])
        if target is None:
            return Outcome(status="failed",
                           detail=f"no [notices.api] entry named {prepared.notice['recipient']!r}")
        endpoint, headers, timeout = target
        headers = {**headers, "Content-Type": "application/json",
                   "Idempotency-Key": prepared.notice["idempotency_key"],
                   "X-NTD-Notice": prepared.notice["id"]}
        try:
            kwargs: dict[str, Any] = {"timeout": timeout} if timeout else {}
            resp = await self.client.post(endpoint, content=prepared.json_body, headers=headers,
                                          **kwargs)
        except httpx.HTTPError as exc:
            return Outcome(status="retry", detail=f"http {type(exc).__name__}: {exc}"[:500])
        detail = f"http {resp.status_code} {resp.reason_phrase}"
        if 200 <= resp.status_code < 300:
            return Outcome(status="sent", detail=detail)
        if resp.status_code == 409:
            return Outcome(status="sent", detail=f"{detail} (already received)")
        if resp.status_code in RETRY_STATUSES or resp.status_code >= 500:
            return Outcome(status="retry", detail=detail)
        return Outcome(status="failed", detail=f"{detail}: {resp.text[:200]}",
                       blame_recipient=resp.status_code not in (401, 403))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()
