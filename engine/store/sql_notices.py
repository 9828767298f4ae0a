"""Notices, written once for both backends: outbox actions, aggregated notices, delivery state.

Mixed into ``engine.store.sql.SQLStore``; the role interface is ``engine.store.roles.NoticeStore``.
Senders claim due notices under a lease (``sending`` and the attempt are recorded before any
byte leaves). On PostgreSQL the claim skips rows another sender is locking (``FOR UPDATE SKIP
LOCKED``) and aggregation holds an advisory lock, so two senders never cut the same outbox
action into two notices; SQLite's single writer gives both for free.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine import clock
from engine.ids import new_id
from engine.store.sql_util import chunks, dumps

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from engine.store.dialect import Dialect
    from engine.store.roles import Gate

_NOTICE_COLUMNS = ("id", "recipient", "channel", "recipient_kind", "country", "language",
                   "state", "attempts", "idempotency_key", "url_count", "next_attempt_at",
                   "lease_owner", "lease_until", "created_at", "updated_at", "sent_at", "error",
                   "receipt", "not_before")


def idempotency_key(notice_id: str) -> str:
    """The notice's idempotency key: derived from its id only, so every resend carries it."""
    return f"ntd-{notice_id.lower()}"


def _pieces(actions: list[tuple[str, int]], max_urls: int) -> Iterator[list[str]]:
    """Cut ``(outbox_id, urls)`` pairs into groups of at most ``max_urls`` URLs.

    An action larger than the cap travels alone: one case's URLs are never split.
    """
    group: list[str] = []
    size = 0
    for outbox_id, urls in actions:
        if group and size + urls > max_urls:
            yield group
            group, size = [], 0
        group.append(outbox_id)
        size += urls
    if group:
        yield group


class SQLNoticeMixin:
    """Notice-outbox methods of the SQL store."""

    if TYPE_CHECKING:  # provided by SQLStore; never defined here at run time (MRO)
        dialect: Dialect

        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self, sql: str, params: Any = ()) -> list[Any]: ...

        def _lock(self, conn: Any, name: str) -> None: ...

        def _clear_leases(self, column: str, values: Iterable[str], *, table: str = "cases",
                          owner: str | None = None) -> int: ...

    # -- queueing and aggregation ---------------------------------------------------------------
    def queue_notice_actions(self, actions: Iterable[dict[str, Any]], *, now: str) -> int:
        rows = [(a.get("id") or new_id("A"), a.get("case_id"), now, dumps(a), a.get("held"),
                 str(uuid.uuid4())) for a in actions]
        with self._write() as conn:
            conn.executemany("INSERT INTO outbox(id, case_id, created_at, payload, held,"
                             " report_id) VALUES (?,?,?,?,?,?)", rows)
        return len(rows)

    def aggregate_notices(self, *, now: str, window_seconds: float, max_urls: int,
                          sendable: Iterable[str]) -> list[str]:
        can_send = set(sendable)
        cutoff = clock.fmt(clock.parse(now) - timedelta(seconds=window_seconds))
        created: list[str] = []
        with self._write() as conn:
            # One aggregator at a time: the second waits, then sees the first one's notice_ids.
            self._lock(conn, "aggregate")
            rows = conn.execute(
                "SELECT id, created_at, payload FROM outbox WHERE notice_id IS NULL"
                " AND held IS NULL"
                " ORDER BY created_at, id").fetchall()
            groups: dict[tuple[str, str, str, str], list[tuple[str, str, dict[str, Any]]]] = {}
            for row in rows:
                payload = json.loads(row["payload"])
                if payload.get("kind") != "notice":
                    continue  # outbox rows of other plugins are not ours to send
                key = (payload["channel"], payload["recipient"], payload["recipient_kind"],
                       payload.get("language") or "en")
                groups.setdefault(key, []).append((row["id"], row["created_at"], payload))
            for (channel, recipient, kind, language), members in groups.items():
                sized = [(oid, max(1, int(p.get("url_count") or len(p.get("entries") or []))))
                         for oid, _, p in members]
                size = dict(sized)
                pieces = list(_pieces(sized, max_urls))
                if members[0][1] > cutoff:
                    # The window is still open: only full notices go now.
                    pieces = [p for p in pieces if sum(size[o] for o in p) >= max_urls]
                country = members[0][2].get("country")
                for piece in pieces:
                    notice_id = new_id("N")
                    urls = sum(size[o] for o in piece)
                    state = "queued" if channel in can_send else "manual"
                    conn.execute(
                        "INSERT INTO notices(id, recipient, channel, recipient_kind, country,"
                        " language, state, attempts, idempotency_key, url_count,"
                        " next_attempt_at, created_at, updated_at)"
                        " VALUES (?,?,?,?,?,?,?,0,?,?,?,?,?)",
                        (notice_id, recipient, channel, kind, country, language, state,
                         idempotency_key(notice_id), urls, now, now, now))
                    for part in chunks(piece, self.dialect.max_in):
                        where, ids = self.dialect.in_list("id", part)
                        conn.execute(f"UPDATE outbox SET notice_id = ? WHERE {where}",
                                     (notice_id, *ids))
                    created.append(notice_id)
        return created

    def notice_work_due(self, *, now: str, window_seconds: float) -> int:
        cutoff = clock.fmt(clock.parse(now) - timedelta(seconds=window_seconds))
        kind = self.dialect.json_text("payload", "kind")
        rows = self._read(
            "SELECT (SELECT count(*) FROM notices WHERE"
            "  (state = 'queued' AND next_attempt_at <= ?)"
            "  OR (state = 'sending' AND (lease_until IS NULL OR lease_until < ?)))"
            " + (SELECT count(*) FROM outbox WHERE notice_id IS NULL AND created_at <= ?"
            f"  AND held IS NULL AND {kind} = 'notice') AS n", (now, now, cutoff))
        return int(rows[0]["n"])

    # -- sending -------------------------------------------------------------------------------
    @staticmethod
    def _actions(conn: Any, notice_id: str) -> list[dict[str, Any]]:
        out = []
        for row in conn.execute("SELECT id, case_id, payload, report_id FROM outbox"
                                " WHERE notice_id = ? ORDER BY created_at, id", (notice_id,)):
            payload = json.loads(row["payload"])
            payload["outbox_id"] = row["id"]
            payload["report_id"] = row["report_id"]
            payload["case_id"] = row["case_id"] or payload.get("case_id")
            out.append(payload)
        return out

    def claim_notices(self, *, owner: str, limit: int, now: str, lease_seconds: float,
                      gate: Gate | None = None) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        until = clock.fmt(clock.parse(now) + timedelta(seconds=lease_seconds))
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE notices SET state = 'sending', attempts = attempts + 1,"
                " lease_owner = ?, lease_until = ?, updated_at = ? WHERE id IN ("
                "  SELECT id FROM notices WHERE (state = 'queued' AND next_attempt_at <= ?)"
                "  OR (state = 'sending' AND (lease_until IS NULL OR lease_until < ?))"
                f"  ORDER BY next_attempt_at, id LIMIT ?{self.dialect.skip_locked})"
                f" RETURNING {', '.join(_NOTICE_COLUMNS)}",
                (owner, until, now, now, now, limit)).fetchall()
            out = []
            for row in sorted(rows, key=lambda r: r["id"]):
                notice = {c: row[c] for c in _NOTICE_COLUMNS}
                stop = gate(notice) if gate is not None else None
                if stop is not None:
                    state, not_before = stop
                    conn.execute(
                        "UPDATE notices SET state = ?, next_attempt_at = ?, not_before = ?,"
                        " attempts = attempts - 1, lease_owner = NULL, lease_until = NULL"
                        " WHERE id = ?", (state, not_before, not_before, notice["id"]))
                    continue
                notice["actions"] = self._actions(conn, notice["id"])
                out.append(notice)
        return out

    def release_held(self, case_id: str, *, hold: str) -> int:
        with self._write() as conn:
            return conn.execute("UPDATE outbox SET held = NULL WHERE case_id = ? AND held = ?"
                                " AND notice_id IS NULL", (case_id, hold)).rowcount

    def drop_held(self, case_id: str, *, hold: str) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM outbox WHERE case_id = ? AND held = ?"
                                " AND notice_id IS NULL", (case_id, hold)).rowcount

    def approve_contact(self, address: str, *, by: str, now: str,
                        note: str | None = None) -> int:
        address = address.lower()
        with self._write() as conn:
            conn.execute("INSERT INTO contact_approvals(address, approved_by, approved_at, note)"
                         " VALUES (?,?,?,?) ON CONFLICT(address) DO NOTHING",
                         (address, by, now, note))
            return conn.execute(
                "UPDATE notices SET state = 'queued', next_attempt_at = ?, not_before = NULL,"
                " updated_at = ? WHERE state = 'awaiting_approval' AND lower(recipient) = ?",
                (now, now, address)).rowcount

    def approved_addresses(self) -> set[str]:
        rows = self._read("SELECT address FROM contact_approvals UNION"
                          " SELECT lower(address) AS address FROM contacts")
        return {r["address"] for r in rows}

    def awaiting_approval(self) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT lower(recipient) AS address, count(*) AS notices, sum(url_count) AS urls,"
            " min(created_at) AS since FROM notices WHERE state = 'awaiting_approval'"
            " GROUP BY lower(recipient) ORDER BY since, address")
        return [{"address": r["address"], "notices": int(r["notices"]),
                 "urls": int(r["urls"] or 0), "since": r["since"]} for r in rows]

    @staticmethod
    def _trail(conn: Any, notice_id: str, now: str, action: str,
               detail: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO events(case_id, at, stage, actor, action, detail)"
            " SELECT case_id, ?, 'notify', 'notify', ?, ? FROM"
            " (SELECT DISTINCT case_id FROM outbox WHERE notice_id = ?"
            "  AND case_id IS NOT NULL ORDER BY case_id) AS c",
            (now, action, dumps({"notice": notice_id, **detail}), notice_id))

    def _end_sending(self, notice_id: str, owner: str, now: str, *, sets: str,
                     params: tuple[Any, ...], action: str, extra: dict[str, Any]) -> bool:
        """Finish a leased ``sending`` notice (``sets``: the columns it changes) and put a
        trail event on its cases; False if the lease was lost."""
        with self._write() as conn:
            row = conn.execute(
                f"UPDATE notices SET {sets}, updated_at = ?, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ? AND lease_owner = ? AND state = 'sending'"
                " RETURNING recipient, channel, attempts",
                (*params, now, notice_id, owner)).fetchone()
            if row is None:
                return False
            self._trail(conn, notice_id, now, action,
                        {"recipient": row["recipient"], "channel": row["channel"],
                         "attempts": row["attempts"], **extra})
        return True

    def notice_sent(self, notice_id: str, *, owner: str, now: str, receipt: str) -> bool:
        return self._end_sending(notice_id, owner, now,
                                 sets="state = 'sent', sent_at = ?, error = NULL,"
                                      " receipt = ?, not_before = NULL",
                                 params=(now, receipt), action="notice_sent", extra={})

    def notice_retry(self, notice_id: str, *, owner: str, now: str, next_attempt_at: str,
                     error: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE notices SET state = 'queued', next_attempt_at = ?, error = ?,"
                " updated_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ? AND state = 'sending'",
                (next_attempt_at, error, now, notice_id, owner))
            return cur.rowcount == 1

    def notice_failed(self, notice_id: str, *, owner: str, now: str, error: str) -> bool:
        return self._end_sending(notice_id, owner, now, sets="state = 'failed', error = ?",
                                 params=(error,), action="notice_failed",
                                 extra={"error": error})

    # -- reading and analyst actions -----------------------------------------------------------
    def list_notices(self, *, state: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
        sql = (f"SELECT {', '.join('n.' + c for c in _NOTICE_COLUMNS)},"
               f" (SELECT {self.dialect.json_array_agg('d.case_id')} FROM"
               "  (SELECT DISTINCT o.case_id FROM outbox o WHERE o.notice_id = n.id"
               "   AND o.case_id IS NOT NULL ORDER BY o.case_id) AS d) AS case_ids"
               " FROM notices n")
        params: list[Any] = []
        if state:
            sql += " WHERE n.state = ?"
            params.append(state)
        sql += " ORDER BY n.created_at, n.id LIMIT ?"
        params.append(limit if limit is not None else self.dialect.no_limit)
        out = []
        for row in self._read(sql, params):
            notice = {c: row[c] for c in _NOTICE_COLUMNS}
            ids = row["case_ids"]  # JSON text on SQLite, already decoded on PostgreSQL
            notice["case_ids"] = json.loads(ids) if isinstance(ids, str) else list(ids or [])
            out.append(notice)
        return out

    def get_notice(self, notice_id: str) -> dict[str, Any] | None:
        with self._write() as conn:  # one consistent read of the notice and its actions
            row = conn.execute(f"SELECT {', '.join(_NOTICE_COLUMNS)} FROM notices"
                               " WHERE id = ?", (notice_id,)).fetchone()
            if row is None:
                return None
            notice = {c: row[c] for c in _NOTICE_COLUMNS}
            notice["actions"] = self._actions(conn, notice_id)
        notice["case_ids"] = sorted({a["case_id"] for a in notice["actions"] if a["case_id"]})
        return notice

    def retry_notice(self, notice_id: str, *, now: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE notices SET state = 'queued', next_attempt_at = ?, updated_at = ?,"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND state IN ('failed', 'queued')", (now, now, notice_id))
            return cur.rowcount == 1

    def notice_lease_owners(self) -> list[str]:
        rows = self._read("SELECT DISTINCT lease_owner FROM notices"
                          " WHERE lease_owner IS NOT NULL")
        return [r["lease_owner"] for r in rows]

    def release_notice_owners(self, owners: Iterable[str]) -> int:
        return self._clear_leases("lease_owner", owners, table="notices")

    def notice_counts(self) -> dict[str, int]:
        rows = self._read("SELECT state, count(*) AS n FROM notices GROUP BY state"
                          " ORDER BY state")
        return {r["state"]: r["n"] for r in rows}
