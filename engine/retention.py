"""Keeping the privacy statement's promises: feedback, purge, retention, data-subject requests.

- Chat-reporter data is deleted as soon as its report is processed (a verdict or a trusted-list
  decision) and feedback is given, and in any case ``[retention] reporter_max_hours`` (default 24)
  after processing — unless the record is *restricted* by a data-subject request.
- Finished cases (closed, removed, dismissed, failed) are anonymised after
  ``[retention] anonymise_after_days``; every case after ``max_case_days``: URLs reduced to the
  registrable domain, free text removed; hashes, categories, timings and routing outcomes stay for
  statistics. Then the database is vacuumed (with ``secure_delete``) and the WAL truncated so
  deleted values leave no trace in the files.
- Every view, export, change or erasure of personal data is written to the audit log — who, what,
  when, which object; never the personal values themselves.
"""

from __future__ import annotations

import getpass
from typing import Any

from engine.config import Option, positive
from engine.errors import InputError
from engine.plugin_manager import call_all_sync

SCHEMA: dict[str, dict[str, Option]] = {
    "retention": {
        "reporter_max_hours": Option(type=float, default=24.0, check=positive,
                                     help="delete chat-reporter data this long after processing"),
        "anonymise_after_days": Option(type=float, default=7.0, check=positive,
                                       help="anonymise finished cases after this many days"),
        "max_case_days": Option(type=float, default=365.0, check=positive,
                                help="anonymise any case after this many days"),
        "purge_interval_minutes": Option(type=float, default=60.0, check=positive,
                                         help="how often `ntd run --daemon` purges"),
    },
}


def actor_name(explicit: str | None = None) -> str:
    """Who is acting: ``--analyst``/``$NTD_ANALYST`` or the OS user."""
    return f"analyst:{explicit or getpass.getuser()}"


def vault_for(rt: Any) -> Any:
    """The reporter vault (``engine.privacy.ReporterVault``) of a runtime's store."""
    # deferred: pulls in cryptography, loaded on first use
    from engine.privacy import ReporterVault, load_master_key

    return ReporterVault(load_master_key(getattr(rt.store, "path", None)))


def send_feedback(rt: Any) -> dict[str, int]:
    """Offer every due feedback to ``ntd_send_feedback`` plugins; mark what they sent."""
    due = rt.store.feedback_due()
    vault = vault_for(rt) if due else None
    sent = 0
    by_case: dict[str, list[dict[str, Any]]] = {}
    for record in due:
        by_case.setdefault(record["case_id"], []).append(record)
    for case_id in by_case:
        reporters = rt.store.reporters(case_id=case_id)
        case = rt.store.get_case(case_id, events=False) or {}
        outcome = {"state": case.get("state")}
        for rec in reporters:
            if rec["feedback_sent_at"] or rec["restricted"] or vault is None:
                continue
            contact = vault.open(rec["sealed"], rec["wrapped_key"], rec["id"])
            answers = call_all_sync(rt.pm, "ntd_send_feedback", reporter=contact,
                                    app=rec["app"], case_id=case_id, outcome=outcome)
            if any(answer is True for answer, _ in answers):
                sent += rt.store.feedback_sent(case_id, rt.clock.now_text())
                rt.store.audit(actor="engine", action="feedback_sent", obj=f"case:{case_id}",
                               now=rt.clock.now_text())
    return {"due": len(due), "sent": sent}


def purge(rt: Any, *, dry_run: bool = False) -> dict[str, int]:
    """Delete reporter data and anonymise cases past their periods; vacuum afterwards."""
    settings = rt.config.section("retention")
    now = rt.clock.now_text()
    reporters = rt.store.purge_reporters(now=now, max_hours=settings["reporter_max_hours"],
                                         dry_run=dry_run)
    cases = rt.store.anonymise_cases(now=now, closed_days=settings["anonymise_after_days"],
                                     max_days=settings["max_case_days"], dry_run=dry_run)
    if not dry_run and (reporters or cases):
        rt.store.audit(actor="engine", action="purge", obj="retention", now=now,
                       detail={"reporters_purged": reporters, "cases_anonymised": cases})
        rt.store.vacuum()
    return {"reporters_purged": reporters, "cases_anonymised": cases}


def find_reporters(rt: Any, *, phone: str | None, username: str | None) -> list[dict[str, Any]]:
    """Reporter records of a data subject, by phone number or username."""
    if not phone and not username:
        raise InputError("give --phone or --username")
    vault = vault_for(rt)
    return rt.store.reporters(
        phone_mac=vault.mac("phone", phone) if phone else None,
        username_mac=vault.mac("username", username) if username else None)


def dsr_export(rt: Any, *, phone: str | None, username: str | None,
               actor: str) -> list[dict[str, Any]]:
    """Everything held about a reporter (decrypted), for a data-subject access request."""
    vault = vault_for(rt)
    out = []
    for rec in find_reporters(rt, phone=phone, username=username):
        data = vault.open(rec["sealed"], rec["wrapped_key"], rec["id"])
        case = rt.store.get_case(rec["case_id"], events=False) or {}
        out.append({"record": rec["id"], "reported_at": rec["created_at"], "app": rec["app"],
                    "reporter": data, "contact_police": bool(rec["contact_police"]),
                    "restricted": bool(rec["restricted"]),
                    "feedback_sent_at": rec["feedback_sent_at"],
                    "report": {"case": rec["case_id"], "url": case.get("url"),
                               "state": case.get("state")}})
    rt.store.audit(actor=actor, action="dsr_export", obj="reporter",
                   now=rt.clock.now_text(), detail={"records": [r["record"] for r in out]})
    return out


def dsr_erase(rt: Any, *, phone: str | None, username: str | None, actor: str) -> int:
    """Erase a reporter's records (keys first: shredding), then vacuum."""
    ids = [r["id"] for r in find_reporters(rt, phone=phone, username=username)]
    erased = rt.store.erase_reporters(ids) if ids else 0
    rt.store.audit(actor=actor, action="dsr_erase", obj="reporter", now=rt.clock.now_text(),
                   detail={"records": ids})
    if erased:
        rt.store.vacuum()
    return erased


def dsr_restrict(rt: Any, *, phone: str | None, username: str | None, actor: str,
                 lift: bool = False) -> int:
    """Freeze (or unfreeze) processing of a reporter's records."""
    ids = [r["id"] for r in find_reporters(rt, phone=phone, username=username)]
    changed = rt.store.restrict_reporters(ids, not lift) if ids else 0
    rt.store.audit(actor=actor, action="dsr_unrestrict" if lift else "dsr_restrict",
                   obj="reporter", now=rt.clock.now_text(), detail={"records": ids})
    return changed
