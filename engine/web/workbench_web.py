"""The analyst's workbench on the web: the safe viewer, the grouped queue, bulk verdicts, undo,
the disputed list and wellbeing settings — as API routes (Bearer tokens) and console routes
(session cookie, CSRF), both calling the same engine functions.

API: ``GET /api/cases/{id}/items/{n}/preview``, ``GET /api/queue?group=``,
``POST /api/verdicts``, ``POST /api/cases/{id}/verdict/undo``, ``GET /api/disputed``,
``GET``/``PUT /api/settings``. Console: ``/console/queue`` (the grid, keyboard triage in
``static/workbench.js``), ``/console/cases/{id}/items/{n}/preview``, ``POST /console/verdicts``,
``POST /console/cases/{id}/undo``, ``/console/settings``.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import engine.web.services as services
from engine.errors import InputError
from engine.manual_routing import route_by_hand, set_origin
from engine.viewer import PreviewError
from engine.web.api import api_user, enum_param, int_param, json_object
from engine.web.auth import User
from engine.web.console import PREFIX, form_fields, page, render
from engine.web.deps import run_sync, state
from engine.web.problems import Problem
from engine.workbench import GROUP_KINDS, SORTS

# Previews allow nothing but themselves: no scripts, no styles, no frames, no other loads.
PREVIEW_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'; base-uri 'none'"
PREVIEW_HEADERS = {"Cache-Control": "no-store, private", "Content-Security-Policy": PREVIEW_CSP,
                   "X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy":
                   "same-origin", "Pragma": "no-cache"}
PAGE_SIZE = 50
AGES = {"1h": 1.0, "24h": 24.0, "7d": 168.0}
BODY_LIMIT = 1024 * 1024


# -- the safe viewer -----------------------------------------------------------------------------
async def preview_response(request: Request, user: User) -> Response:
    """The preview of ``{case_id}``'s item ``{n}`` for ``user`` (any front door)."""
    if not user.can_assess:
        raise Problem("forbidden", "only analysts and admins may view media")
    st = state(request)
    max_side = int_param(request, "max", 256, 1, 4096)
    if max_side not in (256, 512):
        raise Problem("invalid-input", "max: 256 or 512")
    settings = await run_sync(services.account_settings, st.rt, user)
    blur = int_param(request, "blur", settings["blur"], 0, 100)
    grey = bool(int_param(request, "grey", 1 if settings["grey"] else 0, 0, 1))
    try:
        n = int(request.path_params["n"])
    except ValueError:
        raise Problem("not-found", "item index: a number from 0") from None
    wait = st.preview_wait(user.id)
    if wait:
        raise Problem("rate-limited", "too many previews just now",
                      headers={"Retry-After": str(max(1, math.ceil(wait)))})
    try:
        data = await st.viewer.preview(request.path_params["case_id"], n, max_side=max_side,
                                       blur=blur, grey=grey, actor=user.actor)
    except PreviewError as exc:
        raise Problem(exc.reason, exc.message, headers={"Cache-Control": "no-store, private"}) \
            from exc
    return Response(data, media_type="image/jpeg", headers=PREVIEW_HEADERS)


async def api_preview(request: Request) -> Response:
    """GET /api/cases/{case_id}/items/{n}/preview[?max=256|512][&blur=0-100][&grey=0|1]."""
    user = await api_user(request, partner_ok=False)
    return await preview_response(request, user)


# -- the grouped queue ---------------------------------------------------------------------------
def queue_filters(request: Request) -> dict[str, Any]:
    """Filters and sort of a queue request (``channel``, ``list``, ``age``, ``sort``)."""
    age = enum_param(request, "age", tuple(AGES))
    channel = request.query_params.get("channel") or None
    list_name = request.query_params.get("list") or None
    for name, value in (("channel", channel), ("list", list_name)):
        if value is not None and len(value) > 64:
            raise Problem("invalid-input", f"{name}: at most 64 characters")
    return {"channel": channel, "list_name": list_name,
            "age_hours": AGES[age] if age else None,
            "sort": enum_param(request, "sort", SORTS) or "oldest"}


async def grouped_queue(request: Request, user: User, *, group: str, limit: int,
                        offset: int, disputed: bool = False) -> dict[str, Any]:
    """A page of groups for ``user``, audited as a queue view."""
    st = state(request)
    filters = queue_filters(request)
    result = await run_sync(st.queue.page, group=group, limit=limit, offset=offset,
                            viewer=user.actor, disputed=disputed, **filters)
    await run_sync(st.store.audit, actor=user.actor, action="view_queue",
                   obj=f"queue:{group}", now=st.now(),
                   detail={"offset": offset, "groups": len(result["groups"]),
                           "total_cases": result["total_cases"]})
    return result


async def api_queue(request: Request) -> Response:
    """GET /api/queue[?group=sha256|pdq][&limit&offset]: without ``group`` the waiting cases
    oldest first (as before); with it, groups with true totals."""
    user = await api_user(request, partner_ok=False)
    group = enum_param(request, "group", GROUP_KINDS)
    if group is None:
        limit = int_param(request, "limit", 100, 1, 1000)
        rows = await run_sync(state(request).store.list_cases, state="awaiting_assessment",
                              limit=limit)
        return JSONResponse({"cases": rows, "limit": limit})
    limit = int_param(request, "limit", PAGE_SIZE, 1, 1000)
    offset = int_param(request, "offset", 0, 0, 10**9)
    return JSONResponse(await grouped_queue(request, user, group=group, limit=limit,
                                            offset=offset))


# -- verdicts ------------------------------------------------------------------------------------
async def cases_of(request: Request, data: dict[str, Any]) -> list[str]:
    """The case ids a bulk verdict names: ``cases`` or the ``group`` key."""
    if ("cases" in data) == ("group" in data):
        raise Problem("invalid-input", "give either 'cases' (a list of ids) or 'group'")
    if "cases" in data:
        ids = data["cases"]
        if (not isinstance(ids, list) or not ids or len(ids) > services.MAX_BULK
                or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids)):
            raise Problem("invalid-input", f"cases: 1 to {services.MAX_BULK} case ids")
        return ids
    key = data["group"]
    if not isinstance(key, str) or ":" not in key or key.split(":", 1)[0] not in GROUP_KINDS:
        raise Problem("invalid-input", "group: 'sha256:<hex>' or 'pdq:<hex>'")
    st = state(request)
    kind = key.split(":", 1)[0]
    user_actor = getattr(request.state, "actor", None)
    found = await run_sync(st.queue.page, group=kind, limit=10**9, offset=0, viewer=user_actor)
    for g in found["groups"]:
        if g["key"] == key:
            return list(g["cases"])
    raise Problem("not-found", f"no waiting group {key[:80]!r}")


VERDICTS_FIELDS = {"cases", "group", "verdict", "classification", "learn", "note", "answers"}


async def bulk_verdict(request: Request, user: User, data: dict[str, Any]) -> dict[str, Any]:
    """Validate and record a bulk verdict body."""
    unknown = set(data) - VERDICTS_FIELDS
    if unknown:
        raise Problem("invalid-input", f"unknown field(s): {', '.join(sorted(unknown))}")
    request.state.actor = user.actor
    ids = await cases_of(request, data)
    return await run_sync(services.record_verdicts, state(request).rt, user, ids,
                          verdict=data.get("verdict"), classification=data.get("classification"),
                          answers=data.get("answers"), note=data.get("note"),
                          learn=data.get("learn", False))


async def api_verdicts(request: Request) -> Response:
    """POST /api/verdicts: one verdict for many cases (``cases`` or ``group``)."""
    user = await api_user(request, assess=True)
    data = await json_object(request, BODY_LIMIT)
    result = await bulk_verdict(request, user, data)
    return JSONResponse({"recorded": result["recorded"], "skipped": result["skipped"],
                         "pending": result["pending"], "disputed": result["disputed"],
                         "rematched": result["rematched"]})


async def api_undo(request: Request) -> Response:
    """POST /api/cases/{case_id}/verdict/undo."""
    user = await api_user(request, assess=True)
    return JSONResponse(await run_sync(services.undo_verdict, state(request).rt, user,
                                       request.path_params["case_id"]))


async def api_disputed(request: Request) -> Response:
    """GET /api/disputed: verdicts two analysts disagreed on (admins)."""
    user = await api_user(request, partner_ok=False)
    return JSONResponse({"cases": await run_sync(services.disputed_cases, state(request).rt,
                                                 user)})


async def api_settings(request: Request) -> Response:
    """GET/PUT /api/settings: this account's wellbeing settings."""
    user = await api_user(request, partner_ok=False)
    st = state(request)
    if request.method == "PUT":
        data = await json_object(request, 4096)
        return JSONResponse(await run_sync(services.save_settings, st.rt, user, data))
    return JSONResponse(await run_sync(services.account_settings, st.rt, user))


# -- console -------------------------------------------------------------------------------------
@page("analyst", "admin")
async def console_queue(request: Request, user: User) -> Response:
    """GET /console/queue: the grid of groups (50 a page), filters, sort, keyboard triage."""
    st = state(request)
    group = enum_param(request, "group", GROUP_KINDS) or "sha256"
    page_no = int_param(request, "page", 1, 1, 10**6)
    disputed = request.query_params.get("disputed") == "1" and user.role == "admin"
    result = await grouped_queue(request, user, group=group, limit=PAGE_SIZE,
                                 offset=(page_no - 1) * PAGE_SIZE, disputed=disputed)
    settings = await run_sync(services.account_settings, st.rt, user)
    questions = st.rt.config.section("assessment.questions")
    filters = {k: request.query_params.get(k, "") for k in ("channel", "list", "age", "sort")}
    pages = max(1, math.ceil(result["total_groups"] / PAGE_SIZE))
    # the pager keeps the group, filters and sort
    keep = {"group": group, **{k: v for k, v in filters.items() if v}}
    if disputed:
        keep["disputed"] = "1"
    base_query = urlencode(keep)
    return render(request, "queue.html", user, q=result, group=group, page_no=page_no,
                  pages=pages, filters=filters, base_query=base_query, settings=settings,
                  questions=questions, disputed=disputed, ages=tuple(AGES), sorts=SORTS,
                  done=request.query_params.get("done"))


@page("analyst", "admin")
async def console_preview(request: Request, user: User) -> Response:
    """GET /console/cases/{case_id}/items/{n}/preview: the safe viewer for the signed-in."""
    return await preview_response(request, user)


@page("analyst", "admin")
async def console_verdicts(request: Request, user: User) -> Response:
    """POST /console/verdicts (from the grid's script): form fields, a JSON answer."""
    fields = await form_fields(request, request.state.nonce, limit=BODY_LIMIT)
    data: dict[str, Any] = {"verdict": fields.get("verdict"),
                            "learn": fields.get("learn") == "1",
                            "classification": services.classification_from_form(fields)}
    if fields.get("note"):
        data["note"] = fields["note"]
    answers = {k[2:]: v for k, v in fields.items() if k.startswith("q_") and v}
    if answers:
        data["answers"] = answers
    data["cases"] = [c for c in fields.get("cases", "").split(",") if c]
    result = await bulk_verdict(request, user, data)
    return JSONResponse(result)


@page("analyst", "admin")
async def console_undo(request: Request, user: User) -> Response:
    """POST /console/cases/{case_id}/undo (the grid's u key)."""
    await form_fields(request, request.state.nonce)
    return JSONResponse(await run_sync(services.undo_verdict, state(request).rt, user,
                                       request.path_params["case_id"]))


@page("analyst", "admin")
async def console_settings(request: Request, user: User) -> Response:
    """GET/POST /console/settings: blur level, greyscale, break reminder."""
    st = state(request)
    saved = False
    if request.method == "POST":
        fields = await form_fields(request, request.state.nonce)
        try:
            values = {"blur": int(fields.get("blur", "")),
                      "grey": fields.get("grey") == "on",
                      "break_minutes": int(fields.get("break_minutes", ""))}
        except ValueError:
            raise Problem("invalid-input", "blur and break_minutes: whole numbers") from None
        await run_sync(services.save_settings, st.rt, user, values)
        saved = True
    settings = await run_sync(services.account_settings, st.rt, user)
    return render(request, "settings.html", user, settings=settings, saved=saved)


# -- the case page's actions ---------------------------------------------------------------------
REFETCH_FROM = ("awaiting_assessment", "unreachable", "failed", "fetched")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


async def _case_action(request: Request, user: User, action: str, fn: Any) -> Response:
    """Run one case action (blocking ``fn(rt, case_id, fields)``), audit it, go back."""
    st = state(request)
    fields = await form_fields(request, request.state.nonce)
    case_id = request.path_params["case_id"]
    try:
        await run_sync(fn, st.rt, case_id, fields, user.actor)
    except InputError as exc:
        raise Problem("conflict", exc.message) from exc
    await run_sync(st.store.audit, actor=user.actor, action=action, obj=f"case:{case_id}",
                   now=st.now())
    return RedirectResponse(f"{PREFIX}/cases/{quote(case_id)}?done={action}", status_code=303)


def _route(rt: Any, case_id: str, fields: dict[str, str], actor: str) -> None:
    specs = _lines(fields.get("to", ""))
    if not specs:
        raise InputError("name at least one route: KIND:TARGET[:CHANNEL], one a line")
    deadline = fields.get("deadline", "").strip()
    route_by_hand(rt, case_id, specs, country=fields.get("country") or None,
                  deadline=int(deadline) if deadline.isdigit() else None, actor=actor,
                  reason=fields.get("reason") or None)


def _origin(rt: Any, case_id: str, fields: dict[str, str], actor: str) -> None:
    set_origin(rt, case_id, country=fields.get("country", ""),
               contacts=_lines(fields.get("contacts", "")), ips=_lines(fields.get("ips", "")),
               note=fields.get("note") or None, actor=actor)


def _refetch(rt: Any, case_id: str, fields: dict[str, str], actor: str) -> None:
    [why] = rt.store.move_cases([{
        "case_id": case_id, "state": "new", "stage": "fetch", "actor": actor,
        "action": "fetch_again", "expect": list(REFETCH_FROM), "detail": {}}],
        rt.clock.now_text())
    if why is not None:
        raise InputError(f"case {case_id} cannot be fetched again from here ({why}); "
                         f"possible from {', '.join(REFETCH_FROM)}")


@page("analyst", "admin")
async def console_route(request: Request, user: User) -> Response:
    """POST /console/cases/{case_id}/route: routes by hand (also unresolved/failed)."""
    return await _case_action(request, user, "route_by_hand", _route)


@page("analyst", "admin")
async def console_origin(request: Request, user: User) -> Response:
    """POST /console/cases/{case_id}/origin: the origin host behind a CDN."""
    return await _case_action(request, user, "set_origin", _origin)


@page("analyst", "admin")
async def console_refetch(request: Request, user: User) -> Response:
    """POST /console/cases/{case_id}/refetch: fetch the case again now."""
    return await _case_action(request, user, "fetch_again", _refetch)


def routes() -> list[Route]:
    """The workbench's routes (registered before the API's and console's own)."""
    return [
        Route("/api/cases/{case_id}/items/{n}/preview", api_preview, methods=["GET"]),
        Route("/api/cases/{case_id}/verdict/undo", api_undo, methods=["POST"]),
        Route("/api/queue", api_queue, methods=["GET"]),
        Route("/api/verdicts", api_verdicts, methods=["POST"]),
        Route("/api/disputed", api_disputed, methods=["GET"]),
        Route("/api/settings", api_settings, methods=["GET", "PUT"]),
        Route(f"{PREFIX}/queue", console_queue, methods=["GET"]),
        Route(f"{PREFIX}/cases/{{case_id}}/items/{{n}}/preview", console_preview,
              methods=["GET"]),
        Route(f"{PREFIX}/verdicts", console_verdicts, methods=["POST"]),
        Route(f"{PREFIX}/cases/{{case_id}}/undo", console_undo, methods=["POST"]),
        Route(f"{PREFIX}/settings", console_settings, methods=["GET", "POST"]),
        Route(f"{PREFIX}/cases/{{case_id}}/route", console_route, methods=["POST"]),
        Route(f"{PREFIX}/cases/{{case_id}}/origin", console_origin, methods=["POST"]),
        Route(f"{PREFIX}/cases/{{case_id}}/refetch", console_refetch, methods=["POST"]),
    ]
