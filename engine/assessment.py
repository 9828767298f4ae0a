"""Analyst verdicts: the one place that moves a case out of ``awaiting_assessment``.

Used by ``ntd verdict``, ``POST /api/cases/{id}/verdict``, ``POST /api/verdicts`` and the
console, so all record the same trail, the same ``assessment`` field and call the same
``ntd_verdict_recorded`` hook (``learn``). What is here:

* the ICCAM-compatible **classification** (class, age, gender, three flags; nothing has a
  default) and a hotline's own questions (``[assessment.questions]``), stored with the verdict;
* **bulk** verdicts (:func:`record_verdicts`): one transaction, a trail event per case, skipped
  cases listed with the reason;
* **learning** that empties the queue: a verdict with ``learn`` checks every waiting case
  against what was learned and sends those that may now match back to the match stage
  (:func:`rematch_after_learning`); a ``hashlist import`` sends every waiting case
  (:func:`rematch_waiting`);
* **undo** within ``[assessment] undo_minutes`` while no notice has been queued;
* **four eyes** (``[assessment] verify``): a verdict waits for a second analyst (never the
  same account); a disagreement puts the case on the ``disputed`` list for an admin.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from engine import clock as clocks
from engine.config import Option, non_negative, positive
from engine.errors import InputError
from engine.media.signals import PERCEPTUAL_TYPES
from engine.plugin_manager import call_all_sync

VERDICTS = ("illegal", "not_illegal", "ignore")
CLASSES = ("baseline", "national", "doubtful")
AGES = ("ND", "IN", "PP", "PU")  # not determined, infant, pre-pubescent, pubescent
GENDERS = ("UN", "FE", "MA", "BO")  # unknown, female, male, both
FLAGS = ("virtual", "user_generated", "child_modelling")
CLASSIFICATION_FIELDS = ("class", "age", "gender", *FLAGS)
WAITING = "awaiting_assessment"
# States a verdict may be undone from (as long as nothing was queued for sending).
UNDOABLE = ("confirmed", "dismissed", "resolved", "unresolved", "routed", "awaiting_routing",
            "failed")
MAX_ANSWER = 500


def _verify_setting(value: Any) -> str | None:
    if value in ("none", "all"):
        return None
    if isinstance(value, str) and value.startswith("sample:"):
        try:
            share = float(value[7:])
        except ValueError:
            return "sample:F needs a number F between 0 and 1"
        return None if 0 < share <= 1 else "sample:F needs 0 < F <= 1"
    return 'must be "none", "all" or "sample:F" (0 < F <= 1)'


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a question's text"


SCHEMA: dict[str, dict[str, Option]] = {
    "assessment": {
        "group_pdq_radius": Option(type=int, default=16, check=non_negative,
                                   help="PDQ distance within which waiting images form one "
                                        "group in the queue"),
        "undo_minutes": Option(type=float, default=15.0, check=non_negative,
                               help="how long a verdict may be undone (while no notice has "
                                    "been queued)"),
        "verify": Option(type=str, default="none", check=_verify_setting,
                         help='second opinion: "none", "all" or "sample:0.1" (a share)'),
        "preview_per_minute": Option(type=int, default=240, check=positive,
                                     help="previews one account may open per minute"),
        "preview_cache_mb": Option(type=int, default=32, check=non_negative,
                                   help="memory for rendered previews (never on disk)"),
        "preview_cache_minutes": Option(type=float, default=10.0, check=non_negative,
                                        help="how long a rendered preview is kept in memory"),
    },
    # The hotline's own questions: key = "the question's text"; answers go with the verdict.
    "assessment.questions": {"*": Option(type=str, check=_text, help="a question's text")},
}


# -- validation ----------------------------------------------------------------------------------
def check_classification(value: Any, *, required: bool) -> dict[str, Any] | None:
    """A complete classification, or None when absent and not ``required``; ``InputError``
    naming the field otherwise. Nothing has a default: every field must be given."""
    if value is None:
        if required:
            raise InputError("classification: required for an 'illegal' verdict (class, age, "
                             "gender, virtual, user_generated, child_modelling)")
        return None
    if not isinstance(value, dict):
        raise InputError("classification: expected an object")
    unknown = set(value) - set(CLASSIFICATION_FIELDS)
    if unknown:
        raise InputError(f"classification: unknown field(s) {', '.join(sorted(unknown))}")
    for name, allowed in (("class", CLASSES), ("age", AGES), ("gender", GENDERS)):
        if value.get(name) not in allowed:
            raise InputError(f"classification.{name}: expected one of {', '.join(allowed)}")
    for name in FLAGS:
        if not isinstance(value.get(name), bool):
            raise InputError(f"classification.{name}: expected true or false")
    return {k: value[k] for k in CLASSIFICATION_FIELDS}


def check_answers(rt: Any, answers: Any) -> dict[str, Any]:
    """Answers to ``[assessment.questions]`` (keys must be configured questions)."""
    if answers is None:
        return {}
    questions = rt.config.section("assessment.questions")
    if not isinstance(answers, dict):
        raise InputError("answers: expected an object of question key -> answer")
    for key, answer in answers.items():
        if key not in questions:
            raise InputError(f"answers: no question {key!r} in [assessment.questions]")
        if not isinstance(answer, (bool, str)) or (isinstance(answer, str)
                                                   and len(answer) > MAX_ANSWER):
            raise InputError(f"answers.{key}: true, false or a text of at most {MAX_ANSWER}")
    return dict(answers)


def _needs_second_opinion(rt: Any, case_id: str) -> bool:
    setting = rt.config.get("assessment", "verify", "none")
    if setting == "all":
        return True
    if setting.startswith("sample:"):
        # Deterministic per case: the same case is always sampled the same way.
        draw = int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return draw < float(setting[7:])
    return False


# -- verdicts ------------------------------------------------------------------------------------
def record_verdict(rt: Any, case_id: str, *, verdict: str, actor: str,
                   category: str | None = None, note: str | None = None,
                   learn: bool = False, classification: dict[str, Any] | None = None,
                   answers: dict[str, Any] | None = None, admin: bool = False) -> dict[str, Any]:
    """Commit one analyst's verdict and tell plugins; returns ``ntd verdict --json``'s object.

    Raises ``InputError`` if the case does not exist or is not awaiting assessment (or the
    verdict cannot be taken, e.g. the same account's verdict awaits a second opinion).
    """
    result = record_verdicts(rt, [case_id], verdict=verdict, actor=actor, category=category,
                             note=note, learn=learn, classification=classification,
                             answers=answers, admin=admin)
    if result["skipped"]:
        reason = result["skipped"][0]["reason"]
        if reason == "not_found":
            raise InputError(f"no case {case_id!r}")
        if reason.startswith("state:"):
            raise InputError(f"case {case_id} is {reason[6:]}; this needs one of: {WAITING}")
        raise InputError(f"case {case_id}: {reason.replace('_', ' ')}")
    state = rt.store.get_case(case_id, events=False)["state"]
    out = {"id": case_id, "state": state, "verdict": verdict, "actor": actor}
    if case_id in result["pending"]:
        out["pending_second_opinion"] = True
    if case_id in result["disputed"]:
        out["disputed"] = True
    return out


def record_verdicts(rt: Any, case_ids: list[str], *, verdict: str, actor: str,
                    classification: dict[str, Any] | None = None,
                    answers: dict[str, Any] | None = None, note: str | None = None,
                    learn: bool = False, category: str | None = None,
                    admin: bool = False) -> dict[str, Any]:
    """One verdict on several cases in one transaction, a trail event per case.

    Returns ``{"recorded": N, "skipped": [{"case", "reason"}], "pending": [ids],
    "disputed": [ids], "rematched": M}``: ``pending`` are verdicts now waiting for a second
    analyst, ``disputed`` cases where the second disagreed (an admin decides)."""
    if verdict not in VERDICTS:
        raise InputError(f"verdict: expected one of {', '.join(VERDICTS)}")
    classification = check_classification(
        classification, required=verdict == "illegal" and not category)
    if classification and verdict != "illegal":
        raise InputError("classification: only for an 'illegal' verdict")
    if learn and verdict == "ignore":
        raise InputError("learn: an 'ignore' verdict teaches nothing")
    answers = check_answers(rt, answers)
    category = (classification or {}).get("class") or category
    now = rt.clock.now_text()
    final_state = "confirmed" if verdict == "illegal" else "dismissed"
    opinion = {"verdict": verdict, "category": category, "classification": classification,
               "answers": answers or None, "note": note, "learn": learn, "by": actor,
               "at": now}
    moves: list[dict[str, Any]] = []
    befores: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    skipped: list[dict[str, str]] = []
    for case_id in dict.fromkeys(case_ids):
        try:
            before = rt.store.load_case(case_id)
        except InputError:
            skipped.append({"case": case_id, "reason": "not_found"})
            continue
        pending = before.data.get("pending_verdict")
        disputed = before.data.get("disputed")
        detail: dict[str, Any] = {"verdict": verdict, "learn": learn}
        for key, value in (("category", category), ("classification", classification),
                           ("answers", answers or None), ("note", note)):
            if value:
                detail[key] = value
        move = {"case_id": case_id, "stage": "assessment", "actor": actor,
                "expect": [WAITING], "detail": detail}
        if disputed and not admin:
            skipped.append({"case": case_id, "reason": "disputed_admin_decides"})
            continue
        if pending and not disputed:
            if pending.get("by") == actor:
                skipped.append({"case": case_id, "reason": "awaits_another_analyst"})
                continue
            agrees = (pending.get("verdict") == verdict
                      and pending.get("category") == category)
            if not agrees:
                move.update(state=WAITING, action="disputed",
                            data={"pending_verdict": None,
                                  "disputed": {"first": pending, "second": opinion}})
                kinds[case_id] = "disputed"
                moves.append(move)
                befores[case_id] = before
                continue
            detail["verified"] = pending.get("by")
        elif not disputed and _needs_second_opinion(rt, case_id):
            move.update(state=WAITING, action="verdict_pending",
                        data={"pending_verdict": opinion})
            kinds[case_id] = "pending"
            moves.append(move)
            befores[case_id] = before
            continue
        assessment = {"verdict": verdict, "category": category, "by": actor, "at": now}
        if classification:
            assessment["classification"] = classification
        if answers:
            assessment["answers"] = answers
        if pending and not disputed:
            assessment["verified_by"] = actor
            assessment["by"] = pending.get("by")
        data: dict[str, Any] = {"assessment": assessment}
        if pending:
            data["pending_verdict"] = None
        if disputed:
            data["disputed"] = None
            detail["resolved_dispute"] = True
        move.update(state=final_state, action="verdict", data=data)
        kinds[case_id] = "final"
        moves.append(move)
        befores[case_id] = before
    outcome = rt.store.move_cases(moves, now) if moves else []
    recorded = 0
    pending_ids: list[str] = []
    disputed_ids: list[str] = []
    for move, why in zip(moves, outcome, strict=True):
        case_id = str(move["case_id"])
        if why is not None:
            skipped.append({"case": case_id, "reason": why})
            continue
        recorded += 1
        if kinds[case_id] == "pending":
            pending_ids.append(case_id)
        elif kinds[case_id] == "disputed":
            disputed_ids.append(case_id)
        else:
            call_all_sync(rt.pm, "ntd_verdict_recorded", case=befores[case_id],
                          verdict=verdict, category=category, learn=learn, actor=actor,
                          store=rt.store, now=now)
    rematched = 0
    learned = [m["case_id"] for m, why in zip(moves, outcome, strict=True)
               if why is None and kinds[m["case_id"]] == "final"]
    if learn and learned:
        rematched = rematch_after_learning(rt, [befores[c] for c in learned], actor=actor)
    return {"recorded": recorded, "skipped": skipped, "pending": pending_ids,
            "disputed": disputed_ids, "rematched": rematched}


def rematch_waiting(rt: Any, *, actor: str, reason: str) -> int:
    """Send every waiting case back to the match stage (``hashlist import``, ``learn``): the
    copies of what was just learned leave the queue without a human looking at them — at once
    in a running ``ntd run``, otherwise at the next run. Returns how many were sent."""
    return int(rt.store.rematch_waiting(now=rt.clock.now_text(), actor=actor, reason=reason))


def rematch_after_learning(rt: Any, learned: list[Any], *, actor: str) -> int:
    """After a verdict with ``learn``: every waiting case is checked against what was just
    learned (the items' SHA-256, and PDQ/pHash within twice the match radius), and those that
    may now match go back to the match stage, which decides as always. The others would match
    nothing new, so they stay where the analyst sees them."""
    sha = set()
    perceptual: dict[str, list[int]] = {"pdq": [], "phash": []}
    for case in learned:
        for item in case.items:
            if item.hashes.get("sha256"):
                sha.add(item.hashes["sha256"])
            for kind, values in perceptual.items():
                if item.hashes.get(kind):
                    values.append(int(item.hashes[kind], 16))
    radius = {t.name: 2 * int(rt.config.get("match", f"{t.name}_radius", t.default_radius))
              for t in PERCEPTUAL_TYPES if t.name in perceptual}
    learned_ids = {c.id for c in learned}
    candidates = []
    for row in rt.store.waiting_signals():
        if row["case"] in learned_ids:
            continue
        near = row["sha256"] in sha
        for kind, values in perceptual.items():
            if near or not row.get(kind) or not values:
                continue
            try:
                value = int(row[kind], 16)
            except ValueError:
                continue
            near = any((value ^ v).bit_count() <= radius[kind] for v in values)
        if near:
            candidates.append(row["case"])
    if not candidates:
        return 0
    return int(rt.store.rematch_waiting(now=rt.clock.now_text(), actor=actor,
                                        reason="learned", only=candidates))


# -- undo ----------------------------------------------------------------------------------------
def undo_verdict(rt: Any, case_id: str, *, actor: str, admin: bool = False) -> dict[str, Any]:
    """Take back the last verdict on a case within ``[assessment] undo_minutes`` while no
    notice has been queued: the case waits for assessment again, what it taught the analyst
    lists is forgotten, and both events stay in the trail. ``InputError`` says why not."""
    found = rt.store.get_case(case_id)
    if found is None:
        raise InputError(f"no case {case_id!r}")
    verdicts = [e for e in found["events"] if e["action"] in ("verdict", "verdict_undone")]
    if not verdicts or verdicts[-1]["action"] != "verdict":
        raise InputError(f"case {case_id} has no verdict to undo")
    last = verdicts[-1]
    if last["actor"] != actor and not admin:
        raise InputError(f"the verdict on {case_id} was recorded by {last['actor']}; only "
                         "that analyst or an admin may undo it")
    minutes = rt.config.get("assessment", "undo_minutes", 15.0)
    age = clocks.parse(rt.clock.now_text()) - clocks.parse(last["at"])
    if minutes <= 0 or age > timedelta(minutes=minutes):
        raise InputError(f"the verdict on {case_id} is older than {minutes:g} minutes "
                         "([assessment] undo_minutes)")
    if found["state"] not in UNDOABLE or rt.store.notices_queued(case_id):
        raise InputError(f"case {case_id} is {found['state']} and a notice may already be "
                         "queued: too late to undo")
    forgotten = rt.store.remove_learned(case_id) if last["detail"].get("learn") else 0
    [why] = rt.store.move_cases([{
        "case_id": case_id, "state": WAITING, "stage": "assessment", "actor": actor,
        "action": "verdict_undone", "expect": list(UNDOABLE),
        "detail": {"undid": last["detail"].get("verdict"), "of": last["actor"],
                   "forgotten_entries": forgotten},
        "data": {"assessment": None}}], rt.clock.now_text())
    if why is not None:
        raise InputError(f"case {case_id}: cannot undo ({why})")
    return {"id": case_id, "state": WAITING, "undone": last["detail"].get("verdict"),
            "forgotten_entries": forgotten}
