"""What the API and the console both do, as blocking functions (run them in a thread).

Each mirrors a CLI command: ``record_verdict`` is ``ntd verdict`` (same transition, trail detail
and ``ntd_verdict_recorded`` hook), ``view_case`` is ``ntd case`` (with its audit entry).
"""

from __future__ import annotations

from typing import Any

from engine import stats as engine_stats
from engine.assessment import VERDICTS, check_answers, check_classification
from engine.assessment import record_verdict as commit_verdict
from engine.assessment import record_verdicts as commit_verdicts
from engine.assessment import undo_verdict as take_back
from engine.errors import InputError
from engine.web.auth import User
from engine.web.problems import Problem

MAX_CATEGORY = 64
MAX_NOTE = 2000
MAX_BULK = 5000
# Wellbeing settings of an account (``GET``/``PUT /api/settings``, the console's settings page):
# previews blurred and greyscale by default, a break reminder after so many minutes (0: none).
SETTINGS_DEFAULTS: dict[str, Any] = {"blur": 60, "grey": True, "break_minutes": 45}


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


def classification_from_form(fields: dict[str, str]) -> dict[str, Any] | None:
    """The classification a console form sent (radio buttons; nothing pre-selected), None for
    verdicts other than ``illegal``. Unanswered fields stay None and are refused as missing."""
    if fields.get("verdict") != "illegal":
        return None
    flags = {flag: fields[flag] == "1" if fields.get(flag) in ("0", "1") else None
             for flag in ("virtual", "user_generated", "child_modelling")}
    return {"class": fields.get("class") or None, "age": fields.get("age") or None,
            "gender": fields.get("gender") or None, **flags}


def record_verdict(rt: Any, user: User, case_id: str, *, verdict: str, category: str | None,
                   note: str | None, learn: bool, classification: Any = None,
                   answers: Any = None) -> dict[str, Any]:
    """``ntd verdict`` for a signed-in analyst; returns the CLI's JSON object."""
    if not user.can_assess:
        raise Problem("forbidden", f"role {user.role} cannot record verdicts")
    check_verdict_fields(verdict, category, note, learn)
    if rt.store.get_case(case_id, events=False) is None:
        raise Problem("not-found", f"no case {case_id!r}")
    _check_classification(verdict, classification, answers, rt, legacy=category)
    try:
        result = commit_verdict(rt, case_id, verdict=verdict, actor=user.actor,
                                category=category, note=note, learn=learn,
                                classification=classification, answers=answers,
                                admin=user.role == "admin")
    except InputError as exc:
        raise Problem("conflict", exc.message) from exc
    rt.store.audit(actor=user.actor, action="verdict", obj=f"case:{case_id}",
                   now=rt.clock.now_text(), detail={"verdict": verdict, "learn": learn})
    return result


def _check_classification(verdict: Any, classification: Any, answers: Any, rt: Any, *,
                          legacy: str | None = None) -> None:
    """422 for a classification or answers the assessment rules refuse."""
    try:
        if classification is not None and verdict != "illegal":
            raise InputError("classification: only for an 'illegal' verdict")
        check_classification(classification, required=verdict == "illegal" and not legacy)
        check_answers(rt, answers)
    except InputError as exc:
        raise Problem("invalid-input", exc.message) from exc


def record_verdicts(rt: Any, user: User, case_ids: list[str], *, verdict: str,
                    classification: Any, answers: Any, note: str | None,
                    learn: bool) -> dict[str, Any]:
    """``POST /api/verdicts``: one verdict on many cases, one transaction, audited."""
    if not user.can_assess:
        raise Problem("forbidden", f"role {user.role} cannot record verdicts")
    if verdict not in VERDICTS:
        raise Problem("invalid-input", f"verdict: expected one of {', '.join(VERDICTS)}")
    check_verdict_fields(verdict, None, note, learn)
    _check_classification(verdict, classification, answers, rt)
    try:
        result = commit_verdicts(rt, case_ids, verdict=verdict, actor=user.actor,
                                 classification=classification, answers=answers, note=note,
                                 learn=learn, admin=user.role == "admin")
    except InputError as exc:
        raise Problem("invalid-input", exc.message) from exc
    rt.store.audit(actor=user.actor, action="verdicts", obj=f"cases:{len(case_ids)}",
                   now=rt.clock.now_text(),
                   detail={"verdict": verdict, "learn": learn, "recorded": result["recorded"],
                           "cases": case_ids[:1000]})
    return result


def undo_verdict(rt: Any, user: User, case_id: str) -> dict[str, Any]:
    """``POST /api/cases/{id}/verdict/undo``, audited."""
    if not user.can_assess:
        raise Problem("forbidden", f"role {user.role} cannot undo verdicts")
    if rt.store.get_case(case_id, events=False) is None:
        raise Problem("not-found", f"no case {case_id!r}")
    try:
        result = take_back(rt, case_id, actor=user.actor, admin=user.role == "admin")
    except InputError as exc:
        raise Problem("conflict", exc.message) from exc
    rt.store.audit(actor=user.actor, action="verdict_undo", obj=f"case:{case_id}",
                   now=rt.clock.now_text(), detail={"undone": result["undone"]})
    return result


def account_settings(rt: Any, user: User) -> dict[str, Any]:
    """The account's wellbeing settings, defaults filled in."""
    return {**SETTINGS_DEFAULTS, **rt.store.user_settings(user.id)}


def save_settings(rt: Any, user: User, data: dict[str, Any]) -> dict[str, Any]:
    """Validate and store wellbeing settings (``blur`` 0-100, ``grey``, ``break_minutes``)."""
    unknown = set(data) - set(SETTINGS_DEFAULTS)
    if unknown:
        raise Problem("invalid-input", f"unknown setting(s): {', '.join(sorted(unknown))}")
    merged = account_settings(rt, user) | data
    blur, grey, pause = merged["blur"], merged["grey"], merged["break_minutes"]
    if not isinstance(blur, int) or isinstance(blur, bool) or not 0 <= blur <= 100:
        raise Problem("invalid-input", "blur: an integer from 0 to 100")
    if not isinstance(grey, bool):
        raise Problem("invalid-input", "grey: true or false")
    if not isinstance(pause, int) or isinstance(pause, bool) or not 0 <= pause <= 600:
        raise Problem("invalid-input", "break_minutes: an integer from 0 (none) to 600")
    rt.store.set_user_settings(user.id, merged, rt.clock.now_text())
    rt.store.audit(actor=user.actor, action="settings", obj=f"user:{user.name}",
                   now=rt.clock.now_text(), detail=merged)
    return merged


def disputed_cases(rt: Any, user: User) -> list[dict[str, Any]]:
    """The disputed list: both opinions per case (admins decide)."""
    if user.role != "admin":
        raise Problem("forbidden", "only admins decide disputed verdicts")
    out = []
    for case_id in rt.store.case_ids_with("disputed"):
        found = rt.store.get_case(case_id, events=False)
        if found is not None:
            out.append({"id": case_id, "url": found["canonical_url"],
                        "disputed": found.get("disputed")})
    return out


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
