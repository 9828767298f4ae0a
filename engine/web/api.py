"""The JSON API (``/api/...``, ``/healthz``, ``/openapi.json``); described in ``openapi``.

Authentication: ``Authorization: Bearer <token>`` (``ntd users token NAME``), except the
anonymous ``POST /api/reports`` and ``/healthz``. Errors are RFC 9457 problems.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import engine.web.intake_web as intake_web
import engine.web.services as services
from engine.bounded_json import JSONLimitError, loads
from engine.errors import InputError, StorageError
from engine.models import STATES
from engine.store.roles import NOTICE_STATES
from engine.web.auth import User, token_digest
from engine.web.deps import WebState, read_body, run_sync, state
from engine.web.problems import Problem

BATCH_CHANNELS = ("analyst", "partner")
_BEARER = {"WWW-Authenticate": 'Bearer realm="ntd"'}


# -- helpers -------------------------------------------------------------------------------------
async def api_user(request: Request, *, assess: bool = False, partner_ok: bool = True) -> User:
    """The account of a Bearer token, checked against what the route needs."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header or scheme.lower() != "bearer" or not token.strip():
        raise Problem("unauthorized", "send 'Authorization: Bearer <token>' "
                      "(create one with: ntd users token NAME)", headers=_BEARER)
    st = state(request)
    row = await run_sync(st.accounts.user_for_token, token_digest(token.strip()), st.now())
    if row is None:
        raise Problem("unauthorized", "the token is not valid (mistyped or revoked)",
                      headers=_BEARER)
    user = User.from_row(row)
    if user.role == "police":
        raise Problem("forbidden", "police accounts use the console's police page only")
    if user.role == "partner" and not partner_ok:
        raise Problem("forbidden", "partner accounts may read their country's cases and the "
                                   "statistics only")
    if assess and not user.can_assess:
        raise Problem("forbidden", f"role {user.role} cannot do this")
    return user


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi]."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem("invalid-input", f"{name}: expected an integer") from None
    if not lo <= value <= hi:
        raise Problem("invalid-input", f"{name}: expected {lo} to {hi}")
    return value


def enum_param(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    """An optional query parameter from a fixed set."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise Problem("invalid-input", f"{name}: unknown value (known: {', '.join(allowed)})")
    return raw


async def json_object(request: Request, limit: int) -> dict[str, Any]:
    """A JSON object body (415 for other types, 400 for broken JSON)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise Problem("unsupported-media-type", "send application/json")
    value = json_body(await read_body(request, limit))
    if not isinstance(value, dict):
        raise Problem("invalid-input", "expected a JSON object")
    return value


def json_body(body: bytes) -> Any:
    """A JSON body parsed at bounded cost: 400 if it is not JSON, 422 if it exceeds the
    parser's limits (nesting depth, number size) — never a 500."""
    try:
        return loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Problem("bad-request", f"the body is not UTF-8 ({exc.reason} at byte "
                                     f"{exc.start})") from None
    except JSONLimitError as exc:
        raise Problem("invalid-input", f"the JSON body is refused: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise Problem("bad-request", f"the body is not valid JSON: {exc}") from None


def _json(value: Any, status: int = 200) -> Response:
    return JSONResponse(value, status_code=status)


def _storage(exc: StorageError) -> Problem:
    return Problem("storage-unavailable", "the store could not complete the request; "
                   "try again", headers={"Retry-After": "5"})


# -- anonymous -----------------------------------------------------------------------------------
async def submit_anonymous(st: WebState, url: Any) -> intake_web.WebReport:
    """Validate, rate-limit and store one web-form report (shared with the HTML form)."""
    row_url = url if isinstance(url, str) else None
    if row_url is None or not row_url.strip():
        raise InputError("missing url")
    intake_web.row_for_url(row_url)  # invalid URLs are refused before they count
    wait, which = st.limits.check(row_url)
    if wait:
        detail = ("this address was reported several times just now; it is being handled"
                  if which == "url" else "the form receives too many reports; try again soon")
        raise Problem("rate-limited", detail, limit=which,
                      headers={"Retry-After": str(max(1, math.ceil(wait)))})
    try:
        return await run_sync(intake_web.submit_webform, st.store, row_url, st.rt.clock)
    except StorageError as exc:
        raise _storage(exc) from exc


async def post_report(request: Request) -> Response:
    """POST /api/reports: one URL, anonymous web-form channel."""
    st = state(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request, st.settings.max_report_bytes)
    if ctype == "application/json":
        data = json_body(body)
        if not isinstance(data, dict):
            raise Problem("invalid-input", "expected a JSON object with a 'url' field")
        url = data.get("url")
    elif ctype == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), max_num_fields=20)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Problem("bad-request", f"the form body cannot be read: {exc}") from None
        url = fields["url"][0] if fields.get("url") else None
    else:
        raise Problem("unsupported-media-type",
                      "send application/json or application/x-www-form-urlencoded")
    try:
        await submit_anonymous(st, url)
    except InputError as exc:
        raise Problem("invalid-url", exc.message, field="url") from exc
    # No case id, no duplicate flag: the anonymous reporter learns nothing about other reports.
    return _json({"received": True}, 202)


async def healthz(request: Request) -> Response:
    """GET /healthz: the store answers."""
    st = state(request)
    try:
        version = await run_sync(st.store.schema_version)
    except StorageError as exc:
        raise _storage(exc) from exc
    return _json({"status": "ok", "schema_version": version})


async def openapi_json(request: Request) -> Response:
    """GET /openapi.json."""
    # deferred: pulls in jinja2, starlette, argon2, tldextract, loaded on first use
    from engine.web.openapi import spec

    return _json(spec())


# -- analysts ------------------------------------------------------------------------------------
async def post_batch(request: Request) -> Response:
    """POST /api/batches: text/CSV/NDJSON/JSON body, per-line rejections.

    201 when at least one line was stored (the others listed in ``rejected``); 422 with
    ``rejected`` (line numbers and reasons) when no line could be."""
    user = await api_user(request, assess=True)
    st = state(request)
    channel = enum_param(request, "channel", BATCH_CHANNELS) or "analyst"
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in intake_web.BATCH_TYPES:
        raise Problem("unsupported-media-type",
                      f"send one of: {', '.join(intake_web.BATCH_TYPES)}")
    body = await read_body(request, st.settings.max_batch_bytes)
    try:
        rows, rejected = intake_web.parse_batch(body, intake_web.BATCH_TYPES[ctype],
                                                channel=channel)
    except InputError as exc:
        raise Problem("invalid-input", exc.message) from exc
    if rejected and not rows:
        # Nothing to store: answer with every line at fault (201 means something was stored).
        raise Problem("invalid-input", f"no line of the body can be accepted "
                      f"({len(rejected)} rejected; see 'rejected')", rejected=rejected)
    try:
        result = await run_sync(intake_web.submit_batch, st.store, rows, rejected,
                                channel=channel, source=f"api:{user.name}", clock=st.rt.clock)
    except StorageError as exc:
        raise _storage(exc) from exc
    summary = result.to_dict()
    await run_sync(st.store.audit, actor=user.actor, action="upload",
                   obj=f"batch:{summary.get('batch', '')}", now=st.now(),
                   detail={k: summary[k] for k in ("accepted", "duplicates") if k in summary})
    return _json(summary, 201)


async def get_cases(request: Request) -> Response:
    """GET /api/cases."""
    user = await api_user(request)
    case_state = enum_param(request, "state", STATES)
    limit = int_param(request, "limit", 100, 1, 1000)
    offset = int_param(request, "offset", 0, 0, 10**9)
    rows = await run_sync(services.visible_cases, state(request).rt, user, state=case_state,
                          limit=limit, offset=offset)
    return _json({"cases": rows, "limit": limit, "offset": offset})


async def get_case(request: Request) -> Response:
    """GET /api/cases/{case_id}: with its trail; audited."""
    user = await api_user(request)
    found = await run_sync(services.view_case, state(request).rt, user,
                           request.path_params["case_id"])
    return _json(found)


async def post_verdict(request: Request) -> Response:
    """POST /api/cases/{case_id}/verdict."""
    user = await api_user(request, assess=True)
    data = await json_object(request, 16_384)
    unknown = set(data) - {"verdict", "category", "note", "learn", "classification", "answers"}
    if unknown:
        raise Problem("invalid-input", f"unknown field(s): {', '.join(sorted(unknown))}")
    services.check_verdict_fields(data.get("verdict"), data.get("category"), data.get("note"),
                                  data.get("learn", False))
    result = await run_sync(services.record_verdict, state(request).rt, user,
                            request.path_params["case_id"], verdict=data["verdict"],
                            category=data.get("category"), note=data.get("note"),
                            learn=data.get("learn", False),
                            classification=data.get("classification"),
                            answers=data.get("answers"))
    return _json(result)


async def get_notices(request: Request) -> Response:
    """GET /api/notices."""
    await api_user(request, partner_ok=False)
    notice_state = enum_param(request, "state", NOTICE_STATES)
    limit = int_param(request, "limit", 100, 1, 1000)
    rows = await run_sync(state(request).store.list_notices, state=notice_state, limit=limit)
    return _json({"notices": rows, "counts": await run_sync(state(request).store.notice_counts)})


async def get_stats(request: Request) -> Response:
    """GET /api/stats: ``ntd stats --json`` for ``from``/``to``."""
    await api_user(request)
    try:
        result = await run_sync(services.stats_summary, state(request).rt,
                                request.query_params.get("from"),
                                request.query_params.get("to"))
    except InputError as exc:
        raise Problem("invalid-input", exc.message.replace("--", "")) from exc
    return _json(result.summary)


def routes() -> list[Route]:
    """The API routes."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/reports", post_report, methods=["POST"]),
        Route("/api/batches", post_batch, methods=["POST"]),
        Route("/api/cases", get_cases, methods=["GET"]),
        Route("/api/cases/{case_id}", get_case, methods=["GET"]),
        Route("/api/cases/{case_id}/verdict", post_verdict, methods=["POST"]),
        Route("/api/notices", get_notices, methods=["GET"]),
        Route("/api/stats", get_stats, methods=["GET"]),
    ]
