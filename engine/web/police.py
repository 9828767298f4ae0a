"""The police liaison's console page (``/console/police``; role ``police``).

Police first (issue 21): a case whose hoster notices wait for the police is listed here with
what the liaison needs to decide — the URL (as text), the hosting country and network, who the
held notices are for, since when it waits — and nothing else of the console. **Release** (with
an optional note) lets the held notices go and starts the takedown clock; **Decline** (a reason
is required) closes the case for takedown. Both go through ``engine.takedown.release_case``
(the same trail events as ``ntd release``) and are audited.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine.errors import InputError
from engine.takedown import POLICE_HOLD, release_case
from engine.web.auth import User
from engine.web.console import PREFIX, form_fields, page, render
from engine.web.deps import run_sync, state
from engine.web.problems import Problem

PAGE = f"{PREFIX}/police"


AUTHORITY_KINDS = ("police", "interpol")  # their reports are never held


def _address(route: dict[str, Any]) -> str:
    """``email:abuse@x.test`` → ``abuse@x.test`` (the channel is shown apart)."""
    return str(route.get("target") or "").partition(":")[2] or str(route.get("target") or "")


def held_cases(rt: Any) -> list[dict[str, Any]]:
    """Cases waiting for the police liaison, oldest first, as the page shows them."""
    rows = []
    for case in rt.store.list_cases(state="held_for_police", limit=500):
        res = case.get("resolution") or {}
        routes = [r for r in case.get("routes") or [] if isinstance(r, dict) and r.get("target")]
        asn = res.get("asn")
        rows.append({
            "id": case["id"], "url": case["canonical_url"], "since": case["updated_at"],
            "country": res.get("country") or "?",
            "network": " ".join(str(p) for p in (f"AS{asn}" if asn else "",
                                                 res.get("network_name") or "") if p),
            "held_for": sorted({_address(r) for r in routes
                                if r.get("recipient_kind") not in AUTHORITY_KINDS}),
            "reported_to": sorted({_address(r) for r in routes
                                   if r.get("recipient_kind") in AUTHORITY_KINDS}),
        })
    return rows


@page("police")
async def police_page(request: Request, user: User) -> Response:
    """GET /console/police: cases held for the police, with release and decline forms."""
    rows = await run_sync(held_cases, state(request).rt)
    return render(request, "police.html", user, cases=rows, hold=POLICE_HOLD,
                  done=request.query_params.get("done"),
                  outcome=request.query_params.get("outcome"))


async def _decide(request: Request, user: User, *, decline: bool) -> Response:
    st = state(request)
    fields = await form_fields(request, request.state.nonce)
    case_id = request.path_params["case_id"]
    note = (fields.get("reason" if decline else "note") or "").strip() or None
    if decline and not note:
        raise Problem("invalid-input", "reason: say why the takedown is declined")
    try:
        await run_sync(release_case, st.rt, case_id, actor=user.actor, note=note,
                       decline=decline)
    except InputError as exc:
        kind = "not-found" if exc.message.startswith("no case") else "conflict"
        raise Problem(kind, exc.message) from exc
    outcome = "declined" if decline else "released"
    return RedirectResponse(f"{PAGE}?done={quote(case_id)}&outcome={outcome}",
                            status_code=303)


@page("police")
async def release_submit(request: Request, user: User) -> Response:
    """POST /console/police/{case_id}/release: the held notices go out now."""
    return await _decide(request, user, decline=False)


@page("police")
async def decline_submit(request: Request, user: User) -> Response:
    """POST /console/police/{case_id}/decline: the case is closed for takedown (reason)."""
    return await _decide(request, user, decline=True)


def routes() -> list[Route]:
    """The police liaison's routes."""
    return [
        Route(PAGE, police_page, methods=["GET"]),
        Route(f"{PAGE}/{{case_id}}/release", release_submit, methods=["POST"]),
        Route(f"{PAGE}/{{case_id}}/decline", decline_submit, methods=["POST"]),
    ]
