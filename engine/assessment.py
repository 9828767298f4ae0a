"""Analyst verdicts: the one place that moves a case out of ``awaiting_assessment``.

Used by ``ntd verdict`` and by the web console/API, so both record the same trail, the same
``assessment`` field and call the same ``ntd_verdict_recorded`` hook (``--learn``).
"""

from __future__ import annotations

from typing import Any

from engine.plugin_manager import call_all_sync

VERDICTS = ("illegal", "not_illegal")


def record_verdict(rt: Any, case_id: str, *, verdict: str, actor: str,
                   category: str | None = None, note: str | None = None,
                   learn: bool = False) -> dict[str, Any]:
    """Commit an analyst's verdict and tell plugins; returns ``ntd verdict --json``'s object.

    Raises ``InputError`` if the case does not exist or is not awaiting assessment.
    """
    case_before = rt.store.load_case(case_id)
    now = rt.clock.now_text()
    state = "confirmed" if verdict == "illegal" else "dismissed"
    detail: dict[str, Any] = {"verdict": verdict, "learn": learn}
    if category:
        detail["category"] = category
    if note:
        detail["note"] = note
    data = {"assessment": {"verdict": verdict, "category": category, "by": actor, "at": now}}
    rt.store.transition(case_id, state=state, stage="assessment", actor=actor, action="verdict",
                        now=now, detail=detail, data=data, expect=["awaiting_assessment"])
    call_all_sync(rt.pm, "ntd_verdict_recorded", case=case_before, verdict=verdict,
                  category=category, learn=learn, actor=actor, store=rt.store, now=now)
    return {"id": case_id, "state": state, "verdict": verdict, "actor": actor}
