"""SQLite part of the store for notices (outbox actions, aggregated notices, delivery state).

Mixed into ``SQLiteStore``; the abstract methods live in ``engine.store.base_notices``. Writes use
``BEGIN IMMEDIATE`` (``self._write``): SQLite has one writer, so a claim is exclusive without row
locks (the PostgreSQL backend uses ``FOR UPDATE SKIP LOCKED`` for the same claim).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine import clock
from engine.ids import new_id

_NOTICE_COLUMNS = ("id", "recipient", "channel", "recipient_kind", "country", "language",
                   "state", "attempts", "idempotency_key", "url_count", "next_attempt_at",
                   "lease_owner", "lease_until", "created_at", "updated_at", "sent_at", "error",
                   "receipt")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def idempotency_key(notice_id: str) -> str:
    """The notice's idempotency key: derived from its id only, so every resend carries it."""
    return f"ntd-{notice_id.lower()}"


def _chunks(actions: list[tuple[str, int]], max_urls: int) -> Iterator[list[str]]:
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


class SQLiteNoticeMixin:
    """Notice-outbox methods of the SQLite store."""

    if TYPE_CHECKING:  # provided by SQLiteStore; never defined here at run time (MRO)
        conn: sqlite3.Connection

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _read(self, sql: str, params: Any = ()) -> list[sqlite3.Row]: ...

    # -- queueing and aggregation ---------------------------------------------------------------
    def queue_notice_actions(self, actions: Iterable[dict[str, Any]], *, now: str) -> int:
        rows = [(a.get("id") or new_id("A"), a.get("case_id"), now, _dumps(a))
                for a in actions]
        with self._write() as conn:
            conn.executemany("INSERT INTO outbox(id, case_id, created_at, payload)"
                             " VALUES (?,?,?,?)", rows)
        return len(rows)

    def aggregate_notices(self, *, now: str, window_seconds: float, max_urls: int,
                          sendable: Iterable[str]) -> list[str]:
        can_send = set(sendable)
        cutoff = clock.fmt(clock.parse(now) - timedelta(seconds=window_seconds))
        created: list[str] = []
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, created_at, payload FROM outbox WHERE notice_id IS NULL"
                " ORDER BY created_at, id").fetchall()
            groups: dict[tuple[str, str, str, str], list[tuple[str, str, dict[str, Any]]]] = {}
            for row in rows:
                payload = json.loads(row[2])
                if payload.get("kind") != "notice":
                    continue  # outbox rows of other plugins are not ours to send
                key = (payload["channel"], payload["recipient"], payload["recipient_kind"],
                       payload.get("language") or "en")
                groups.setdefault(key, []).append((row[0], row[1], payload))
            for (channel, recipient, kind, language), members in groups.items():
                sized = [(oid, max(1, int(p.get("url_count") or len(p.get("entries") or []))))
                         for oid, _, p in members]
                size = dict(sized)
                pieces = list(_chunks(sized, max_urls))
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
                    conn.executemany("UPDATE outbox SET notice_id = ? WHERE id = ?",
                                     [(notice_id, o) for o in piece])
                    created.append(notice_id)
        return created

    def notice_work_due(self, *, now: str, window_seconds: float) -> int:
        cutoff = clock.fmt(clock.parse(now) - timedelta(seconds=window_seconds))
        rows = self._read(
            "SELECT (SELECT count(*) FROM notices WHERE"
            "  (state = 'queued' AND next_attempt_at <= ?)"
            "  OR (state = 'sending' AND (lease_until IS NULL OR lease_until < ?)))"
            " + (SELECT count(*) FROM outbox WHERE notice_id IS NULL AND created_at <= ?"
            "  AND json_extract(payload, '$.kind') = 'notice')", (now, now, cutoff))
        return int(rows[0][0])

    # -- sending -------------------------------------------------------------------------------
    def _actions(self, conn: sqlite3.Connection, notice_id: str) -> list[dict[str, Any]]:
        out = []
        for row in conn.execute("SELECT id, case_id, payload FROM outbox WHERE notice_id = ?"
                                " ORDER BY created_at, id", (notice_id,)):
            payload = json.loads(row[2])
            payload["outbox_id"] = row[0]
            payload["case_id"] = row[1] or payload.get("case_id")
            out.append(payload)
        return out

    def claim_notices(self, *, owner: str, limit: int, now: str,
                      lease_seconds: float) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        until = clock.fmt(clock.parse(now) + timedelta(seconds=lease_seconds))
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE notices SET state = 'sending', attempts = attempts + 1,"
                " lease_owner = ?, lease_until = ?, updated_at = ? WHERE id IN ("
                "  SELECT id FROM notices WHERE (state = 'queued' AND next_attempt_at <= ?)"
                "  OR (state = 'sending' AND (lease_until IS NULL OR lease_until < ?))"
                "  ORDER BY next_attempt_at, id LIMIT ?)"
                f" RETURNING {', '.join(_NOTICE_COLUMNS)}",
                (owner, until, now, now, now, limit)).fetchall()
            out = []
            for row in sorted(rows, key=lambda r: r[0]):
                notice = dict(zip(_NOTICE_COLUMNS, tuple(row), strict=True))
                notice["actions"] = self._actions(conn, notice["id"])
                out.append(notice)
        return out

    def _trail(self, conn: sqlite3.Connection, notice_id: str, now: str, action: str,
               detail: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO events(case_id, at, stage, actor, action, detail)"
            " SELECT DISTINCT case_id, ?, 'notify', 'notify', ?, ? FROM outbox"
            " WHERE notice_id = ? AND case_id IS NOT NULL",
            (now, action, _dumps({"notice": notice_id, **detail}), notice_id))

    def notice_sent(self, notice_id: str, *, owner: str, now: str, receipt: str) -> bool:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE notices SET state = 'sent', sent_at = ?, updated_at = ?, error = NULL,"
                " receipt = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ? AND state = 'sending'"
                " RETURNING recipient, channel, attempts",
                (now, now, receipt, notice_id, owner)).fetchone()
            if row is None:
                return False
            self._trail(conn, notice_id, now, "notice_sent",
                        {"recipient": row[0], "channel": row[1], "attempts": row[2]})
        return True

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
        with self._write() as conn:
            row = conn.execute(
                "UPDATE notices SET state = 'failed', error = ?, updated_at = ?,"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ? AND state = 'sending'"
                " RETURNING recipient, channel, attempts",
                (error, now, notice_id, owner)).fetchone()
            if row is None:
                return False
            self._trail(conn, notice_id, now, "notice_failed",
                        {"recipient": row[0], "channel": row[1], "attempts": row[2],
                         "error": error})
        return True

    # -- reading and analyst actions -----------------------------------------------------------
    def list_notices(self, *, state: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
        sql = (f"SELECT {', '.join('n.' + c for c in _NOTICE_COLUMNS)},"
               " (SELECT json_group_array(case_id) FROM (SELECT DISTINCT o.case_id FROM outbox o"
               "   WHERE o.notice_id = n.id AND o.case_id IS NOT NULL ORDER BY o.case_id))"
               " FROM notices n")
        params: list[Any] = []
        if state:
            sql += " WHERE n.state = ?"
            params.append(state)
        sql += " ORDER BY n.created_at, n.id LIMIT ?"
        params.append(limit if limit is not None else -1)
        out = []
        for row in self._read(sql, params):
            notice = dict(zip(_NOTICE_COLUMNS, tuple(row)[:len(_NOTICE_COLUMNS)], strict=True))
            notice["case_ids"] = json.loads(row[len(_NOTICE_COLUMNS)] or "[]")
            out.append(notice)
        return out

    def get_notice(self, notice_id: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT {', '.join(_NOTICE_COLUMNS)} FROM notices WHERE id = ?",
                          (notice_id,))
        if not rows:
            return None
        notice = dict(zip(_NOTICE_COLUMNS, tuple(rows[0]), strict=True))
        with self._write() as conn:  # one consistent read of the actions
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
        return [r[0] for r in rows]

    def release_notice_owners(self, owners: Iterable[str]) -> int:
        owners = list(owners)
        if not owners:
            return 0
        with self._write() as conn:
            cur = conn.executemany(
                "UPDATE notices SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                [(o,) for o in owners])
            return cur.rowcount

    def notice_counts(self) -> dict[str, int]:
        rows = self._read("SELECT state, count(*) FROM notices GROUP BY state ORDER BY state")
        return {r[0]: r[1] for r in rows}
