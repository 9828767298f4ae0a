"""The ICCAM v3 client: mutual TLS, bearer tokens, retries, ICCAM's error texts.

- **Mutual TLS on every call**, the login included: the hotline's certificate and key (issued
  by INHOPE), verified against ``ca_bundle`` (or the system CAs).
- **Tokens**: ``POST Authentication`` with the API user gives a bearer token, a refresh token and
  its lifetime (1800 s when ICCAM does not say). Before a call the token is refreshed
  (``Authentication/refresh``) when less than a tenth of its life (at most 60 s) is left; a
  failed refresh logs in again. A 401 on a call logs in afresh and tries the call once more.
- **Paths** exactly as SCART spells them, relative to the configured root; query strings
  encoded form-style (space ``+``, ``:`` ``%3A``); bodies JSON with ids as numbers.
- **Transient answers** — 5xx, 429 (its ``Retry-After`` respected), timeouts, connection
  errors, and 400s whose text says "not yet" (``Report not in the right phase to action``, ...)
  — are retried up to ``retries`` times with exponential backoff and jitter, then raised as
  ``ICCAMUnavailable`` (the caller tries again later). **Permanent answers** — 400, 403, 404 and
  a 401 after a fresh login — raise ``ICCAMError`` with ICCAM's error text.

The client never logs bodies: they hold case URLs. Reporter data never reaches it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from engine import iccam_v3 as v3
from engine.errors import ConfigError, NtdError

log = logging.getLogger("ntd.iccam")

TRANSIENT_STATUSES = frozenset({408, 425, 429})


class ICCAMError(NtdError):
    """A permanent refusal: ICCAM's status and error text."""

    def __init__(self, status: int, text: str, *, call: str) -> None:
        super().__init__(f"ICCAM {call}: http {status}: {text}")
        self.status = status
        self.text = text
        self.call = call


class ICCAMUnavailable(NtdError):
    """ICCAM did not answer usefully after the retries (try again later)."""

    def __init__(self, detail: str, *, call: str, retry_after: float | None = None) -> None:
        super().__init__(f"ICCAM {call}: {detail}")
        self.detail = detail
        self.call = call
        self.retry_after = retry_after


def utc_text(moment: datetime) -> str:
    """A timestamp as ICCAM takes it: UTC, ``YYYY-MM-DDTHH:MM:SSZ``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: ICCAM timestamps must be real UTC")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_text(moment: datetime) -> str:
    """A work-list date filter as SCART sends it: UTC wall clock ``YYYY-MM-DD HH:MM:SS``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """What the client needs (built from ``[iccam]`` by ``client_config``)."""

    base_url: str
    client_cert: str
    client_key: str
    key_password: str | None
    ca_bundle: str
    username: str
    password: str
    timeout: float = 30.0
    connect_timeout: float = 10.0
    retries: int = 3
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    retry_jitter: float = 0.2
    concurrency: int = 4


def client_config(settings: Any) -> ClientConfig:
    """``ClientConfig`` from ``IccamSettings`` (reads the secrets from the environment)."""
    settings.check_account()
    return ClientConfig(
        base_url=settings.base_url, client_cert=settings.client_cert,
        client_key=settings.client_key, key_password=settings.key_password(),
        ca_bundle=settings.ca_bundle, username=settings.username,
        password=settings.password(), timeout=settings.timeout,
        connect_timeout=settings.connect_timeout, retries=settings.retries,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds, retry_jitter=settings.retry_jitter,
        concurrency=settings.concurrency)


def ssl_context(config: ClientConfig) -> ssl.SSLContext:
    """Verify ICCAM's server, present the hotline's certificate (mutual TLS)."""
    try:
        ctx = ssl.create_default_context(cafile=config.ca_bundle or None)
        ctx.load_cert_chain(config.client_cert, config.client_key,
                            password=config.key_password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[iccam] client_cert / client_key / ca_bundle: cannot load: "
                          f"{exc}") from exc
    return ctx


def _body_of(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text


class ICCAMClient:
    """One session with ICCAM: a connection pool and the current token."""

    def __init__(self, config: ClientConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        """``sleep`` and ``monotonic`` are the waits between retries and the clock token
        lifetimes are measured with (tests pass their own)."""
        self.config = config
        self._sleep = sleep
        self._now = monotonic
        self._rng = rng or random.Random()
        limits = httpx.Limits(max_connections=config.concurrency,
                              max_keepalive_connections=config.concurrency)
        self._http = httpx.AsyncClient(
            base_url=config.base_url, verify=ssl_context(config), transport=transport,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            limits=limits, headers={"accept": "application/json",
                                    "User-Agent": "ntd-iccam/0.1"})
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._expires = 0.0
        self._lifetime = float(v3.DEFAULT_TOKEN_SECONDS)
        self._auth_lock = asyncio.Lock()
        self._gate = asyncio.Semaphore(config.concurrency)
        self.logins = 0
        self.refreshes = 0
        self.requests = 0
        self.retries = 0

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> ICCAMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- tokens --------------------------------------------------------------------------------
    def _store_token(self, answer: Any, call: str) -> None:
        if not isinstance(answer, dict) or not answer.get("bearerToken"):
            raise ICCAMError(200, "the answer has no bearerToken", call=call)
        lifetime = answer.get("bearerTokenExpiresIn")
        self._lifetime = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 \
            else float(v3.DEFAULT_TOKEN_SECONDS)
        self._token = str(answer["bearerToken"])
        self._refresh_token = str(answer.get("refreshToken") or "") or None
        self._expires = self._now() + self._lifetime

    async def login(self) -> None:
        """``POST Authentication`` with the API user (a fresh token pair)."""
        answer = await self._send("POST", v3.LOGIN, body={"username": self.config.username,
                                                          "password": self.config.password},
                                  token="", call="login")
        self._store_token(answer, "login")
        self.logins += 1

    async def ensure_login(self) -> None:
        """Log in (or refresh) now unless the current token is good for a while."""
        await self._ensure_token()

    async def _refresh(self) -> None:
        try:
            answer = await self._send("POST", v3.REFRESH,
                                      body={"bearerToken": self._token,
                                            "refreshToken": self._refresh_token},
                                      token=self._token or "", call="refresh")
            self._store_token(answer, "refresh")
            self.refreshes += 1
        except ICCAMError:
            await self.login()

    async def _ensure_token(self, *, fresh: bool = False, seen: str | None = None) -> str:
        async with self._auth_lock:
            if fresh and self._token == seen:
                self._token = None  # another request may already have logged in again
            margin = min(60.0, self._lifetime / 10)
            if self._token is None:
                await self.login()
            elif self._expires - self._now() < margin:
                if self._refresh_token:
                    await self._refresh()
                else:
                    await self.login()
            assert self._token is not None
            return self._token

    # -- one call ------------------------------------------------------------------------------
    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                   body: Any = None, call: str | None = None) -> Any:
        """One authenticated call; the JSON answer (``None`` for an empty body)."""
        name = call or f"{method} {path.split('?')[0]}"
        token = await self._ensure_token()
        try:
            return await self._send(method, path, params=params, body=body, token=token,
                                    call=name)
        except ICCAMError as exc:
            if exc.status != 401 and v3.ERR_TOKEN_EXPIRED not in exc.text \
                    and v3.ERR_BEARER not in exc.text:
                raise
        # The token was refused (expired early, revoked): log in afresh, try once more.
        token = await self._ensure_token(fresh=True, seen=token)
        return await self._send(method, path, params=params, body=body, token=token,
                                call=name)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        c = self.config
        delay = min(c.retry_max_seconds, c.retry_base_seconds * 2 ** attempt)
        delay *= 1 + self._rng.uniform(-c.retry_jitter, c.retry_jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, c.retry_max_seconds))
        return max(0.0, delay)

    async def _send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                    body: Any = None, token: str, call: str) -> Any:
        url = path + ("?" + urlencode(params) if params else "")
        headers = {"Authorization": f"Bearer {token}".strip(),
                   "Content-Type": "application/json"}
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        elif method in ("PUT", "POST"):
            content = b""  # Content-Length: 0, as SCART sends
        last = ""
        retry_after: float | None = None
        for attempt in range(self.config.retries + 1):
            if attempt:
                self.retries += 1
                await self._sleep(self._delay(attempt - 1, retry_after))
            retry_after = None
            try:
                async with self._gate:
                    self.requests += 1
                    resp = await self._http.request(method, url, content=content,
                                                    headers=headers)
            except httpx.TransportError as exc:  # connect, TLS, timeouts, protocol errors
                last = f"{type(exc).__name__}: {exc}"[:300]
                continue
            status = resp.status_code
            if 200 <= status < 300:
                return _body_of(resp)
            text = v3.error_text(_body_of(resp), status)
            if status in TRANSIENT_STATUSES or status >= 500 or (
                    status == 400 and any(m in text for m in v3.RETRYABLE_ERRORS)
                    and v3.ERR_TOKEN_EXPIRED not in text):
                last = f"http {status}: {text}"
                header = resp.headers.get("Retry-After", "")
                retry_after = float(header) if header.replace(".", "", 1).isdigit() else None
                continue
            raise ICCAMError(status, text, call=call)
        raise ICCAMUnavailable(last or "no answer", call=call, retry_after=retry_after)

    # -- the endpoints ntd uses ----------------------------------------------------------------
    async def no_reference(self, *, since: datetime | None,
                           max_results: int = v3.MAX_RESULTS) -> list[dict[str, Any]]:
        """Content assigned to our country that has no hotline reference yet."""
        params: dict[str, Any] = {"maxResults": min(max_results, v3.MAX_RESULTS)}
        if since is not None:
            params["countryAssignmentStartDate"] = window_text(since)
        answer = await self.call("GET", v3.NO_REFERENCE, params=params, call="no-reference")
        return [a for a in answer or [] if isinstance(a, dict)]

    async def content(self, content_id: int) -> dict[str, Any]:
        """``GET rest/Content/{id}``."""
        answer = await self.call("GET", v3.CONTENT.format(content_id=int(content_id)),
                                 call="content")
        if not isinstance(answer, dict):
            raise ICCAMError(200, "content answer is not an object", call="content")
        return answer

    async def report(self, report_id: int) -> dict[str, Any]:
        """``GET rest/Reports/{id}``."""
        answer = await self.call("GET", v3.REPORT.format(report_id=int(report_id)),
                                 call="report")
        if not isinstance(answer, dict):
            raise ICCAMError(200, "report answer is not an object", call="report")
        return answer

    async def create_report(self, body: dict[str, Any]) -> int:
        """``POST rest/reports``; the new report id (a bare number, or numeric text)."""
        answer = await self.call("POST", v3.REPORTS, body=body, call="create report")
        if isinstance(answer, bool) or not (isinstance(answer, int) or (
                isinstance(answer, str) and answer.strip().isdigit())):
            raise ICCAMError(200, f"unexpected answer {str(answer)[:80]!r} (no report id)",
                             call="create report")
        return int(answer)

    async def set_reference(self, content_id: int, reference: str) -> None:
        """``PUT rest/Content/{id}/hotline-reference?reference=...``."""
        await self.call("PUT", v3.CONTENT_REFERENCE.format(content_id=int(content_id)),
                        params={"reference": reference}, call="hotline-reference")

    async def assess(self, content_id: int, assessment: dict[str, Any]) -> None:
        """``PUT rest/Content/{id}/assessment``."""
        await self.call("PUT", v3.CONTENT_ASSESSMENT.format(content_id=int(content_id)),
                        body=assessment, call="assessment")

    async def action(self, content_id: int, action: dict[str, Any]) -> None:
        """``POST rest/Content/{id}/actions``."""
        await self.call("POST", v3.CONTENT_ACTIONS.format(content_id=int(content_id)),
                        body=action, call="action")

    async def set_hosting(self, content_id: int, *, ip: str, country: str) -> None:
        """``PUT rest/Content/{id}/url/hosting?newIpAddress=..&newCountryCode=..``."""
        await self.call("PUT", v3.CONTENT_HOSTING.format(content_id=int(content_id)),
                        params={"newIpAddress": ip, "newCountryCode": country},
                        call="hosting")

    async def assign_country(self, content_id: int, country: str) -> None:
        """``PUT rest/Content/{id}/assigned-country?newCountryCode=..``."""
        await self.call("PUT", v3.CONTENT_ASSIGNED_COUNTRY.format(content_id=int(content_id)),
                        params={"newCountryCode": country}, call="assigned-country")
