"""The analyst console (``/console``): server-rendered pages.

Pages: sign-in, cases, case detail (resolution, routes, monitoring, notices, items, trail and
actions), notices (failures, retry), statistics (PNG charts), batch upload, audit log (admins).
The assessment queue (a grid of blurred previews with keyboard triage, the console's only
script) is in ``engine.web.workbench_web``. Media is shown only through the safe viewer and
URLs are never links. Every state-changing form carries a CSRF token.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

import engine.web.intake_web as intake_web
import engine.web.services as services
from engine import stats as engine_stats
from engine.errors import InputError, StorageError
from engine.manual_routing import MANUAL_FROM, REROUTABLE
from engine.models import STATES
from engine.plugin_manager import call_all_sync
from engine.store.roles import NOTICE_STATES
from engine.web.auth import (
    DEVICE_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    User,
    verify_password,
)
from engine.web.deps import WebState, read_body, run_sync, state
from engine.web.problems import Problem
from engine.web.signin import GateFull, retry_after_header

PREFIX = "/console"
Handler = Callable[[Request, User], Awaitable[Response]]
CHART_TTL = 300.0
CATEGORIES = ("baseline", "national", "")
_NONCE = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16)


# -- plumbing ------------------------------------------------------------------------------------
def _secure(request: Request, st: WebState) -> bool:
    return st.settings.https or request.url.scheme == "https"


async def current_user(request: Request) -> User | None:
    """The signed-in account of a console request (session cookie), or None: the cookie must
    be signed, unexpired, not signed out and issued under the account's current password."""
    st = state(request)
    session = st.signer.open_session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    row = await run_sync(st.sessions.account, session)
    if row is None:
        return None
    request.state.nonce = session.nonce
    request.state.session = session
    return User.from_row(row)


def page(*roles: str) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Route decorator: a signed-in account with one of ``roles`` (all roles when empty)."""
    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = await current_user(request)
            if user is None:
                if request.method != "GET":
                    raise Problem("unauthorized", "sign in again (your session has ended)")
                target = quote(request.url.path, safe="/")
                return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
            # The police liaison sees the police page only (``engine.web.police``).
            if (roles and user.role not in roles) or (not roles and user.role == "police"):
                raise Problem("forbidden", f"role {user.role} may not open this page")
            return await handler(request, user)
        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint
    return wrap


def _same_origin(request: Request) -> bool:
    """Refuse cross-site form posts. With ``Referrer-Policy: no-referrer`` browsers send
    ``Origin: null``, so ``Sec-Fetch-Site`` decides then; the CSRF token is checked anyway."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    return origin.split("://", 1)[-1] == request.headers.get("host", "")


async def form_fields(request: Request, nonce: str | None, *,
                      limit: int = 65_536) -> dict[str, str]:
    """A url-encoded form body after the CSRF and same-origin checks."""
    st = state(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Problem("unsupported-media-type", "send application/x-www-form-urlencoded")
    body = await read_body(request, limit)
    try:
        raw = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem("bad-request", f"the form body cannot be read: {exc}") from None
    fields = {k: v[0] for k, v in raw.items()}
    if not _same_origin(request) or not st.signer.check_csrf(nonce, fields.get("csrf")):
        raise Problem("forbidden", "the form's security token is missing or stale; reload the "
                                   "page and try again")
    return fields


def render(request: Request, name: str, user: User | None, *, status: int = 200,
           **context: Any) -> Response:
    """A console page with the account, its CSRF token and the navigation."""
    st = state(request)
    nonce = getattr(request.state, "nonce", None)
    return st.templates.TemplateResponse(
        request, f"console/{name}",
        {"user": user, "csrf": st.signer.csrf(nonce) if nonce else "", "path": request.url.path,
         **context}, status_code=status)


def _redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


# -- sign-in -------------------------------------------------------------------------------------
async def login_form(request: Request, *, error: str | None = None, status: int = 200,
                     name: str = "", nxt: str | None = None) -> Response:
    """GET /console/login (also re-shown after a failed attempt, keeping the account name and
    where to go next)."""
    st = state(request)
    # The pre-session nonce stays the same across attempts, so it can key the per-client
    # sign-in throttle (engine.web.signin); a missing or odd one is replaced.
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    if not _NONCE.fullmatch(nonce):
        nonce = secrets.token_urlsafe(16)
    request.state.nonce = nonce
    if nxt is None:
        nxt = request.query_params.get("next", "")
    response = render(request, "login.html", None, status=status, error=error,
                      account=name[:64],
                      next=nxt if nxt.startswith(PREFIX + "/") else "")
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=900, path=f"{PREFIX}/login",
                        httponly=True, samesite="strict", secure=_secure(request, st))
    return response


async def login_page(request: Request) -> Response:
    """GET /console/login."""
    if await current_user(request) is not None:
        return _redirect(PREFIX)
    return await login_form(request)


async def login_submit(request: Request) -> Response:
    """POST /console/login."""
    st = state(request)
    fields = await form_fields(request, request.cookies.get(LOGIN_COOKIE))
    name = fields.get("name", "").strip()
    password = fields.get("password", "")
    if not name or not password:
        return await login_form(request, error="Enter your account name and password.",
                                status=422, name=name, nxt=fields.get("next", ""))
    row = await run_sync(st.accounts.get_user, name, with_hash=True)
    opened = st.signer.open_device(request.cookies.get(DEVICE_COOKIE))
    # The device cookie counts only for the account it was left by.
    device = opened[1] if opened and row is not None and opened[0] == row["id"] else None
    client = request.cookies.get(LOGIN_COOKIE)
    plan = st.signin.plan(name, device=device, client=client)
    if plan.refused:
        response = await login_form(
            request, status=429, name=name, nxt=fields.get("next", ""),
            error="Many failed sign-ins for this account came from "
            f"other browsers just now; try again in {math.ceil(plan.retry_after)} seconds.")
        response.headers.update(retry_after_header(plan.retry_after))
        return response
    if plan.delay:
        await st.sleep(plan.delay)  # slowing, capped: never a lock
    try:
        async with st.password_gate.slot(priority=0 if device else 1):
            ok = await run_sync(verify_password, row["password_hash"] if row else None,
                                password)
    except GateFull:
        response = await login_form(request, status=503, name=name, nxt=fields.get("next", ""),
                                    error="Sign-in is busy right now; try again in a moment.")
        response.headers.update(retry_after_header(1))
        return response
    if not ok or row is None:
        st.signin.failed(name, device=device, client=client)
        return await login_form(request, error="Wrong account name or password.", status=401,
                                name=name, nxt=fields.get("next", ""))
    st.signin.succeeded(name, device=device, client=client)
    await run_sync(st.store.audit, actor=User.from_row(row).actor, action="sign_in",
                   obj=f"user:{row['name']}", now=st.now())
    nxt = fields.get("next", "")
    response = _redirect(nxt if nxt.startswith(PREFIX + "/") else PREFIX)
    secure = _secure(request, st)
    response.set_cookie(SESSION_COOKIE, st.signer.session(row["id"], row["password_hash"]),
                        max_age=int(st.settings.session_hours * 3600), path=PREFIX,
                        httponly=True, samesite="strict", secure=secure)
    if device is None:
        response.set_cookie(DEVICE_COOKIE, st.signer.device(row["id"]),
                            max_age=int(st.settings.device_days * 86400),
                            path=f"{PREFIX}/login", httponly=True, samesite="strict",
                            secure=secure)
    response.delete_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
    return response


@page("analyst", "admin", "partner", "police")
async def logout(request: Request, user: User) -> Response:
    """POST /console/logout: the session ends at once, for every server process."""
    st = state(request)
    await form_fields(request, request.state.nonce)
    await run_sync(st.sessions.revoke, request.state.session)
    await run_sync(st.store.audit, actor=user.actor, action="sign_out",
                   obj=f"user:{user.name}", now=st.now())
    response = _redirect(f"{PREFIX}/login")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


@page("analyst", "admin", "partner", "police")
async def home(request: Request, user: User) -> Response:
    """GET /console: the queue (partners: their cases; police: cases held for them)."""
    if user.role == "police":
        return _redirect(f"{PREFIX}/police")
    return _redirect(f"{PREFIX}/cases" if user.role == "partner" else f"{PREFIX}/queue")


# -- cases ---------------------------------------------------------------------------------------
@page()
async def cases_page(request: Request, user: User) -> Response:
    """GET /console/cases?state=."""
    wanted = request.query_params.get("state") or None
    if wanted is not None and wanted not in STATES:
        raise Problem("invalid-input", f"state: unknown value {wanted[:40]!r}")
    rows = await run_sync(services.visible_cases, state(request).rt, user, state=wanted,
                          limit=200, offset=0)
    counts = await run_sync(state(request).store.count_by_state) \
        if user.role != "partner" else {}
    return render(request, "cases.html", user, cases=rows, states=STATES, wanted=wanted,
                  counts=counts)


@page()
async def case_page(request: Request, user: User) -> Response:
    """GET /console/cases/{case_id}: detail with trail and routes (audited)."""
    st = state(request)
    found = await run_sync(services.view_case, st.rt, user, request.path_params["case_id"])
    notices = [] if user.role == "partner" else [
        n for n in await run_sync(st.store.list_notices, limit=5000)
        if found["id"] in n.get("case_ids", [])]
    details = [await run_sync(st.store.get_notice, n["id"]) for n in notices[:20]]
    texts = {d["id"]: await run_sync(_notice_text, st.rt, d) for d in details if d}
    return render(request, "case.html", user, case=found, categories=CATEGORIES,
                  notices=[d for d in details if d], texts=texts,
                  done=request.query_params.get("done"),
                  manual_from=MANUAL_FROM, reroutable=REROUTABLE,
                  refetch_from=("awaiting_assessment", "unreachable", "failed", "fetched"))


def _notice_text(rt: Any, notice: dict[str, Any]) -> dict[str, str] | None:
    """The notice's rendered text (the first plugin that renders it), None if none can."""
    try:
        for answer, _ in call_all_sync(rt.pm, "ntd_notice_text", notice=notice,
                                       config=rt.config):
            if answer:
                return answer  # type: ignore[no-any-return]
    except Exception as exc:  # a template error must not hide the case page
        return {"subject": "(cannot be rendered)", "text": f"{type(exc).__name__}: {exc}"}
    return None


@page("analyst", "admin")
async def verdict_submit(request: Request, user: User) -> Response:
    """POST /console/cases/{case_id}/verdict."""
    fields = await form_fields(request, request.state.nonce)
    case_id = request.path_params["case_id"]
    await run_sync(services.record_verdict, state(request).rt, user, case_id,
                   verdict=fields.get("verdict"), category=fields.get("category") or None,
                   note=fields.get("note") or None, learn=fields.get("learn") == "on",
                   classification=services.classification_from_form(fields))
    back = fields.get("back", "")
    if back == "queue":
        return _redirect(f"{PREFIX}/queue?done={quote(case_id)}")
    return _redirect(f"{PREFIX}/cases/{quote(case_id)}?done=verdict")


# -- notices -------------------------------------------------------------------------------------
@page("analyst", "admin")
async def notices_page(request: Request, user: User) -> Response:
    """GET /console/notices?state=: delivery state, failures first in mind."""
    st = state(request)
    wanted = request.query_params.get("state") or None
    if wanted is not None and wanted not in NOTICE_STATES:
        raise Problem("invalid-input", f"state: unknown value {wanted[:40]!r}")
    rows = await run_sync(st.store.list_notices, state=wanted, limit=500)
    counts = await run_sync(st.store.notice_counts)
    return render(request, "notices.html", user, notices=rows, counts=counts,
                  states=NOTICE_STATES, wanted=wanted, done=request.query_params.get("done"))


@page("analyst", "admin")
async def notice_retry(request: Request, user: User) -> Response:
    """POST /console/notices/{notice_id}/retry: send a failed notice again now."""
    st = state(request)
    await form_fields(request, request.state.nonce)
    notice_id = request.path_params["notice_id"]
    ok = await run_sync(st.store.retry_notice, notice_id, now=st.now())
    if not ok:
        raise Problem("conflict", f"notice {notice_id!r} is neither failed nor waiting")
    await run_sync(st.store.audit, actor=user.actor, action="notice_retry",
                   obj=f"notice:{notice_id}", now=st.now())
    return _redirect(f"{PREFIX}/notices?done={quote(notice_id)}")


# -- statistics ----------------------------------------------------------------------------------
def _render_charts(rt: Any, stats: Any) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="ntd-charts-") as folder:
        paths = engine_stats.plot(stats, folder)
        return {p.name: Path(p).read_bytes() for p in paths}


@page()
async def stats_page(request: Request, user: User) -> Response:
    """GET /console/stats?from=&to=: aggregates and charts."""
    st = state(request)
    date_from = request.query_params.get("from") or None
    date_to = request.query_params.get("to") or None
    try:
        stats = await run_sync(services.stats_summary, st.rt, date_from, date_to)
    except InputError as exc:
        raise Problem("invalid-input", exc.message.replace("--", "")) from exc
    key = hashlib.sha256(f"{date_from}|{date_to}|{time.time()}".encode()).hexdigest()[:16]
    charts_error = None
    try:
        charts = await run_sync(_render_charts, st.rt, stats)
    except Exception as exc:  # charts are optional (matplotlib missing): show the numbers
        charts, charts_error = {}, f"charts unavailable: {exc}"
    now = time.monotonic()
    st.charts = {k: v for k, v in st.charts.items() if now - v[0] < CHART_TTL}
    while len(st.charts) >= 16:
        st.charts.pop(next(iter(st.charts)))
    st.charts[key] = (now, charts)
    return render(request, "stats.html", user, s=stats.summary, key=key,
                  charts=sorted(charts), charts_error=charts_error,
                  date_from=date_from or "", date_to=date_to or "")


@page()
async def chart_png(request: Request, user: User) -> Response:
    """GET /console/stats/charts/{key}/{name}: a rendered chart, from memory."""
    entry = state(request).charts.get(request.path_params["key"])
    data = entry[1].get(request.path_params["name"]) if entry else None
    if data is None:
        raise Problem("not-found", "this chart has expired; reload the statistics page")
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store"})


# -- batch upload, audit -------------------------------------------------------------------------
@page("analyst", "admin")
async def batch_page(request: Request, user: User) -> Response:
    """GET /console/batch: paste URLs (text, CSV or NDJSON)."""
    return render(request, "batch.html", user, result=None, text="")


@page("analyst", "admin")
async def batch_submit(request: Request, user: User) -> Response:
    """POST /console/batch."""
    st = state(request)
    fields = await form_fields(request, request.state.nonce, limit=st.settings.max_batch_bytes)
    text = fields.get("urls", "")
    try:
        rows, rejected = intake_web.parse_batch(text.encode(), None, channel="analyst",
                                                name="pasted text")
    except InputError as exc:
        return render(request, "batch.html", user, result=None, text=text[:100_000],
                      error=exc.message, status=422)
    try:
        result = await run_sync(intake_web.submit_batch, st.store, rows, rejected,
                                channel="analyst", source=f"console:{user.name}",
                                clock=st.rt.clock)
    except StorageError as exc:
        raise Problem("storage-unavailable", "the store could not save the batch") from exc
    summary = result.to_dict()
    await run_sync(st.store.audit, actor=user.actor, action="upload",
                   obj=f"batch:{summary.get('batch', '')}", now=st.now(),
                   detail={k: summary[k] for k in ("accepted", "duplicates") if k in summary})
    return render(request, "batch.html", user, result=summary, text="")


@page("admin")
async def audit_page(request: Request, user: User) -> Response:
    """GET /console/audit: the newest audit entries (admins)."""
    rows = await run_sync(state(request).store.audit_log)
    return render(request, "audit.html", user, rows=list(reversed(rows))[:500])


def routes() -> list[Route]:
    """The console routes."""
    return [
        Route(PREFIX, home, methods=["GET"]),
        Route(f"{PREFIX}/login", login_page, methods=["GET"]),
        Route(f"{PREFIX}/login", login_submit, methods=["POST"]),
        Route(f"{PREFIX}/logout", logout, methods=["POST"]),
        Route(f"{PREFIX}/cases", cases_page, methods=["GET"]),
        Route(f"{PREFIX}/cases/{{case_id}}", case_page, methods=["GET"]),
        Route(f"{PREFIX}/cases/{{case_id}}/verdict", verdict_submit, methods=["POST"]),
        Route(f"{PREFIX}/notices", notices_page, methods=["GET"]),
        Route(f"{PREFIX}/notices/{{notice_id}}/retry", notice_retry, methods=["POST"]),
        Route(f"{PREFIX}/stats", stats_page, methods=["GET"]),
        Route(f"{PREFIX}/stats/charts/{{key}}/{{name}}", chart_png, methods=["GET"]),
        Route(f"{PREFIX}/batch", batch_page, methods=["GET"]),
        Route(f"{PREFIX}/batch", batch_submit, methods=["POST"]),
        Route(f"{PREFIX}/audit", audit_page, methods=["GET"]),
    ]
