"""ICCAM exchange state, written once for both backends: linked content, the export outbox.

Mixed into ``engine.store.sql.SQLStore``; the role interface is ``engine.store.roles.IccamStore``.

- ``iccam_items``: ICCAM content items linked to cases — imported (a partner's report assigned
  to our country: ids known at once) or exported (our report: ids known once ICCAM answered).
- ``iccam_outbox``: every export step (set a hotline reference, assess, an action, a hosting
  update, a country re-assignment, create a report) is a row keyed per (case, content, action):
  planning the same step twice inserts nothing. A sender claims due steps under a lease, marking
  them ``sending`` before the request leaves; a step found ``sending`` under a dead or expired
  lease is handed out with ``recover = 1`` so the sender checks ICCAM before sending again.
  Within one content item steps go out in ``seq`` order, one at a time; at most one final
  action per item exists (a unique index).
- ``iccam_errors``: import problems; the import cursor is the ``meta`` key ``iccam_import_since``.

Nothing here returns reporter data: case data never holds any.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine import clock
from engine.ids import new_id
from engine.store.sql_util import chunks, dumps

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from engine.store.dialect import Dialect

STEP_STATES = ("queued", "sending", "sent", "skipped", "failed", "in_doubt")
_CURSOR = "iccam_import_since"
_ITEM_COLUMNS = ("id", "case_id", "url", "origin", "is_source", "report_id", "content_id",
                 "assigned_country", "hosting_country", "hosting_ip", "partner",
                 "hosting_checked_at", "created_at", "updated_at")
_STEP_COLUMNS = ("id", "idempotency_key", "case_id", "item_id", "step", "action", "final",
                 "seq", "fact_at", "payload", "state", "attempts", "recover",
                 "next_attempt_at", "lease_owner", "lease_until", "created_at", "updated_at",
                 "sent_at", "error", "response")
# A step waits while an earlier step of the same content item is unfinished.
_EARLIER_OPEN = (
    "EXISTS (SELECT 1 FROM iccam_outbox p WHERE p.item_id = o.item_id AND p.id <> o.id"
    " AND p.state IN ('queued', 'sending', 'in_doubt') AND (p.seq < o.seq OR (p.seq = o.seq"
    " AND (p.fact_at < o.fact_at OR (p.fact_at = o.fact_at AND p.id < o.id)))))")
_DUE = ("((o.state = 'queued' AND o.next_attempt_at <= ?)"
        " OR (o.state = 'sending' AND (o.lease_until IS NULL OR o.lease_until < ?)))")


def _item(row: Any) -> dict[str, Any]:
    out = {c: row[c] for c in _ITEM_COLUMNS}
    out["partner"] = json.loads(out["partner"]) if out["partner"] else {}
    out["is_source"] = bool(out["is_source"])
    return out


def _step(row: Any) -> dict[str, Any]:
    out = {c: row[c] for c in _STEP_COLUMNS}
    out["payload"] = json.loads(out["payload"]) if out["payload"] else {}
    out["response"] = json.loads(out["response"]) if out["response"] else None
    out["final"] = bool(out["final"])
    out["recover"] = bool(out["recover"])
    return out


class SQLIccamMixin:
    """ICCAM methods of the SQL store."""

    if TYPE_CHECKING:  # provided by SQLStore; never defined here at run time (MRO)
        dialect: Dialect

        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self, sql: str, params: Any = ()) -> list[Any]: ...

        def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]: ...

        def _lock(self, conn: Any, name: str) -> None: ...

        def _clear_leases(self, column: str, values: Iterable[str], *, table: str = "cases",
                          owner: str | None = None) -> int: ...

    # -- import --------------------------------------------------------------------------------
    def iccam_import(self, batch_id: str, report: dict[str, Any], now: str) -> dict[str, Any]:
        """Open or link the case of one ICCAM report and link its content items (one
        transaction). ``report``: ``report_id``, ``source`` (``url``, ``canonical_url``,
        ``host``, ``domain``), ``contents`` (``content_id``, ``url``, ``is_source``,
        ``assigned_country``, ``hosting_country``, ``hosting_ip``, ``partner``), ``metadata``
        (report metadata) and ``case_data`` (the case's ``iccam`` field). Returns ``outcome``
        (``imported``: a new case, ``linked``: an open case of the URL, ``known``: already
        imported), ``case_id`` and ``new_contents``."""
        source = report["source"]
        contents = report["contents"]
        with self._write() as conn:
            self._lock(conn, "intake")
            wanted = [int(c["content_id"]) for c in contents]
            known: dict[int, str] = {}
            for chunk in chunks(wanted, self.dialect.max_in):
                where, params = self.dialect.in_list("content_id", chunk)
                for r in conn.execute(f"SELECT content_id, case_id FROM iccam_items WHERE"
                                      f" {where}", params):
                    known[int(r["content_id"])] = r["case_id"]
            source_id = next(int(c["content_id"]) for c in contents if c["is_source"])
            case_id = known.get(source_id) or next(iter(known.values()), None)
            if case_id is not None:
                outcome = "known"
            else:
                found = conn.execute("SELECT id FROM cases WHERE is_open = 1 AND"
                                     " canonical_url = ?", (source["canonical_url"],)).fetchone()
                if found is not None:
                    case_id, outcome = found["id"], "linked"
                else:
                    case_id, outcome = new_id("C"), "imported"
                    conn.execute(
                        "INSERT INTO cases(id, url, canonical_url, host, domain, state,"
                        " created_at, updated_at) VALUES (?,?,?,?,?,'new',?,?)",
                        (case_id, source["url"], source["canonical_url"], source["host"],
                         source["domain"], now, now))
                    conn.execute("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                                 " VALUES (?,?,'intake','iccam','created',?)",
                                 (case_id, now, dumps({"batch": batch_id})))
                conn.execute(
                    "INSERT INTO reports(case_id, batch_id, channel, received_at, raw_url,"
                    " metadata, duplicate, line) VALUES (?,?,'iccam',?,?,?,?,NULL)",
                    (case_id, batch_id, now, source["url"], dumps(report["metadata"]),
                     1 if outcome == "linked" else 0))
            fresh = [c for c in contents if int(c["content_id"]) not in known]
            for c in fresh:
                page = bool(c["is_source"])
                conn.execute(
                    "INSERT INTO items(case_id, url, kind, hashes, matches, created_at,"
                    " updated_at) VALUES (?,?,?,'{}','[]',?,?) ON CONFLICT(case_id, url)"
                    " DO NOTHING",
                    (case_id, source["canonical_url"] if page else c["url"],
                     "url" if page else "media", now, now))
                row = conn.execute(
                    "INSERT INTO iccam_items(case_id, url, origin, is_source, report_id,"
                    " content_id, assigned_country, hosting_country, hosting_ip, partner,"
                    " created_at, updated_at) VALUES (?,?,'import',?,?,?,?,?,?,?,?,?)"
                    " RETURNING id",
                    (case_id, c["url"], 1 if page else 0, int(report["report_id"]),
                     int(c["content_id"]), c.get("assigned_country"), c.get("hosting_country"),
                     c.get("hosting_ip"), dumps(c.get("partner") or {}), now, now)).fetchone()
                self._insert_step(conn, case_id=case_id, item_id=int(row["id"]),
                                  content_id=int(c["content_id"]), step="reference",
                                  action=None, seq=0, fact_at=now, now=now, payload={})
            # Listed again although linked: its reference is gone in ICCAM, so set it again
            # (a hotline reference is an idempotent PUT).
            for content_id in set(wanted) & set(known):
                conn.execute(
                    "UPDATE iccam_outbox SET state = 'queued', next_attempt_at = ?,"
                    " updated_at = ?, error = NULL WHERE idempotency_key = ?"
                    " AND state IN ('sent', 'failed')",
                    (now, now, f"{known[content_id]}:{content_id}:reference"))
            old = conn.execute("SELECT value FROM case_data WHERE case_id = ? AND key = 'iccam'",
                               (case_id,)).fetchone()
            data = json.loads(old["value"]) if old else {}
            reports = [r for r in data.get("reports", [])
                       if r.get("report_id") != report["report_id"]]
            data.update(report["case_data"])
            data["reports"] = [*reports, *report["case_data"].get("reports", [])]
            conn.execute("INSERT INTO case_data(case_id, key, value) VALUES (?, 'iccam', ?)"
                         " ON CONFLICT(case_id, key) DO UPDATE SET value = excluded.value",
                         (case_id, dumps(data)))
            if fresh:
                conn.execute(
                    "INSERT INTO events(case_id, at, stage, actor, action, detail)"
                    " VALUES (?,?,'iccam','iccam','iccam_imported',?)",
                    (case_id, now, dumps({"report": report["report_id"], "outcome": outcome,
                                          "contents": [int(c["content_id"]) for c in fresh]})))
        return {"outcome": outcome, "case_id": case_id, "new_contents": len(fresh)}

    def iccam_import_error(self, report_id: int | None, content_id: int | None, error: str,
                           now: str) -> None:
        """Record (or update) an import problem of one ICCAM report/content item."""
        with self._write() as conn:
            conn.execute("INSERT INTO iccam_errors(key, report_id, content_id, error, at)"
                         " VALUES (?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET"
                         " error = excluded.error, at = excluded.at",
                         (f"{report_id}#{content_id}", report_id, content_id, error, now))

    def iccam_clear_import_errors(self, report_id: int | None) -> None:
        """Forget the import problems of a report that has now been imported (``None``: the
        session problems, such as a refused login)."""
        with self._write() as conn:
            if report_id is None:
                conn.execute("DELETE FROM iccam_errors WHERE report_id IS NULL"
                             " AND content_id IS NULL")
            else:
                conn.execute("DELETE FROM iccam_errors WHERE report_id = ?", (report_id,))

    def iccam_cursor(self) -> str | None:
        """The start of the next import window (assignment date), if one is recorded."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (_CURSOR,))
        return rows[0]["value"] if rows else None

    def iccam_set_cursor(self, value: str) -> None:
        """Move the import window's start."""
        with self._write() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key)"
                         " DO UPDATE SET value = excluded.value", (_CURSOR, value))

    # -- export: planning ----------------------------------------------------------------------
    @staticmethod
    def _insert_step(conn: Any, *, case_id: str, item_id: int | None, content_id: int | None,
                     step: str, action: str | None, seq: int, fact_at: str, now: str,
                     payload: dict[str, Any], final: bool = False) -> bool:
        what = action or step
        key = f"{case_id}:{content_id}:{what}" if content_id is not None else f"{case_id}:{what}"
        cur = conn.execute(
            "INSERT INTO iccam_outbox(id, idempotency_key, case_id, item_id, step, action, final,"
            " seq, fact_at, payload, state, next_attempt_at, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,'queued',?,?,?) ON CONFLICT DO NOTHING",
            (new_id("X"), key, case_id, item_id, step, action, 1 if final else 0, seq, fact_at,
             dumps(payload), now, now, now))
        return cur.rowcount == 1

    def iccam_queue_report(self, case_id: str, now: str, payload: dict[str, Any]) -> bool:
        """Queue the creation of our ICCAM report for a case; False if it is queued already."""
        with self._write() as conn:
            return self._insert_step(conn, case_id=case_id, item_id=None, content_id=None,
                                     step="report", action=None, seq=0, fact_at=now, now=now,
                                     payload=payload)

    def iccam_plan(self, steps: Sequence[dict[str, Any]], now: str) -> int:
        """Insert planned item steps (``case_id``, ``item_id``, ``content_id``, ``step``,
        ``action``, ``seq``, ``fact_at``, ``payload``, ``final``); existing keys and a second
        final action of an item insert nothing. Returns how many were new."""
        added = 0
        with self._write() as conn:
            for s in steps:
                added += self._insert_step(
                    conn, case_id=s["case_id"], item_id=s["item_id"],
                    content_id=s["content_id"], step=s["step"], action=s.get("action"),
                    seq=s["seq"], fact_at=s["fact_at"], now=now, payload=s.get("payload") or {},
                    final=bool(s.get("final")))
        return added

    def iccam_open_items(self, country: str) -> list[dict[str, Any]]:
        """Content items we may still act on: linked, assigned to ``country``, without a final
        action step, their case not anonymised; each with ``case_state`` and ``steps``."""
        rows = self._read(
            f"SELECT {', '.join('i.' + c for c in _ITEM_COLUMNS)}, c.state AS case_state"
            " FROM iccam_items i JOIN cases c ON c.id = i.case_id"
            " WHERE i.content_id IS NOT NULL AND i.assigned_country = ?"
            " AND c.anonymised_at IS NULL AND NOT EXISTS (SELECT 1 FROM iccam_outbox f"
            " WHERE f.item_id = i.id AND f.final = 1) ORDER BY i.case_id, i.id", (country,))
        items = []
        for r in rows:
            item = _item(r)
            item["case_state"] = r["case_state"]
            items.append(item)
        steps = self._steps_of([i["id"] for i in items])
        for item in items:
            item["steps"] = steps.get(item["id"], [])
        return items

    def _steps_of(self, item_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for chunk in chunks(list(item_ids), self.dialect.max_in):
            where, params = self.dialect.in_list("item_id", chunk)
            for r in self._read(f"SELECT {', '.join(_STEP_COLUMNS)} FROM iccam_outbox"
                                f" WHERE {where} ORDER BY seq, fact_at, id", params):
                out.setdefault(int(r["item_id"]), []).append(_step(r))
        return out

    def iccam_notice_facts(self, case_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """When each case's first notice went out, per recipient kind: ``{case: {kind: at}}``."""
        out: dict[str, dict[str, str]] = {}
        for chunk in chunks(sorted(set(case_ids)), self.dialect.max_in):
            where, params = self.dialect.in_list("o.case_id", chunk)
            for r in self._read(
                    "SELECT o.case_id, n.recipient_kind, min(n.sent_at) AS sent_at FROM outbox o"
                    f" JOIN notices n ON n.id = o.notice_id WHERE n.state = 'sent' AND {where}"
                    " GROUP BY o.case_id, n.recipient_kind", params):
                out.setdefault(r["case_id"], {})[r["recipient_kind"]] = r["sent_at"]
        return out

    # -- export: our reports -------------------------------------------------------------------
    def iccam_link_export(self, case_id: str, urls: Sequence[dict[str, Any]], now: str) -> None:
        """Record the URLs our report for ``case_id`` sends (ids unknown until ICCAM answers)."""
        with self._write() as conn:
            for u in urls:
                conn.execute(
                    "INSERT INTO iccam_items(case_id, url, origin, is_source, hosting_country,"
                    " hosting_ip, partner, created_at, updated_at) VALUES"
                    " (?,?,'export',?,?,?,'{}',?,?) ON CONFLICT DO NOTHING",
                    (case_id, u["url"], 1 if u["is_source"] else 0, u.get("hosting_country"),
                     u.get("hosting_ip"), now, now))

    def iccam_report_created(self, step_id: str, *, owner: str, case_id: str, report_id: int,
                             now: str) -> bool:
        """Our report exists in ICCAM: the step is sent and the case's export items carry the
        report id (one transaction). False if the step's lease was lost."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE iccam_outbox SET state = 'sent', sent_at = ?, updated_at = ?,"
                " response = ?, error = NULL, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ? AND state = 'sending'",
                (now, now, dumps({"report_id": report_id}), step_id, owner))
            if cur.rowcount != 1:
                return False
            conn.execute("UPDATE iccam_items SET report_id = ?, updated_at = ? WHERE case_id = ?"
                         " AND origin = 'export' AND report_id IS NULL",
                         (report_id, now, case_id))
            conn.execute("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                         " VALUES (?,?,'iccam','iccam','iccam_reported',?)",
                         (case_id, now, dumps({"report": report_id})))
        return True

    def iccam_unread_reports(self) -> list[dict[str, Any]]:
        """Our reports whose content ids are not read back yet: ``case_id``, ``report_id``."""
        return [dict(r) for r in self._read(
            "SELECT DISTINCT case_id, report_id FROM iccam_items WHERE origin = 'export'"
            " AND report_id IS NOT NULL AND content_id IS NULL ORDER BY case_id")]

    def iccam_report_read(self, case_id: str, report_id: int,
                          contents: Sequence[dict[str, Any]], now: str) -> int:
        """Store what ICCAM made of our report: per URL (matched exactly) its ``content_id``,
        ``assigned_country``, ``hosting_country`` and ``hosting_ip``. Returns the matches."""
        matched = 0
        with self._write() as conn:
            for c in contents:
                matched += conn.execute(
                    "UPDATE iccam_items SET content_id = ?, assigned_country = ?,"
                    " hosting_country = ?, hosting_ip = ?, updated_at = ? WHERE case_id = ?"
                    " AND origin = 'export' AND report_id = ? AND url = ? AND content_id IS NULL",
                    (int(c["content_id"]), c.get("assigned_country"), c.get("hosting_country"),
                     c.get("hosting_ip"), now, case_id, report_id, c["url"])).rowcount
        return matched

    def iccam_update_item(self, item_id: int, now: str, **fields: Any) -> None:
        """Change an item's ``assigned_country``, ``hosting_country``, ``hosting_ip`` or
        ``hosting_checked_at``."""
        allowed = {"assigned_country", "hosting_country", "hosting_ip", "hosting_checked_at"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        sets = ", ".join(f"{k} = ?" for k in sorted(fields))
        with self._write() as conn:
            conn.execute(f"UPDATE iccam_items SET {sets}, updated_at = ? WHERE id = ?",
                         (*[fields[k] for k in sorted(fields)], now, item_id))

    # -- export: sending -----------------------------------------------------------------------
    def iccam_claim(self, *, owner: str, limit: int, now: str, lease_seconds: float,
                    steps: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due steps (of the kinds in ``steps``, if given), each the
        first unfinished one of its content item, marking them ``sending`` and counting the
        attempt (committed before any request).
        A step taken over from a dead or expired lease comes with ``recover`` true. Each dict
        carries the step's columns and ``item`` (the linked content, None for a report)."""
        if limit <= 0:
            return []
        until = clock.fmt(clock.parse(now) + timedelta(seconds=lease_seconds))
        kinds, kind_params = self.dialect.in_list("o.step", list(steps)) if steps else ("1 = 1",
                                                                                         [])
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE iccam_outbox SET recover = CASE WHEN state = 'sending' THEN 1 ELSE 0 END,"
                " state = 'sending', attempts = attempts + 1, lease_owner = ?, lease_until = ?,"
                " updated_at = ? WHERE id IN (SELECT o.id FROM iccam_outbox o"
                f" WHERE {_DUE} AND {kinds} AND NOT {_EARLIER_OPEN}"
                f" ORDER BY o.next_attempt_at, o.id LIMIT ?{self.dialect.skip_locked})"
                f" RETURNING {', '.join(_STEP_COLUMNS)}",
                (owner, until, now, now, now, *kind_params, limit)).fetchall()
            claimed = [_step(r) for r in rows]
            ids = sorted({s["item_id"] for s in claimed if s["item_id"] is not None})
            items: dict[int, dict[str, Any]] = {}
            for chunk in chunks(ids, self.dialect.max_in):
                where, params = self.dialect.in_list("id", chunk)
                for r in conn.execute(f"SELECT {', '.join(_ITEM_COLUMNS)} FROM iccam_items"
                                      f" WHERE {where}", params):
                    items[int(r["id"])] = _item(r)
        for s in claimed:
            s["item"] = items.get(s["item_id"]) if s["item_id"] is not None else None
        return sorted(claimed, key=lambda s: (s["case_id"] or "", s["seq"], s["fact_at"], s["id"]))

    def iccam_finish(self, step_id: str, *, owner: str, now: str, state: str,
                     response: Any = None, error: str | None = None) -> bool:
        """End a leased step: ``sent``, ``skipped`` (nothing to send, with why), ``failed``
        (permanent, ICCAM's text) or ``in_doubt`` (cannot tell whether ICCAM got it). A trail
        event goes on the case. False if the lease was lost."""
        if state not in ("sent", "skipped", "failed", "in_doubt"):
            raise ValueError(f"not a final step state: {state}")
        with self._write() as conn:
            row = conn.execute(
                "UPDATE iccam_outbox SET state = ?, sent_at = coalesce(?, sent_at),"
                " updated_at = ?, response = ?, error = ?,"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ? AND state = 'sending'"
                " RETURNING case_id, step, action, item_id",
                (state, now if state == "sent" else None, now,
                 dumps(response) if response is not None else None,
                 error, step_id, owner)).fetchone()
            if row is None:
                return False
            if row["case_id"] is not None and not (row["step"] == "reference"
                                                   and state == "sent"):
                detail: dict[str, Any] = {"step": row["step"], "state": state}
                if row["action"]:
                    detail["action"] = row["action"]
                if error:
                    detail["error"] = error
                conn.execute("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                             " VALUES (?,?,'iccam','iccam','iccam_export',?)",
                             (row["case_id"], now, dumps(detail)))
        return True

    def iccam_retry(self, step_id: str, *, owner: str, now: str, next_attempt_at: str,
                    error: str) -> bool:
        """Requeue a leased step for ``next_attempt_at`` after a transient failure."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE iccam_outbox SET state = 'queued', next_attempt_at = ?, error = ?,"
                " updated_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ? AND state = 'sending'",
                (next_attempt_at, error, now, step_id, owner)).rowcount == 1

    def iccam_lease_owners(self) -> list[str]:
        """Owners holding export-step leases."""
        return [r["lease_owner"] for r in self._read(
            "SELECT DISTINCT lease_owner FROM iccam_outbox WHERE lease_owner IS NOT NULL")]

    def iccam_release_owners(self, owners: Iterable[str]) -> int:
        """Drop the leases of dead owners: their ``sending`` steps are claimable at once."""
        return self._clear_leases("lease_owner", owners, table="iccam_outbox")

    def iccam_due(self, now: str) -> int:
        """Export steps due now (what a claim could take, ordering aside)."""
        rows = self._read(f"SELECT count(*) AS n FROM iccam_outbox o WHERE {_DUE}", (now, now))
        return int(rows[0]["n"])

    def iccam_resolve(self, case_id: str, *, now: str, report_id: int | None) -> bool:
        """Settle a report step left ``in_doubt`` (or ``failed``): with ``report_id`` (the
        report ICCAM does hold) it counts as sent; without, it is queued to be sent again."""
        with self._write() as conn:
            if report_id is None:
                return conn.execute(
                    "UPDATE iccam_outbox SET state = 'queued', next_attempt_at = ?,"
                    " updated_at = ?, error = NULL WHERE case_id = ? AND step = 'report'"
                    " AND state IN ('in_doubt', 'failed')", (now, now, case_id)).rowcount == 1
            cur = conn.execute(
                "UPDATE iccam_outbox SET state = 'sent', sent_at = ?, updated_at = ?,"
                " response = ?, error = NULL WHERE case_id = ? AND step = 'report'"
                " AND state IN ('in_doubt', 'failed')",
                (now, now, dumps({"report_id": report_id, "resolved": True}), case_id))
            if cur.rowcount != 1:
                return False
            conn.execute("UPDATE iccam_items SET report_id = ?, updated_at = ? WHERE case_id = ?"
                         " AND origin = 'export' AND content_id IS NULL",
                         (report_id, now, case_id))
        return True

    # -- reading -------------------------------------------------------------------------------
    def iccam_case(self, case_id: str) -> dict[str, Any]:
        """A case's ICCAM links and export steps: ``{"items": [...], "steps": [...]}``."""
        items = [_item(r) for r in self._read(
            f"SELECT {', '.join(_ITEM_COLUMNS)} FROM iccam_items WHERE case_id = ? ORDER BY id",
            (case_id,))]
        steps = [_step(r) for r in self._read(
            f"SELECT {', '.join(_STEP_COLUMNS)} FROM iccam_outbox WHERE case_id = ?"
            " ORDER BY created_at, seq, id", (case_id,))]
        return {"items": items, "steps": steps}

    def iccam_problems(self) -> list[dict[str, Any]]:
        """Failed and in-doubt export steps and import problems, oldest first."""
        out = []
        for r in self._read(
                "SELECT o.id, o.case_id, o.step, o.action, o.state, o.attempts, o.error,"
                " o.updated_at, i.report_id, i.content_id FROM iccam_outbox o LEFT JOIN"
                " iccam_items i ON i.id = o.item_id WHERE o.state IN ('failed', 'in_doubt')"
                " ORDER BY o.updated_at, o.id"):
            out.append({"kind": "export", "step_id": r["id"], "case_id": r["case_id"],
                        "step": r["step"], "action": r["action"], "state": r["state"],
                        "attempts": r["attempts"], "report_id": r["report_id"],
                        "content_id": r["content_id"], "error": r["error"],
                        "at": r["updated_at"]})
        for r in self._read("SELECT * FROM iccam_errors ORDER BY at, key"):
            out.append({"kind": "import", "step_id": None, "case_id": None, "step": "import",
                        "action": None, "state": "failed", "attempts": None,
                        "report_id": r["report_id"], "content_id": r["content_id"],
                        "error": r["error"], "at": r["at"]})
        return out

    def iccam_counts(self) -> dict[str, int]:
        """Export steps per state."""
        return {r["state"]: int(r["n"]) for r in self._read(
            "SELECT state, count(*) AS n FROM iccam_outbox GROUP BY state ORDER BY state")}

    def stats_iccam_facts(self, start: str, end: str) -> list[dict[str, Any]]:
        """Per case first reported in [start, end) that is linked to ICCAM or was resolved:
        ``created_at``, hosting ``country`` (the resolution's, else ICCAM's), ``origin``
        (``import``, ``export`` or ``None``), ``iccam_reported_at`` (our report's creation),
        ``first_notice_at``, ``removed_at``. No identifiers."""
        country = self.dialect.json_text("r.value", "country")
        removed = self.dialect.json_text("mo.value", "removed_at")
        return self.query(
            f"SELECT c.created_at, coalesce({country}, ii.country) AS country, ii.origin,"
            " rep.sent_at AS iccam_reported_at, fs.first_sent AS first_notice_at,"
            f" {removed} AS removed_at"
            " FROM cases c"
            " LEFT JOIN (SELECT case_id, min(origin) AS origin, min(hosting_country) AS country"
            "  FROM iccam_items GROUP BY case_id) ii ON ii.case_id = c.id"
            " LEFT JOIN (SELECT case_id, min(sent_at) AS sent_at FROM iccam_outbox"
            "  WHERE step = 'report' AND state = 'sent' GROUP BY case_id) rep"
            "  ON rep.case_id = c.id"
            " LEFT JOIN (SELECT o.case_id, min(n.sent_at) AS first_sent FROM outbox o"
            "  JOIN notices n ON n.id = o.notice_id WHERE n.sent_at IS NOT NULL"
            "  AND o.case_id IS NOT NULL GROUP BY o.case_id) fs ON fs.case_id = c.id"
            " LEFT JOIN case_data r ON r.case_id = c.id AND r.key = 'resolution'"
            " LEFT JOIN case_data mo ON mo.case_id = c.id AND mo.key = 'monitoring'"
            " WHERE c.created_at >= ? AND c.created_at < ?"
            " AND (ii.case_id IS NOT NULL OR r.value IS NOT NULL)",
            (start, end))
