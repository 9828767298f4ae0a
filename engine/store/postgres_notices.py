"""PostgreSQL part of the store for notices (outbox actions, aggregated notices, delivery state).

Mixed into ``PostgresStore``; the abstract methods live in ``engine.store.base_notices`` and the
behaviour matches ``engine.store.sqlite_notices``. Senders on several hosts claim due notices with
``FOR UPDATE SKIP LOCKED`` (a notice is leased to one sender, which records ``sending`` and the
attempt before any byte leaves), and aggregation takes a transaction-scoped advisory lock so two
senders never cut the same outbox action into two notices.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from engine import clock
from engine.ids import new_id
from engine.store.sqlite_notices import _chunks, idempotency_key

if TYPE_CHECKING:
    import psycopg

    Conn = psycopg.Connection[dict[str, Any]]

T = TypeVar("T")

_NOTICE_COLUMNS = ("id", "recipient", "channel", "recipient_kind", "country", "language",
                   "state", "attempts", "idempotency_key", "url_count", "next_attempt_at",
                   "lease_owner", "lease_until", "created_at", "updated_at", "sent_at", "error",
                   "receipt")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class PostgresNoticeMixin:
    """Notice-outbox methods of the PostgreSQL store."""

    if TYPE_CHECKING:  # provided by PostgresStore; never defined here at run time (MRO)
        def _write(self) -> AbstractContextManager[Conn]: ...

        def _read(self, sql: str, params: Any = ()) -> list[Any]: ...

        def _retrying(self, fn: Callable[[Conn], T], attempts: int = 5) -> T: ...

    # -- queueing and aggregation ---------------------------------------------------------------
    def queue_notice_actions(self, actions: Iterable[dict[str, Any]], *, now: str) -> int:
        rows = [(a.get("id") or new_id("A"), a.get("case_id"), now, _dumps(a))
                for a in actions]
        with self._write() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO outbox(id, case_id, created_at, payload)"
                            " VALUES (%s,%s,%s,%s)", rows)
        return len(rows)

    def aggregate_notices(self, *, now: str, window_seconds: float, max_urls: int,
                          sendable: Iterable[str]) -> list[str]:
        from engine.store.postgres import advisory_key

        can_send = set(sendable)
        cutoff = clock.fmt(clock.parse(now) - timedelta(seconds=window_seconds))
        created: list[str] = []
        with self._write() as conn:
            # One aggregator at a time: the second waits, then sees the first one's notice_ids.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("aggregate"),))
            rows = conn.execute(
                "SELECT id, created_at, payload FROM outbox WHERE notice_id IS NULL"
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
                        " VALUES (%s,%s,%s,%s,%s,%s,%s,0,%s,%s,%s,%s,%s)",
                        (notice_id, recipient, channel, kind, country, language, state,
                         idempotency_key(notice_id), urls, now, now, now))
                    conn.execute("UPDATE outbox SET notice_id = %s WHERE id = ANY(%s)",
                                 (notice_id, piece))
                    created.append(notice_id)
        return created

    def notice_work_due(self, *, now: str, window_seconds: float) -> int:
        cutoff = clock.fmt(clock.parse(now) - timedelta(seconds=window_seconds))
        rows = self._read(
            "SELECT (SELECT count(*) FROM notices WHERE"
            "  (state = 'queued' AND next_attempt_at <= %s)"
            "  OR (state = 'sending' AND (lease_until IS NULL OR lease_until < %s)))"
            " + (SELECT count(*) FROM outbox WHERE notice_id IS NULL AND created_at <= %s"
            "  AND payload::json ->> 'kind' = 'notice') AS n", (now, now, cutoff))
        return int(rows[0]["n"])

    # -- sending -------------------------------------------------------------------------------
    @staticmethod
    def _actions(conn: Conn, notice_id: str) -> list[dict[str, Any]]:
        out = []
        for row in conn.execute("SELECT id, case_id, payload FROM outbox WHERE notice_id = %s"
                                " ORDER BY created_at, id", (notice_id,)):
            payload = json.loads(row["payload"])
            payload["outbox_id"] = row["id"]
            payload["case_id"] = row["case_id"] or payload.get("case_id")
            out.append(payload)
        return out

    def claim_notices(self, *, owner: str, limit: int, now: str,
                      lease_seconds: float) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        until = clock.fmt(clock.parse(now) + timedelta(seconds=lease_seconds))
        with self._write() as conn:
            # SKIP LOCKED: two senders never lease (and so never send) the same notice.
            rows = conn.execute(
                "UPDATE notices SET state = 'sending', attempts = attempts + 1,"
                " lease_owner = %s, lease_until = %s, updated_at = %s WHERE id IN ("
                "  SELECT id FROM notices WHERE (state = 'queued' AND next_attempt_at <= %s)"
                "  OR (state = 'sending' AND (lease_until IS NULL OR lease_until < %s))"
                "  ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
                f" RETURNING {', '.join(_NOTICE_COLUMNS)}",
                (owner, until, now, now, now, limit)).fetchall()
            out = []
            for row in sorted(rows, key=lambda r: r["id"]):
                notice = {c: row[c] for c in _NOTICE_COLUMNS}
                notice["actions"] = self._actions(conn, notice["id"])
                out.append(notice)
        return out

    @staticmethod
    def _trail(conn: Conn, notice_id: str, now: str, action: str,
               detail: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO events(case_id, at, stage, actor, action, detail)"
            " SELECT case_id, %s, 'notify', 'notify', %s, %s FROM"
            " (SELECT DISTINCT case_id FROM outbox WHERE notice_id = %s"
            "  AND case_id IS NOT NULL ORDER BY case_id) AS c",
            (now, action, _dumps({"notice": notice_id, **detail}), notice_id))

    def notice_sent(self, notice_id: str, *, owner: str, now: str, receipt: str) -> bool:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE notices SET state = 'sent', sent_at = %s, updated_at = %s, error = NULL,"
                " receipt = %s, lease_owner = NULL, lease_until = NULL"
                " WHERE id = %s AND lease_owner = %s AND state = 'sending'"
                " RETURNING recipient, channel, attempts",
                (now, now, receipt, notice_id, owner)).fetchone()
            if row is None:
                return False
            self._trail(conn, notice_id, now, "notice_sent",
                        {"recipient": row["recipient"], "channel": row["channel"],
                         "attempts": row["attempts"]})
        return True

    def notice_retry(self, notice_id: str, *, owner: str, now: str, next_attempt_at: str,
                     error: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE notices SET state = 'queued', next_attempt_at = %s, error = %s,"
                " updated_at = %s, lease_owner = NULL, lease_until = NULL"
                " WHERE id = %s AND lease_owner = %s AND state = 'sending'",
                (next_attempt_at, error, now, notice_id, owner))
            return cur.rowcount == 1

    def notice_failed(self, notice_id: str, *, owner: str, now: str, error: str) -> bool:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE notices SET state = 'failed', error = %s, updated_at = %s,"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE id = %s AND lease_owner = %s AND state = 'sending'"
                " RETURNING recipient, channel, attempts",
                (error, now, notice_id, owner)).fetchone()
            if row is None:
                return False
            self._trail(conn, notice_id, now, "notice_failed",
                        {"recipient": row["recipient"], "channel": row["channel"],
                         "attempts": row["attempts"], "error": error})
        return True

    # -- reading and analyst actions -----------------------------------------------------------
    def list_notices(self, *, state: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
        sql = (f"SELECT {', '.join('n.' + c for c in _NOTICE_COLUMNS)},"
               " (SELECT coalesce(json_agg(d.case_id ORDER BY d.case_id), '[]'::json)"
               "   FROM (SELECT DISTINCT o.case_id FROM outbox o"
               "   WHERE o.notice_id = n.id AND o.case_id IS NOT NULL) d) AS case_ids"
               " FROM notices n")
        params: list[Any] = []
        if state:
            sql += " WHERE n.state = %s"
            params.append(state)
        sql += " ORDER BY n.created_at, n.id LIMIT %s"
        params.append(limit)
        out = []
        for row in self._read(sql, params):
            notice = {c: row[c] for c in _NOTICE_COLUMNS}
            ids = row["case_ids"]
            notice["case_ids"] = json.loads(ids) if isinstance(ids, str) else list(ids or [])
            out.append(notice)
        return out

    def get_notice(self, notice_id: str) -> dict[str, Any] | None:
        with self._write() as conn:  # one consistent read of the notice and its actions
            row = conn.execute(f"SELECT {', '.join(_NOTICE_COLUMNS)} FROM notices"
                               " WHERE id = %s", (notice_id,)).fetchone()
            if row is None:
                return None
            notice = {c: row[c] for c in _NOTICE_COLUMNS}
            notice["actions"] = self._actions(conn, notice_id)
        notice["case_ids"] = sorted({a["case_id"] for a in notice["actions"] if a["case_id"]})
        return notice

    def retry_notice(self, notice_id: str, *, now: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE notices SET state = 'queued', next_attempt_at = %s, updated_at = %s,"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE id = %s AND state IN ('failed', 'queued')", (now, now, notice_id))
            return cur.rowcount == 1

    def notice_lease_owners(self) -> list[str]:
        rows = self._read("SELECT DISTINCT lease_owner FROM notices"
                          " WHERE lease_owner IS NOT NULL")
        return [r["lease_owner"] for r in rows]

    def release_notice_owners(self, owners: Iterable[str]) -> int:
        wanted = list(owners)
        if not wanted:
            return 0

        def run(conn: Conn) -> int:
            return conn.execute("UPDATE notices SET lease_owner = NULL, lease_until = NULL"
                                " WHERE lease_owner = ANY(%s)", (wanted,)).rowcount

        return self._retrying(run)

    def notice_counts(self) -> dict[str, int]:
        rows = self._read("SELECT state, count(*) AS n FROM notices GROUP BY state"
                          " ORDER BY state")
        return {r["state"]: r["n"] for r in rows}

