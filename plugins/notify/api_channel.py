"""HTTP API delivery: POST the X-ARF reports with an ``Idempotency-Key`` header.

A route's ``target`` is an endpoint URL, or the name of a ``[notices.api]`` entry giving the
endpoint, the environment variable holding its credential (``auth_env``), the header
(``auth_header``, default ``Authorization``) and scheme (``auth_scheme``, default ``Bearer``).
2xx is sent; 409 means the endpoint already has this idempotency key (sent); 408, 425, 429, 5xx
and network errors retry; any other 4xx is permanent.

Every request goes through ``engine.safe_fetch.SafeFetcher.post`` under the fetch policy
(``[fetch]`` ports and TLS, ``[resolve.hosts]``, ``[lab] allow_private_networks``): an endpoint
that resolves to a loopback, private, link-local or metadata address is refused unless the lab
switch is on, exactly as a fetch would be; a redirect is never followed (it is a permanent
failure naming the new location — the credential must not travel to another host); at most
``MAX_RESPONSE_BYTES`` of an answer are read.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from engine.config import secret_from_env
from engine.errors import FetchError
from engine.safe_fetch import REDIRECT_STATUSES, FetchPolicy, SafeFetcher
from plugins.notify.channels import Outcome
from plugins.notify.message import Prepared

RETRY_STATUSES = frozenset({408, 425, 429})
MAX_RESPONSE_BYTES = 65_536
USER_AGENT = "ntd-notices/0.1"


class APIChannel:
    """The ``api`` channel."""

    name = "api"

    def __init__(self, entries: dict[str, dict[str, Any]], *, timeout: float,
                 policy: FetchPolicy) -> None:
        self.entries = entries
        self.timeout = timeout
        self.client = SafeFetcher(policy)

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
        headers = {**headers, "Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "Idempotency-Key": prepared.notice["idempotency_key"],
                   "X-NTD-Notice": prepared.notice["id"]}
        try:
            resp = await self.client.post(endpoint, body=prepared.json_body, headers=headers,
                                          timeout=timeout or self.timeout,
                                          max_response_bytes=MAX_RESPONSE_BYTES)
        except FetchError as exc:
            if exc.reason.startswith("blocked_"):  # our address policy: retrying cannot help
                return Outcome(status="failed", detail=f"refused: {exc}"[:500],
                               blame_recipient=True)
            return Outcome(status="retry", detail=f"http {exc.reason}: {exc}"[:500])
        status = resp.status
        detail = f"http {status} {_phrase(status)}".rstrip()
        if 200 <= status < 300:
            return Outcome(status="sent", detail=detail)
        if status == 409:
            return Outcome(status="sent", detail=f"{detail} (already received)")
        if status in REDIRECT_STATUSES:
            where = resp.headers.get("location", "")[:200]
            return Outcome(status="failed", detail=f"{detail}: redirect to {where!r} not "
                                                   "followed (update the endpoint)",
                           blame_recipient=True)
        if status in RETRY_STATUSES or status >= 500:
            return Outcome(status="retry", detail=detail)
        text = resp.body[:200].decode("utf-8", "replace")
        return Outcome(status="failed", detail=f"{detail}: {text}",
                       blame_recipient=status not in (401, 403))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
