"""Takedown controls a person decides (issue 21): the police liaison's release or decline of a
``held_for_police`` case, and an admin's approval of a contact found by lookup.

The command line (``ntd release``, ``ntd contacts approve``) and the console's police and
approvals pages call these, so both record the same trail events and audit entries.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from engine import clock
from engine.errors import InputError

POLICE_HOLD = "police"  # the ``held`` mark of outbox actions waiting for the police liaison
DEFAULT_RECHECK_HOURS = 24.0  # [notices] recheck_hours when no plugin declares it
MAX_NOTE = 2000


def first_recheck(actions: list[dict[str, Any]], config: Any, now: datetime) -> datetime:
    """The first re-check of noticed ``actions`` (or routes): the first step of ``[recheck]
    schedule`` when one is set (validated by the re-check plugin), else the earliest deadline,
    else ``[notices] recheck_hours`` after ``now``."""
    schedule = config.get("recheck", "schedule", None) or []
    if schedule:
        return now + clock.parse_duration(schedule[0])
    hours = [a["deadline_hours"] for a in actions
             if isinstance(a.get("deadline_hours"), int | float) and a["deadline_hours"] > 0]
    fallback = config.get("notices", "recheck_hours", None) or DEFAULT_RECHECK_HOURS
    return now + timedelta(hours=min(hours) if hours else float(fallback))


def release_case(rt: Any, case_id: str, *, actor: str, note: str | None,
                 decline: bool) -> dict[str, Any]:
    """Release (or decline) a ``held_for_police`` case; returns its new state and how many
    held actions were let go (or dropped). Declining needs ``note``: the reason is kept with
    the closed case. Both are in the case's trail and in the audit log."""
    found = rt.store.get_case(case_id, events=False)
    if found is None:
        raise InputError(f"no case {case_id!r}")
    if found["state"] != "held_for_police":
        raise InputError(f"case {case_id} is {found['state']}; this needs one of: "
                         "held_for_police")
    if note is not None and len(note) > MAX_NOTE:
        raise InputError(f"note: at most {MAX_NOTE} characters")
    now = rt.clock.now_text()
    if decline:
        if not note:
            raise InputError("--decline needs --note (the reason is kept with the case)")
        rt.store.transition(case_id, state="closed", stage="notify", actor=actor,
                            action="police_declined", now=now, reason=f"police: {note}",
                            detail={"note": note}, expect=["held_for_police"])
        count = rt.store.drop_held(case_id, hold=POLICE_HOLD)
        rt.store.audit(actor=actor, action="police_declined", obj=f"case:{case_id}", now=now,
                       detail={"note": note, "dropped": count})
        return {"state": "closed", "notices": count}
    # Actions first: a crash between the two steps leaves notices going out and the case
    # still held (released again harmlessly), never a released case whose notices stay held.
    count = rt.store.release_held(case_id, hold=POLICE_HOLD)
    routes = [r for r in found.get("routes") or [] if isinstance(r, dict)]
    retry = first_recheck(routes, rt.config, rt.clock.now())
    rt.store.transition(case_id, state="noticed", stage="notify", actor=actor,
                        action="police_released", now=now, detail={"note": note,
                                                                   "released": count},
                        retry_at=clock.fmt(retry), expect=["held_for_police"])
    rt.store.audit(actor=actor, action="police_released", obj=f"case:{case_id}", now=now,
                   detail={"note": note, "released": count})
    return {"state": "noticed", "notices": count}


def approve_contact(rt: Any, address: str, *, actor: str, note: str | None) -> int:
    """Approve an address found by lookup for notices; its waiting notices are queued now.
    Returns how many; audited as ``contact_approved``."""
    address = address.strip().lower()
    if not address or len(address) > 320:
        raise InputError("address: an e-mail address or API endpoint of at most 320 characters")
    if note is not None and len(note) > MAX_NOTE:
        raise InputError(f"note: at most {MAX_NOTE} characters")
    now = rt.clock.now_text()
    queued = int(rt.store.approve_contact(address, by=actor, now=now, note=note))
    rt.store.audit(actor=actor, action="contact_approved", obj=address, now=now,
                   detail={"queued": queued, "note": note})
    return queued
