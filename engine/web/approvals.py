"""Contact approvals in the console (``/console/approvals``; admins).

With ``[notices] require_approval = true`` a contact found by lookup (not from the contacts
book) gets no mail until an admin approves it; its notices wait in ``awaiting_approval``. This
page is the list to work through (``ntd contacts pending``) with an **Approve** button per
address (``ntd contacts approve ADDR``): both go through ``engine.takedown.approve_contact``,
which queues the waiting notices and writes the audit entry.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine.errors import InputError
from engine.takedown import approve_contact
from engine.web.auth import User
from engine.web.console import PREFIX, form_fields, page, render
from engine.web.deps import run_sync, state
from engine.web.problems import Problem

PAGE = f"{PREFIX}/approvals"


@page("admin")
async def approvals_page(request: Request, user: User) -> Response:
    """GET /console/approvals: addresses whose notices wait for approval, oldest first."""
    rows = await run_sync(state(request).store.awaiting_approval)
    return render(request, "approvals.html", user, rows=rows,
                  done=request.query_params.get("done"),
                  queued=request.query_params.get("queued"))


@page("admin")
async def approve_submit(request: Request, user: User) -> Response:
    """POST /console/approvals: approve ``address`` (with an optional ``note``)."""
    st = state(request)
    fields = await form_fields(request, request.state.nonce)
    address = fields.get("address", "").strip()
    try:
        queued = await run_sync(approve_contact, st.rt, address, actor=user.actor,
                                note=fields.get("note", "").strip() or None)
    except InputError as exc:
        raise Problem("invalid-input", exc.message) from exc
    return RedirectResponse(f"{PAGE}?done={quote(address.lower())}&queued={queued}",
                            status_code=303)


def routes() -> list[Route]:
    """The approvals routes."""
    return [Route(PAGE, approvals_page, methods=["GET"]),
            Route(PAGE, approve_submit, methods=["POST"])]
