"""A faithful fake of the ICCAM v3 API on loopback: tests, ``ntd demo`` and ``ntd bench iccam``.

Built from the checklist of the team's protocol notes (what SCART sends and reads; the real API
is not publicly documented). What it does the way ICCAM does, as far as SCART shows:

- **mutual TLS**: the TLS handshake fails without a client certificate signed by the lab CA;
- ``POST Authentication`` accepts ``Authorization: Bearer`` with nothing after it and answers
  ``bearerToken`` / ``refreshToken`` / ``bearerTokenExpiresIn``; ``Authentication/refresh``
  renews a pair; every other call without a known, unexpired token is a 401
  (``Authorization bearer empty or unknown`` / ``token expired``);
- paths are routed case-insensitively (``rest/Content``, ``rest/Reports``, ``rest/reports``),
  query strings decoded form-style (``+`` is a space);
- **200 on every successful write**; ``POST rest/reports`` answers the bare integer report id;
  ``urlString`` is echoed byte for byte in ``reportContents`` and ``url.urlString``; content and
  report objects always carry every field SCART reads (``null`` / ``[]`` when empty);
- ``rest/Content/no-reference``: content assigned to the caller's country without a hotline
  reference, assigned at or after ``countryAssignmentStartDate``, at most 200 (``maxResults``);
  setting a reference takes an item off the list;
- the server-side rules SCART works around, with ICCAM's error texts: no assessment once an
  action exists or over a Baseline one; no assessment or action by a country the content is not
  assigned to; no action before the content is assessed and the report's site type set ("not
  in the right phase", also for ``phase_seconds`` after a report is created); nothing after a
  final action (Removed, Unavailable, NotIllegal); hosting update and country re-assignment
  change the content (after a re-assignment the caller may no longer act on it).

Reconstructed where the notes say GUESS: the error envelope ``{"errors": {key: [msg]}}``, the
``hotlineReference`` field in content objects, and where a new report's content is assigned:
its hosting country when that country has a member hotline (``members``), else the reporting
hotline's own country (the notes: ICCAM may assign foreign-hosted content to the reporter).

For tests: ``fail(...)`` scripts error answers (429 with ``Retry-After``, 503, ...), ``hold(...)``
stops a request (before or after it takes effect) until released, so a client can be killed
mid-request; ``requests`` records every call; ``expire_tokens()`` ages every token.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from engine import iccam_v3 as v3
from engine.lab.threaded import LoopThread

__all__ = ["FakeICCAM", "FakeUser", "Hold", "RecordedRequest"]

#: INHOPE member countries (the fake assigns content hosted there to that country).
DEFAULT_MEMBERS = frozenset(
    "AT AU BA BE BG BR CA CO CY CZ DE DK EE ES FI FR GB GR HR HU IE IS IT JP KR LT LU LV "
    "MT NL NZ PL PT RO RU SE SI SK TH TW US ZA".split())


@dataclass(frozen=True)
class FakeUser:
    """An API user: password, the hotline it belongs to and that hotline's country."""

    password: str
    country: str
    hotline_id: int


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # as sent, below the root (case kept)
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    status: int = 0
    client_cert: bool = False
    raw_query: str = ""


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    body: Any
    retry_after: str | None


@dataclass
class Hold:
    """A request stopped by ``FakeICCAM.hold`` until ``release()``.

    ``reached`` is set once a matching request arrived (and, with ``after=True``, took effect).
    ``release(drop=True)`` lets a request held *before* taking effect end without effect.
    """

    method: str
    pattern: re.Pattern[str]
    after: bool
    reached: threading.Event = field(default_factory=threading.Event)
    _go: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    drop: bool = False
    used: bool = False
    skip: int = 0  # matching requests to let through before the one held

    def release(self, *, drop: bool = False) -> None:
        """Let the held request go on (``drop``: end it without effect)."""
        self.drop = drop
        if self._loop is not None and self._go is not None:
            self._loop.call_soon_threadsafe(self._go.set)


class _Refused(Exception):
    def __init__(self, status: int, key: str, message: str) -> None:
        super().__init__(message)
        self.status, self.key, self.message = status, key, message


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_date(text: str) -> datetime | None:
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FakeICCAM:
    """The fake server. ``await start()`` on a running loop, or ``start_in_thread()``."""

    def __init__(self, ssl_context: ssl.SSLContext, *,
                 users: dict[str, FakeUser] | None = None, token_seconds: int = 1800,
                 members: frozenset[str] = DEFAULT_MEMBERS, phase_seconds: float = 0.0,
                 now: Callable[[], datetime] | None = None) -> None:
        self.ssl_context = ssl_context
        self.users = users or {"ntd-api": FakeUser("lab-password", "NL", 43)}
        self.token_seconds = token_seconds
        self.members = members
        self.phase_seconds = phase_seconds
        self.now = now or (lambda: datetime.now(UTC))
        self.reports: dict[int, dict[str, Any]] = {}
        self.contents: dict[int, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.logins = 0
        self.refreshes = 0
        self._tokens: dict[str, tuple[str, float]] = {}  # bearer -> (user, expires monotonic)
        self._refresh: dict[str, str] = {}  # refresh token -> user
        self._report_ids = itertools.count(1001)
        self._content_ids = itertools.count(5001)
        self._created: dict[int, float] = {}  # report id -> monotonic creation time
        self._faults: list[_Fault] = []
        self._holds: list[Hold] = []
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._thread: LoopThread | None = None
        self.port = 0

    # -- running -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The API root to configure (``[iccam] base_url``); it ends with ``/``."""
        return f"https://127.0.0.1:{self.port}/api/"

    async def start(self) -> FakeICCAM:
        """Listen on 127.0.0.1 (a free port) over mutual TLS."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/api/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the port only here
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def close(self) -> None:
        """Stop listening."""
        for hold in self._holds:
            hold.release(drop=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> FakeICCAM:
        """Serve on a private loop in a daemon thread (for synchronous callers)."""
        self._thread = LoopThread(self.start, self.close, name="iccam-fake")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop a fake started with ``start_in_thread``."""
        if self._thread is not None:
            loop = self._thread.loop
            if loop is not None:
                for hold in list(self._holds):
                    hold.release(drop=True)
            self._thread.stop()
            self._thread = None

    # -- test controls -------------------------------------------------------------------------
    def fail(self, method: str, path: str, status: int, *, times: int = 1,
             body: Any = None, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests matching ``method`` and the ``path`` regex
        (case-insensitive, below the root) with ``status`` and ``body`` instead."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path, re.I), status, times,
                                       body, retry_after))

    def hold(self, method: str, path: str, *, after: bool = True, skip: int = 0) -> Hold:
        """Stop the next matching request (after letting ``skip`` through) until released:
        ``after`` it took effect (the answer is lost if the client dies meanwhile) or
        before."""
        hold = Hold(method.upper(), re.compile(path, re.I), after, skip=skip)
        with self._lock:
            self._holds.append(hold)
        return hold

    def expire_tokens(self) -> None:
        """Age every issued bearer token past its expiry."""
        with self._lock:
            self._tokens = {t: (u, 0.0) for t, (u, _) in self._tokens.items()}

    # -- seeding: a partner's report assigned to a country ---------------------------------------
    def add_partner_report(self, *, urls: list[dict[str, Any]], hotline_id: int = 32,
                           analyst: str = "de-analyst", assigned_country: str = "NL",
                           assigned_at: datetime | None = None,
                           received_at: datetime | None = None, site_type: int = 2,
                           memo: str | None = None) -> tuple[int, list[int]]:
        """Create a report of another hotline whose content is assigned to
        ``assigned_country``. Each url: ``{"url", "source": bool, "country", "ip",
        "classification", "age", "gender"}`` (classification omitted: not assessed)."""
        when = assigned_at or self.now()
        with self._lock:
            report_id = next(self._report_ids)
            report = self._new_report(report_id, hotline_id=hotline_id, analyst=analyst,
                                      received=_iso(received_at or when), site_type=site_type,
                                      memo=memo, reference=None, referrer=None)
            ids = []
            for spec in urls:
                content = self._new_content(
                    report_id, spec["url"], source=bool(spec.get("source")),
                    country=spec.get("country", assigned_country),
                    ip=spec.get("ip", "192.0.2.10"), assigned=assigned_country,
                    assigned_at=_iso(when), reference=None, memo=None)
                if spec.get("classification") is not None:
                    content["assessments"].append({
                        "assessingAnalystName": analyst,
                        "classification": spec["classification"],
                        "ageCategorization": spec.get("age", v3.AGE_PREPUBESCENT),
                        "genderCategorization": spec.get("gender", v3.GENDER_FEMALE),
                        **{flag: 0 for flag in v3.FLAGS}})
                report["reportContents"].append({"contentId": content["contentId"],
                                                 "urlString": content["url"]["urlString"]})
                ids.append(content["contentId"])
            self._created[report_id] = 0.0  # a partner's report is past its set-up phase
        return report_id, ids

    # -- reading (tests) ---------------------------------------------------------------------
    def successful(self, method: str, path: str) -> list[RecordedRequest]:
        """Recorded requests with a 200 answer matching ``method`` and the path regex."""
        pattern = re.compile(path, re.I)
        return [r for r in list(self.requests)
                if r.method == method.upper() and r.status == 200 and pattern.fullmatch(r.path)]

    def received_actions(self) -> list[tuple[int, int]]:
        """``(contentId, actionType)`` of every action the fake accepted, in order."""
        out = []
        for r in self.successful("POST", r"rest/content/\d+/actions"):
            out.append((int(r.path.split("/")[2]), int(r.body["actionType"])))
        return out

    # -- objects -----------------------------------------------------------------------------
    def _new_report(self, report_id: int, *, hotline_id: int, analyst: str, received: str,
                    site_type: int | None, memo: str | None, reference: str | None,
                    referrer: str | None, commerciality: int | None = 1,
                    payment: list[int] | None = None) -> dict[str, Any]:
        report = {"reportId": report_id, "reportingHotlineId": hotline_id,
                  "reportingAnalystName": analyst, "hotlineReceivedDate": received,
                  "hotlineReference": reference, "memo": memo, "referrerUrl": referrer,
                  "sourceUrlSiteType": site_type, "sourceUrlCommerciality": commerciality,
                  "sourceUrlPaymentMethods": payment if payment is not None else [1],
                  "reportContents": []}
        self.reports[report_id] = report
        return report

    def _new_content(self, report_id: int, url: str, *, source: bool, country: str, ip: str,
                     assigned: str, assigned_at: str, reference: str | None,
                     memo: str | None) -> dict[str, Any]:
        content_id = next(self._content_ids)
        content = {"contentId": content_id, "reportId": report_id,
                   "url": {"urlString": url, "isSourceUrl": source,
                           "hostingCountryCode": country, "hostingIpAddress": ip},
                   "assignedCountryCode": assigned, "countryAssignmentDate": assigned_at,
                   "hotlineReference": reference, "memo": memo, "assessments": [],
                   "actions": []}
        self.contents[content_id] = content
        return content

    # -- the handler ---------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["tail"]
        query = {k: v[0] for k, v in parse_qs(request.rel_url.raw_query_string,
                                              keep_blank_values=True).items()}
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        record = RecordedRequest(method=request.method, path=path, query=query, body=body,
                                 headers={k.lower(): v for k, v in request.headers.items()},
                                 client_cert=bool(peer),
                                 raw_query=request.rel_url.raw_query_string)
        with self._lock:
            self.requests.append(record)
            fault = next((f for f in self._faults if f.times > 0 and f.method == record.method
                          and f.pattern.fullmatch(path)), None)
            if fault is not None:
                fault.times -= 1
            hold = next((h for h in self._holds if not h.used and h.method == record.method
                         and h.pattern.fullmatch(path)), None)
            if hold is not None and hold.skip > 0:
                hold.skip -= 1
                hold = None
            elif hold is not None:
                hold.used = True
                hold._loop = asyncio.get_running_loop()
                hold._go = asyncio.Event()
        if fault is not None:
            record.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            if fault.body is None:
                return web.Response(status=fault.status, headers=headers)
            return web.json_response(fault.body, status=fault.status, headers=headers)
        if hold is not None and not hold.after:
            hold.reached.set()
            assert hold._go is not None
            await hold._go.wait()
            if hold.drop:
                record.status = -1
                raise web.HTTPServiceUnavailable()
        try:
            with self._lock:
                status, answer = self._route(record)
        except _Refused as exc:
            status, answer = exc.status, v3.error_body(exc.key, exc.message)
        record.status = status
        if hold is not None and hold.after:
            hold.reached.set()
            assert hold._go is not None
            await hold._go.wait()
        return web.Response(status=status, body=json.dumps(answer).encode(),
                            content_type="application/json")

    def _user(self, record: RecordedRequest) -> tuple[str, FakeUser]:
        header = record.headers.get("authorization", "")
        token = header[len("Bearer "):].strip() if header.startswith("Bearer") else ""
        found = self._tokens.get(token) if token else None
        if found is None:
            raise _Refused(401, "authorization", v3.ERR_BEARER)
        name, expires = found
        if expires <= time.monotonic():
            raise _Refused(401, "authorization", v3.ERR_TOKEN_EXPIRED)
        return name, self.users[name]

    def _issue(self, name: str) -> dict[str, Any]:
        bearer, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self._tokens[bearer] = (name, time.monotonic() + self.token_seconds)
        self._refresh[refresh] = name
        return {"bearerToken": bearer, "refreshToken": refresh,
                "bearerTokenExpiresIn": self.token_seconds}

    def _route(self, r: RecordedRequest) -> tuple[int, Any]:
        parts = [p for p in r.path.split("/") if p]
        low = [p.lower() for p in parts]
        method = r.method
        if low == ["authentication"] and method == "POST":
            body = r.body if isinstance(r.body, dict) else {}
            user = self.users.get(str(body.get("username")))
            if user is None or body.get("password") != user.password:
                raise _Refused(401, "login", "Invalid username or password")
            self.logins += 1
            return 200, self._issue(str(body["username"]))
        if low == ["authentication", "refresh"] and method == "POST":
            body = r.body if isinstance(r.body, dict) else {}
            name = self._refresh.pop(str(body.get("refreshToken")), None)
            if name is None:
                raise _Refused(401, "refreshToken", "Refresh token is invalid")
            self._tokens.pop(str(body.get("bearerToken")), None)
            self.refreshes += 1
            return 200, self._issue(name)
        _, user = self._user(r)
        if low[:2] == ["rest", "content"]:
            return self._content_call(r, low[2:], user)
        if low[:2] == ["rest", "reports"]:
            return self._report_call(r, low[2:], user)
        if len(low) == 2 and low[0] == "rest" and method == "GET":
            return 200, self._reference_data(low[1])
        raise _Refused(404, "path", f"no such endpoint: {method} {r.path}")

    def _reference_data(self, name: str) -> list[dict[str, Any]]:
        tables = {"classifications": v3.CLASSIFICATIONS, "age-categories": v3.AGES,
                  "gender-categories": v3.GENDERS, "site-types": v3.SITE_TYPES}
        if name == "action-types":
            return [{"type": k, "name": n} for k, n in v3.ACTION_TYPES.items()]
        if name not in tables:
            raise _Refused(404, "path", f"no such list: {name}")
        return [{"id": k, "name": n} for k, n in tables[name].items()]

    # -- content -------------------------------------------------------------------------------
    def _content(self, raw: str) -> dict[str, Any]:
        content = self.contents.get(int(raw)) if raw.isdigit() else None
        if content is None:
            raise _Refused(404, "contentId", f"Content {raw} not found")
        return content

    @staticmethod
    def _assigned(content: dict[str, Any], user: FakeUser) -> None:
        if content["assignedCountryCode"] != user.country:
            raise _Refused(403, "content", "Content is not assigned to your hotline's country")

    def _content_call(self, r: RecordedRequest, rest: list[str],
                      user: FakeUser) -> tuple[int, Any]:
        if rest == ["no-reference"] and r.method == "GET":
            return 200, self._no_reference(r.query, user)
        if not rest:
            raise _Refused(404, "path", "no such endpoint")
        content = self._content(rest[0])
        tail = rest[1:]
        if not tail and r.method == "GET":
            return 200, content
        if tail == ["hotline-reference"] and r.method == "PUT":
            if not r.query.get("reference"):
                raise _Refused(400, "reference", "The reference field is required.")
            self._assigned(content, user)
            content["hotlineReference"] = r.query["reference"]
            return 200, None
        if tail == ["assessment"] and r.method == "PUT":
            self._assess(content, r.body, user)
            return 200, None
        if tail == ["actions"] and r.method == "POST":
            self._action(content, r.body, user)
            return 200, None
        if tail == ["url", "hosting"] and r.method == "PUT":
            self._assigned(content, user)
            self._no_final(content, v3.ERR_COMPLETED)
            country = r.query.get("newCountryCode", "")
            if not re.fullmatch(r"[A-Z]{2}", country):
                raise _Refused(400, "newCountryCode", "The newCountryCode field is invalid.")
            content["url"]["hostingCountryCode"] = country
            if r.query.get("newIpAddress"):
                content["url"]["hostingIpAddress"] = r.query["newIpAddress"]
            return 200, None
        if tail == ["assigned-country"] and r.method == "PUT":
            self._assigned(content, user)
            country = r.query.get("newCountryCode", "")
            if not re.fullmatch(r"[A-Z]{2}", country):
                raise _Refused(400, "newCountryCode", "The newCountryCode field is invalid.")
            content["assignedCountryCode"] = country
            content["countryAssignmentDate"] = _iso(self.now())
            return 200, None
        raise _Refused(404, "path", f"no such endpoint: {r.method} {r.path}")

    def _no_reference(self, query: dict[str, str], user: FakeUser) -> list[dict[str, Any]]:
        try:
            limit = int(query.get("maxResults", v3.MAX_RESULTS))
        except ValueError as exc:
            raise _Refused(400, "maxResults", "The maxResults field must be a number.") from exc
        limit = max(0, min(limit, v3.MAX_RESULTS))
        since = None
        if query.get("countryAssignmentStartDate"):
            since = _parse_date(query["countryAssignmentStartDate"])
            if since is None:
                raise _Refused(400, "countryAssignmentStartDate",
                               "The countryAssignmentStartDate field is not a valid date.")
        found = []
        for content in self.contents.values():
            if content["assignedCountryCode"] != user.country or content["hotlineReference"]:
                continue
            assigned = _parse_date(content["countryAssignmentDate"])
            if since is not None and assigned is not None and assigned < since:
                continue
            found.append(content)
        found.sort(key=lambda c: (c["countryAssignmentDate"], c["contentId"]))
        return [{"reportId": c["reportId"], "contentId": c["contentId"],
                 "countryAssignmentDate": c["countryAssignmentDate"]} for c in found[:limit]]

    @staticmethod
    def _no_final(content: dict[str, Any], message: str) -> None:
        if any(a["actionType"] in v3.FINAL_ACTIONS for a in content["actions"]):
            raise _Refused(400, "action", message)

    def _check_assessment(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Refused(400, "assessment", "The assessment is required.")
        if body.get("classification") not in v3.CLASSIFICATIONS:
            raise _Refused(400, "classification", "The classification field is invalid.")
        for key, allowed in (("ageCategorization", v3.AGES),
                             ("genderCategorization", v3.GENDERS)):
            if key in body and body[key] not in allowed:
                raise _Refused(400, key, f"The {key} field is invalid.")
        for flag in v3.FLAGS:
            if flag in body and body[flag] not in (0, 1):
                raise _Refused(400, flag, f"The {flag} field must be 0 or 1.")
        return {"assessingAnalystName": str(body.get("assessingAnalystName") or ""),
                "classification": body["classification"],
                "ageCategorization": body.get("ageCategorization", v3.AGE_NOT_CATEGORISED),
                "genderCategorization": body.get("genderCategorization",
                                                 v3.GENDER_NOT_DETERMINED),
                **{flag: int(body.get(flag, 0)) for flag in v3.FLAGS}}

    def _assess(self, content: dict[str, Any], body: Any, user: FakeUser) -> None:
        self._assigned(content, user)
        if content["actions"]:
            raise _Refused(400, "assessment", v3.ERR_ASSESS_ACTIONED)
        last = content["assessments"][-1] if content["assessments"] else None
        if last is not None and last["classification"] == v3.BASELINE:
            raise _Refused(400, "assessment", "Baseline assessments cannot be changed")
        content["assessments"].append(self._check_assessment(body))

    def _action(self, content: dict[str, Any], body: Any, user: FakeUser) -> None:
        self._assigned(content, user)
        self._no_final(content, v3.ERR_FINAL)
        if not isinstance(body, dict) or body.get("actionType") not in v3.ACTION_TYPES:
            raise _Refused(400, "actionType", "The actionType field is invalid.")
        report = self.reports[content["reportId"]]
        created = self._created.get(content["reportId"], 0.0)
        if (not content["assessments"] or report["sourceUrlSiteType"] is None
                or time.monotonic() - created < self.phase_seconds):
            raise _Refused(400, "action", v3.ERR_ACTION_PHASE)
        date = body.get("actionDate")
        if not isinstance(date, str) or not date.endswith("Z") or _parse_date(date) is None:
            raise _Refused(400, "actionDate", "The actionDate field must be a UTC date-time.")
        action = {"actionType": body["actionType"],
                  "analystName": str(body.get("actioningAnalystName") or ""),
                  "actionDate": date}
        if body["actionType"] > v3.REASON_ABOVE:
            if body.get("reasonId") not in v3.REASONS:
                raise _Refused(400, "reasonId", "The reasonId field is required.")
            action.update(reasonId=body["reasonId"], reasonText=str(body.get("reasonText")))
        content["actions"].append(action)

    # -- reports -------------------------------------------------------------------------------
    def _report_call(self, r: RecordedRequest, rest: list[str],
                     user: FakeUser) -> tuple[int, Any]:
        if not rest and r.method == "POST":
            return 200, self._create(r.body, user)
        if not rest:
            raise _Refused(404, "path", "no such endpoint")
        report = self.reports.get(int(rest[0])) if rest[0].isdigit() else None
        if report is None:
            raise _Refused(404, "reportId", f"Report {rest[0]} not found")
        if len(rest) == 1 and r.method == "GET":
            return 200, report
        if rest[1:] == ["source-url", "site-type"] and r.method == "PUT":
            value = r.query.get("siteType", "")
            if not value.isdigit() or int(value) not in v3.SITE_TYPES:
                raise _Refused(400, "siteType", "The siteType field is invalid.")
            report["sourceUrlSiteType"] = int(value)
            return 200, None
        raise _Refused(404, "path", f"no such endpoint: {r.method} {r.path}")

    def _create(self, body: Any, user: FakeUser) -> int:
        if not isinstance(body, dict):
            raise _Refused(400, "report", "The request body is required.")
        for key in ("reportingAnalystName", "hotlineReceivedDate", "urls"):
            if key not in body:
                raise _Refused(400, key, f"The {key} field is required.")
        received = body["hotlineReceivedDate"]
        moment = _parse_date(received) if isinstance(received, str) else None
        if moment is None or not received.endswith("Z"):
            raise _Refused(400, "hotlineReceivedDate",
                           "The hotlineReceivedDate field must be a UTC date-time.")
        if moment > self.now() + timedelta(minutes=5):
            raise _Refused(400, "hotlineReceivedDate",
                           "The hotlineReceivedDate field is in the future.")
        site = body.get("sourceUrlSiteType")
        if site is not None and (not _is_int(site) or site not in v3.SITE_TYPES):
            raise _Refused(400, "sourceUrlSiteType", "The sourceUrlSiteType field is invalid.")
        urls = body["urls"]
        if not isinstance(urls, list) or not urls:
            raise _Refused(400, "urls", "At least one url is required.")
        if sum(1 for u in urls if isinstance(u, dict) and u.get("isSourceUrl") is True) != 1:
            raise _Refused(400, "urls", "Exactly one url must be the source url.")
        checked = []
        for n, u in enumerate(urls):
            if not isinstance(u, dict) or not isinstance(u.get("urlString"), str):
                raise _Refused(400, f"urls[{n}].urlString", "The urlString field is required.")
            country = u.get("hostingCountryCode")
            if not isinstance(country, str) or not re.fullmatch(r"[A-Z]{2}", country):
                raise _Refused(400, f"urls[{n}].hostingCountryCode",
                               "The hostingCountryCode field is invalid.")
            if u.get("contentType") not in (v3.CONTENT_MEDIA, v3.CONTENT_WEBSITE):
                raise _Refused(400, f"urls[{n}].contentType", "The contentType field is invalid.")
            asn = u.get("autonomousSystemNumber")
            if asn is not None and not isinstance(asn, str):
                raise _Refused(400, f"urls[{n}].autonomousSystemNumber",
                               "The autonomousSystemNumber field must be a string.")
            checked.append((u, self._check_assessment(u.get("assessment"))))
        report_id = next(self._report_ids)
        report = self._new_report(
            report_id, hotline_id=user.hotline_id, analyst=str(body["reportingAnalystName"]),
            received=received, site_type=site, memo=body.get("memo"),
            reference=body.get("hotlineReference"), referrer=body.get("sourceUrlReferrer"),
            commerciality=body.get("sourceUrlCommerciality"),
            payment=body.get("sourceUrlPaymentMethods"))
        for u, assessment in checked:
            country = u["hostingCountryCode"]
            assigned = country if country in self.members else user.country
            content = self._new_content(
                report_id, u["urlString"], source=u.get("isSourceUrl") is True,
                country=country, ip=str(u.get("hostingIpAddress") or ""), assigned=assigned,
                assigned_at=_iso(self.now()), reference=u.get("hotlineReference"),
                memo=u.get("memo"))
            content["hosting"] = {"isp": u.get("hostingIsp"),
                                  "organization": u.get("hostingOrganization"),
                                  "asn": u.get("autonomousSystemNumber"),
                                  "cdn": u.get("isContentDeliveryNetwork")}
            content["assessments"].append(assessment)
            report["reportContents"].append({"contentId": content["contentId"],
                                             "urlString": content["url"]["urlString"]})
        self._created[report_id] = time.monotonic()
        return report_id


def main() -> None:
    """``python -m engine.lab.iccam_fake ARGS_JSON``: the fake in its own process (benchmarks).

    ARGS_JSON: ``{"tls": {ca_cert, server_cert, server_key}, "password": str, "reports": N,
    "media": M}`` — N partner reports of a page and M media each are assigned to NL. Prints
    ``{"port": n}`` once listening; answers ``stats`` on stdin with a JSON line of counts;
    closing stdin stops it.
    """

    args = json.loads(sys.argv[1])

    async def serve() -> None:
        tls = args["tls"]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls["ca_cert"])
        ctx.load_cert_chain(tls["server_cert"], tls["server_key"])
        ctx.verify_mode = ssl.CERT_REQUIRED
        fake = FakeICCAM(ctx, users={"ntd-bench": FakeUser(args["password"], "NL", 43)})
        for n in range(int(args.get("reports", 0))):
            host = f"partner-{n}.example.test"
            fake.add_partner_report(urls=[
                {"url": f"http://{host}/gallery.html", "source": True, "classification": 2},
                *({"url": f"http://{host}/m/{k}.jpg", "classification": 1}
                  for k in range(int(args.get("media", 3))))])
        await fake.start()
        print(json.dumps({"port": fake.port}), flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "stats":
                print(json.dumps({"requests": len(fake.requests),
                                  "reports": len(fake.reports),
                                  "actions": len(fake.received_actions()),
                                  "refused": sum(1 for r in fake.requests if r.status != 200)}),
                      flush=True)
        await fake.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
