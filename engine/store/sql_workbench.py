"""The analyst's workbench in the SQL store (both backends): the waiting cases' signals for
grouping, several verdict moves in one transaction, re-matching the queue, undo's checks,
learned entries, and each account's wellbeing settings (migration 11).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from engine.errors import InputError
from engine.models import CLOSED_STATES
from engine.store.sql_util import chunks, dumps, insert_rows

if TYPE_CHECKING:
    from engine.store.dialect import Dialect

WAITING = "awaiting_assessment"
LEARNED_LISTS = ("analyst", "analyst-benign")


class SQLWorkbenchMixin:
    """Workbench queries of :class:`engine.store.sql.SQLStore`."""

    dialect: Dialect
    if TYPE_CHECKING:
        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        def _transact(self, fn: Callable[[Any], Any]) -> Any: ...

        def _write_effects(self, conn: Any, case_id: str, now: str, *, stage: str,
                           actor: str, action: str, reason: str | None,
                           detail: dict[str, Any], data: dict[str, Any] | None = None) -> None:
            ...

        @staticmethod
        def _bump_generation(conn: Any) -> None: ...

    # -- the queue -----------------------------------------------------------------------------
    def queue_version(self) -> tuple[int, str]:
        """(number of waiting cases, newest change among them): a cheap cache key."""
        rows = self._read("SELECT count(*) AS n, max(updated_at) AS at FROM cases"
                          " WHERE state = ?", (WAITING,))
        return int(rows[0]["n"] or 0), str(rows[0]["at"] or "")

    def waiting_ids(self) -> list[str]:
        """Ids of the cases waiting for assessment."""
        return [r["id"] for r in self._read("SELECT id FROM cases WHERE state = ?", (WAITING,))]

    def waiting_signals(self) -> list[dict[str, Any]]:
        """One row per item of every waiting case, oldest case first: the case's times and
        first report's channel, the item's index in the case, kind, type, SHA-256, PDQ, pHash,
        matches and whether a verdict awaits a second opinion."""
        d = self.dialect
        rows = self._read(
            "SELECT c.id AS case_id, c.created_at, c.updated_at, i.kind, i.content_type,"
            f" {d.json_text('i.hashes', 'sha256')} AS sha256,"
            f" {d.json_text('i.hashes', 'pdq')} AS pdq,"
            f" {d.json_text('i.hashes', 'phash')} AS phash, i.matches"
            " FROM cases c LEFT JOIN items i ON i.case_id = c.id WHERE c.state = ?"
            " ORDER BY c.created_at, c.id, i.id", (WAITING,))
        # (separate linear reads: correlated subqueries per row cost more than the rest)
        channel: dict[str, str] = {}
        for r in self._read("SELECT r.case_id, r.channel FROM reports r JOIN cases c"
                            " ON c.id = r.case_id WHERE c.state = ? ORDER BY r.id", (WAITING,)):
            channel.setdefault(r["case_id"], r["channel"])
        extra: dict[tuple[str, str], Any] = {
            (r["case_id"], r["key"]): json.loads(r["value"]) for r in self._read(
                "SELECT v.case_id, v.key, v.value FROM case_data v JOIN cases c"
                " ON c.id = v.case_id WHERE c.state = ? AND v.key IN ('pending_verdict',"
                " 'disputed') AND v.value <> 'null'", (WAITING,))}
        out: list[dict[str, Any]] = []
        index = 0
        last = None
        for r in rows:
            index = index + 1 if r["case_id"] == last else 0
            last = r["case_id"]
            matches = r["matches"]  # (None for a case without items: LEFT JOIN)
            out.append({
                "case": r["case_id"], "created_at": r["created_at"],
                "updated_at": r["updated_at"], "item": index, "kind": r["kind"],
                "content_type": r["content_type"], "sha256": r["sha256"], "pdq": r["pdq"],
                "phash": r["phash"], "channel": channel.get(r["case_id"]),
                "matches": json.loads(matches) if matches and matches != "[]" else [],
                "pending": extra.get((r["case_id"], "pending_verdict")),
                "disputed": extra.get((r["case_id"], "disputed"))})
        return out

    # -- verdict moves -------------------------------------------------------------------------
    def move_cases(self, moves: Sequence[dict[str, Any]], now: str) -> list[str | None]:
        """Several case moves in ONE transaction, an event each. A move: ``case_id``, ``state``,
        ``stage``, ``actor``, ``action``, ``detail``, ``data``, ``expect`` (states it may
        leave), optional ``reason``/``retry_at``. Returns per move None (done) or why it was
        skipped (``not_found``, ``state:<state>``); skipped moves change nothing."""

        def run(conn: Any) -> list[str | None]:
            outcome: list[str | None] = []
            for m in moves:
                row = conn.execute(f"SELECT state FROM cases WHERE id = ?"
                                   f"{self.dialect.for_update}", (m["case_id"],)).fetchone()
                if row is None:
                    outcome.append("not_found")
                    continue
                if m.get("expect") is not None and row["state"] not in m["expect"]:
                    outcome.append(f"state:{row['state']}")
                    continue
                if m["state"] != row["state"]:
                    conn.execute(
                        "UPDATE cases SET state = ?, state_reason = ?, retry_at = ?,"
                        " updated_at = ?, is_open = ?, lease_owner = NULL, lease_until = NULL"
                        " WHERE id = ?",
                        (m["state"], m.get("reason"), m.get("retry_at"), now,
                         0 if m["state"] in CLOSED_STATES else 1, m["case_id"]))
                else:
                    conn.execute("UPDATE cases SET updated_at = ? WHERE id = ?",
                                 (now, m["case_id"]))
                self._write_effects(conn, m["case_id"], now, stage=m["stage"],
                                    actor=m["actor"], action=m["action"],
                                    reason=m.get("reason"), detail=m.get("detail") or {},
                                    data=m.get("data"))
                outcome.append(None)
            return outcome

        try:
            return list(self._transact(run))
        except Exception as exc:  # the unique open URL: an undo of a dismissal may collide
            if "cases_open_url" in str(exc) or "UNIQUE" in str(exc).upper():
                raise InputError("another open case now holds this URL") from exc
            raise

    def rematch_waiting(self, *, now: str, actor: str, reason: str,
                        only: Sequence[str] | None = None) -> int:
        """Waiting cases (all, or those in ``only``) without a verdict under second opinion go
        back to the match stage (state ``fetched``, an event each): a running ``ntd run``
        re-matches them at once against the lists as they are now, otherwise the next run."""
        ids = [r["id"] for r in self._read(
            "SELECT id FROM cases c WHERE state = ? AND NOT EXISTS (SELECT 1 FROM case_data v"
            " WHERE v.case_id = c.id AND v.key IN ('pending_verdict', 'disputed')"
            " AND v.value <> 'null')", (WAITING,))]
        if only is not None:
            wanted = set(only)
            ids = [i for i in ids if i in wanted]
        if not ids:
            return 0
        detail = dumps({"reason": reason})

        def run(conn: Any) -> int:
            moved = 0
            for part in chunks(ids, 200):
                marks = ",".join("?" * len(part))
                conn.execute(f"UPDATE cases SET state = 'fetched', updated_at = ?,"
                             f" lease_owner = NULL, lease_until = NULL"
                             f" WHERE state = ? AND id IN ({marks})", (now, WAITING, *part))
                insert_rows(conn, "INSERT INTO events(case_id, at, stage, actor, action,"
                            " detail) VALUES {}",
                            [(cid, now, "assessment", actor, "rematch", detail) for cid in part])
                moved += len(part)
            return moved

        return int(self._transact(run))

    def notices_queued(self, case_id: str) -> bool:
        """Whether the notify stage queued anything for this case (undo is then too late)."""
        return bool(self._read("SELECT 1 FROM outbox WHERE case_id = ? LIMIT 1", (case_id,)))

    def remove_learned(self, case_id: str) -> int:
        """Forget the entries a verdict on ``case_id`` taught the analyst lists (undo)."""
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM hashlist_entries WHERE label = ? AND list IN (?, ?)",
                (f"learned from {case_id}", *LEARNED_LISTS))
            removed = cur.rowcount or 0
            if removed:
                self._bump_generation(conn)
        return int(removed)

    def case_ids_with(self, key: str) -> list[str]:
        """Cases whose data holds ``key`` (not null), oldest first (the disputed list)."""
        return [r["case_id"] for r in self._read(
            "SELECT v.case_id FROM case_data v JOIN cases c ON c.id = v.case_id"
            " WHERE v.key = ? AND v.value <> 'null' ORDER BY c.created_at, c.id", (key,))]

    # -- wellbeing settings --------------------------------------------------------------------
    def user_settings(self, user_id: str) -> dict[str, Any]:
        """An account's stored workbench settings ({} when none)."""
        rows = self._read("SELECT settings FROM user_settings WHERE user_id = ?", (user_id,))
        return json.loads(rows[0]["settings"]) if rows else {}

    def set_user_settings(self, user_id: str, settings: dict[str, Any], now: str) -> None:
        """Replace an account's workbench settings."""
        with self._write() as conn:
            conn.execute("INSERT INTO user_settings(user_id, settings, updated_at)"
                         " VALUES (?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET"
                         " settings = excluded.settings, updated_at = excluded.updated_at",
                         (user_id, dumps(settings), now))
