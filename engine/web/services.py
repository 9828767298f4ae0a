"""What the API and the console both do, as blocking functions (run them in a thread).

Each mirrors a CLI command: ``record_verdict`` is ``ntd verdict`` (same transition, trail detail
and ``ntd_verdict_recorded`` hook), ``view_case`` is ``ntd case`` (with its audit entry).
"""

from __future__ import annotations

from typing import Any

from engine import stats as engine_stats
from engine.assessment import record_verdict as commit_verdict
from engine.errors import InputError
from engine.web.auth import User
from engine.web.problems import Problem

VERDICTS = ("illegal", "not_illegal")
MAX_CATEGORY = 64
MAX_NOTE = 2000


def check_verdict_fields(verdict: Any, category: Any, note: Any, learn: Any) -> None:
    """Validate verdict input; raises an ``invalid-input`` problem naming the field."""
    if verdict not in VERDICTS:
        raise Problem("invalid-input", f"verdict: expected one of {', '.join(VERDICTS)}")
    if category is not None and (not isinstance(category, str) or not category.strip()
                                 or len(category) > MAX_CATEGORY):
        raise Problem("invalid-input", f"category: a non-empty text of at most {MAX_CATEGORY}"
                                       " characters, or null")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise Problem("invalid-input", f"note: text of at most {MAX_NOTE} characters, or null")
    if not isinstance(learn, bool):
        raise Problem("invalid-input", "learn: expected true or false")


def record_verdict(rt: Any, user: User, case_id: str, *, verdict: str, category: str | None,
                   note: str | None, learn: bool) -> dict[str, Any]:
    """``ntd verdict`` for a signed-in analyst; returns the CLI's JSON object."""
    if not user.can_assess:
        raise Problem("forbidden", f"role {user.role} cannot record verdicts")
    check_verdict_fields(verdict, category, note, learn)
    if rt.store.get_case(case_id, events=False) is None:
        raise Problem("not-found", f"no case {case_id!r}")

    try:
        return commit_verdict(rt, case_id, verdict=verdict, actor=user.actor,
                              category=category, note=note, learn=learn)
    except InputError as exc:
        raise Problem("conflict", exc.message) from exc


def view_case(rt: Any, user: User, case_id: str) -> dict[str, Any]:
    """One case with its trail, audited as a view (partners: their country only, else 404)."""
    found = rt.store.get_case(case_id)
    now = rt.clock.now_text()
    if found is None:
        raise Problem("not-found", f"no case {case_id!r}")
    if not user.may_see(found):
        rt.store.audit(actor=user.actor, action="view_denied", obj=f"case:{case_id}", now=now)
        raise Problem("not-found", f"no case {case_id!r}")
    rt.store.audit(actor=user.actor, action="view", obj=f"case:{case_id}", now=now)
    return found  # type: ignore[no-any-return]


def visible_cases(rt: Any, user: User, *, state: str | None, limit: int,
                  offset: int) -> list[dict[str, Any]]:
    """Cases (oldest first) this account may read."""
    if user.role != "partner":
        return rt.store.list_cases(state=state, limit=limit, offset=offset)  # type: ignore
    rows = [c for c in rt.store.list_cases(state=state) if user.may_see(c)]
    return rows[offset:offset + limit]


def stats_summary(rt: Any, date_from: str | None, date_to: str | None) -> Any:
    """``ntd stats`` for a period (``InputError`` for bad dates)."""

    period = engine_stats.parse_period(date_from or None, date_to or None)
    return engine_stats.compute_for_runtime(rt, period)
