"""SQLite backend (the embedded default): WAL, explicit ``BEGIN IMMEDIATE`` for writes.

One connection per ``SQLiteStore``; the pipeline uses it from one dedicated thread. Leases give the
same claim semantics as the PostgreSQL backend: a case is worked by one owner at a time and a
result is committed only while its lease is held.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

from engine import clock
from engine.errors import InputError, StorageError
from engine.ids import new_id, new_ids
from engine.models import CLOSED_STATES, Case, Event, Item
from engine.store.base import Commit, IntakeOutcome, IntakeRow, Store, claim_candidates_sql
from engine.store.migrations import MIGRATIONS
from engine.store.sqlite_notices import SQLiteNoticeMixin
from engine.store.sqlite_stats import SQLiteStatsMixin
from engine.store.sqlite_users import SQLiteUsersMixin

_CLOSED = tuple(sorted(CLOSED_STATES))
# States that mean "this stage failed; try again later".
RETRY_STATES = frozenset({"unreachable", "unresolved"})


_ROWS_PER_STATEMENT = 100  # rows of one multi-row statement (well under SQLite's variable cap)


class _Effects(NamedTuple):
    """What one stage result writes besides the case row."""

    case_id: str
    stage: str
    actor: str
    action: str
    reason: str | None
    detail: dict[str, Any]
    items: Sequence[Item]
    data: dict[str, Any] | None
    outbox: Sequence[dict[str, Any]]


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


def _insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``sql`` (with ``{}`` where the VALUES rows go) for ``rows``, a chunk per statement."""
    if not rows:
        return
    marks = "(" + ",".join("?" * len(rows[0])) + ")"
    for chunk in _chunks(rows, _ROWS_PER_STATEMENT):
        conn.execute(sql.format(",".join([marks] * len(chunk))),
                     [value for row in chunk for value in row])


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class SQLiteStore(SQLiteNoticeMixin, SQLiteStatsMixin, SQLiteUsersMixin, Store):
    """Case store in one SQLite file."""

    inline_reads = True  # point reads are cheap enough for the event loop (engine.context)
    busy_errors: tuple[type[Exception], ...] = (sqlite3.OperationalError,)  # "database is locked"

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if self.path.parent and not self.path.parent.exists():
            raise StorageError(f"database folder {self.path.parent} does not exist")
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None,
                                        check_same_thread=False, timeout=busy_timeout)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            # A larger page cache keeps index pages of big batches in memory (64 MiB).
            self.conn.execute("PRAGMA cache_size=-65536")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            # Deleted content is overwritten, so purged reporter data leaves no trace.
            self.conn.execute("PRAGMA secure_delete=ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {self.path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so writers queue instead of deadlocking."""
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: cannot begin a write: {exc}") from exc
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def clone(self) -> SQLiteStore:
        return SQLiteStore(self.path)

    def inline_clone(self) -> SQLiteStore:
        """A connection for the event loop's own point reads: it waits at most 50 ms for a
        lock (another process's VACUUM or migration), then gives up with ``busy_errors``."""
        return SQLiteStore(self.path, busy_timeout=0.05)

    # -- schema --------------------------------------------------------------------------------
    def schema_version(self) -> int:
        rows = self._read("SELECT name FROM sqlite_master WHERE type='table' "
                          "AND name='schema_version'")
        if not rows:
            return 0
        row = self._read("SELECT max(version) AS v FROM schema_version")
        return int(row[0]["v"] or 0)

    def migrate(self) -> int:
        current = self.schema_version()
        newest = max(MIGRATIONS)
        if current > newest:
            raise StorageError(
                f"{self.path} is at schema version {current}, newer than this ntd ({newest})")
        for version in sorted(v for v in MIGRATIONS if v > current):
            with self._write() as conn:
                for statement in MIGRATIONS[version]["sqlite"]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version(version, applied_at) VALUES (?, ?)",
                             (version, clock.Clock().now_text()))
        return newest

    # -- intake --------------------------------------------------------------------------------
    def create_batch(self, *, channel: str, source: str, at: str) -> str:
        batch_id = new_id("B")
        with self._write() as conn:
            conn.execute("INSERT INTO batches(id, channel, source, created_at) VALUES (?,?,?,?)",
                         (batch_id, channel, source, at))
        return batch_id

    def add_reports(self, batch_id: str, channel: str, at: str,
                    rows: Sequence[IntakeRow]) -> IntakeOutcome:
        if not rows:
            return IntakeOutcome(accepted=0, duplicates=0)
        accepted = duplicates = 0
        case_ids: list[str] = []
        with self._write() as conn:
            wanted = list({row.canonical_url for row in rows})
            open_cases: dict[str, str] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for found in conn.execute(
                        f"SELECT canonical_url, id FROM cases WHERE is_open = 1 "
                        f"AND canonical_url IN ({marks})", chunk):
                    open_cases[found[0]] = found[1]
            new_cases = []
            new_events = []
            reports = []
            created = _dumps({"batch": batch_id})
            fresh_ids = iter(new_ids("C", len(rows)))
            for row in rows:
                case_id = open_cases.get(row.canonical_url)
                duplicate = case_id is not None
                if case_id is None:
                    case_id = next(fresh_ids)
                    open_cases[row.canonical_url] = case_id
                    new_cases.append((case_id, row.raw_url, row.canonical_url, row.host,
                                      row.domain, at, at))
                    new_events.append((case_id, at, "intake", channel, "created", created))
                    accepted += 1
                else:
                    duplicates += 1
                case_ids.append(case_id)
                reports.append((case_id, batch_id, channel, at, row.raw_url,
                                _dumps(row.metadata) if row.metadata else None,
                                1 if duplicate else 0, row.line))
            conn.executemany(
                "INSERT INTO cases(id, url, canonical_url, host, domain, state, created_at, "
                "updated_at) VALUES (?,?,?,?,?,'new',?,?)", new_cases)
            plain = [r for r, row in zip(reports, rows, strict=True) if row.reporter is None]
            conn.executemany(
                "INSERT INTO reports(case_id, batch_id, channel, received_at, raw_url, metadata, "
                "duplicate, line) VALUES (?,?,?,?,?,?,?,?)", plain)
            for report, row in zip(reports, rows, strict=True):
                if row.reporter is not None:
                    self._insert_with_reporter(conn, report, row.reporter, at)
            conn.executemany(
                "INSERT INTO events(case_id, at, stage, actor, action, detail) "
                "VALUES (?,?,?,?,?,?)", new_events)
        return IntakeOutcome(accepted=accepted, duplicates=duplicates, case_ids=tuple(case_ids))

    @staticmethod
    def _insert_with_reporter(conn: sqlite3.Connection, report: tuple[Any, ...],
                              reporter: tuple[Any, ...], at: str) -> None:
        cur = conn.execute(
            "INSERT INTO reports(case_id, batch_id, channel, received_at, raw_url, metadata, "
            "duplicate, line) VALUES (?,?,?,?,?,?,?,?)", report)
        rid, app, phone_mac, username_mac, sealed, wrapped, police = reporter
        conn.execute(
            "INSERT INTO reporters(id, report_id, case_id, app, phone_mac, username_mac, sealed,"
            " contact_police, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (rid, cur.lastrowid, report[0], app, phone_mac, username_mac, sealed,
             1 if police else 0, at))
        conn.execute("INSERT INTO reporter_keys(reporter_id, wrapped_key) VALUES (?,?)",
                     (rid, wrapped))

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """No automatic WAL checkpoints during a large intake.

        Checkpoints (copying the WAL into the database file, with an fsync) took a third of a
        100,000-URL submission. Commits stay durable in the WAL; the next commit after the
        batch, or the last connection's close, checkpoints as usual.
        """
        with self._lock:
            before = int(self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            self.conn.execute("PRAGMA wal_autocheckpoint=0")
        try:
            yield
        finally:
            with self._lock:
                self.conn.execute(f"PRAGMA wal_autocheckpoint={before}")

    def finish_batch(self, batch_id: str, *, accepted: int, duplicates: int,
                     rejected: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE batches SET accepted=?, duplicates=?, rejected=? WHERE id=?",
                         (accepted, duplicates, rejected, batch_id))

    # -- reading -------------------------------------------------------------------------------
    def _case_row(self, case_id: str) -> sqlite3.Row | None:
        rows = self._read("SELECT * FROM cases WHERE id = ?", (case_id,))
        return rows[0] if rows else None

    def _items(self, case_id: str) -> list[Item]:
        rows = self._read("SELECT * FROM items WHERE case_id = ? ORDER BY id", (case_id,))
        return [Item(id=r["id"], url=r["url"], kind=r["kind"], status=r["status"],
                     content_type=r["content_type"], size=r["size"], final_url=r["final_url"],
                     error=r["error"], hashes=json.loads(r["hashes"] or "{}"),
                     matches=json.loads(r["matches"] or "[]")) for r in rows]

    def _data(self, case_id: str) -> dict[str, Any]:
        rows = self._read("SELECT key, value FROM case_data WHERE case_id = ?", (case_id,))
        return {r["key"]: json.loads(r["value"]) for r in rows}

    @staticmethod
    def _case_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {"id": row["id"], "url": row["url"], "canonical_url": row["canonical_url"],
                "host": row["host"], "domain": row["domain"], "state": row["state"],
                "state_reason": row["state_reason"], "retry_at": row["retry_at"],
                "created_at": row["created_at"], "updated_at": row["updated_at"]}

    def get_case(self, case_id: str, *, events: bool = True) -> dict[str, Any] | None:
        row = self._case_row(case_id)
        if row is None:
            return None
        out = self._case_dict(row)
        out["reports"] = [
            {"id": r["id"], "batch": r["batch_id"], "channel": r["channel"],
             "received_at": r["received_at"], "url": r["raw_url"],
             "metadata": json.loads(r["metadata"]) if r["metadata"] else {},
             "duplicate": bool(r["duplicate"])}
            for r in self._read("SELECT * FROM reports WHERE case_id = ? ORDER BY id",
                                (case_id,))]
        out["items"] = [item.to_dict() for item in self._items(case_id)]
        out.update(self._data(case_id))
        if events:
            out["events"] = [e.to_dict() for e in self.events(case_id)]
        return out

    def list_cases(self, *, state: str | None = None, limit: int | None = None,
                   offset: int = 0) -> list[dict[str, Any]]:
        sql = "SELECT id FROM cases"
        params: list[Any] = []
        if state:
            sql += " WHERE state = ?"
            params.append(state)
        sql += " ORDER BY created_at, id LIMIT ? OFFSET ?"
        params += [limit if limit is not None else -1, offset]
        out = []
        for r in self._read(sql, params):
            case = self.get_case(r["id"], events=False)
            if case is not None:
                out.append(case)
        return out

    def count_by_state(self) -> dict[str, int]:
        rows = self._read("SELECT state, count(*) AS n FROM cases GROUP BY state ORDER BY state")
        return {r["state"]: r["n"] for r in rows}

    def load_case(self, case_id: str) -> Case:
        row = self._case_row(case_id)
        if row is None:
            raise InputError(f"no case {case_id!r}")
        return Case(id=row["id"], url=row["url"], canonical_url=row["canonical_url"],
                    host=row["host"], domain=row["domain"], state=row["state"],
                    state_reason=row["state_reason"], created_at=row["created_at"],
                    updated_at=row["updated_at"], retry_at=row["retry_at"],
                    attempts=row["attempts"], items=tuple(self._items(case_id)),
                    data=self._data(case_id))

    def events(self, case_id: str) -> list[Event]:
        rows = self._read("SELECT * FROM events WHERE case_id = ? ORDER BY id", (case_id,))
        return [Event(at=r["at"], stage=r["stage"], actor=r["actor"], action=r["action"],
                      detail=json.loads(r["detail"] or "{}")) for r in rows]

    # -- pipeline ------------------------------------------------------------------------------
    def claim(self, states: Iterable[str], *, limit: int, owner: str, lease_seconds: float,
              now: str) -> list[str]:
        states = list(states)
        if not states or limit <= 0:
            return []
        until = clock.fmt(clock.parse(now) + timedelta(seconds=lease_seconds))
        candidates, params = claim_candidates_sql(states, now, limit)
        with self._write() as conn:
            rows = conn.execute(
                f"UPDATE cases SET lease_owner = ?, lease_until = ? WHERE id IN ("
                f" SELECT id FROM ({candidates}) ORDER BY updated_at, id LIMIT ?)"
                f" RETURNING id, updated_at", (owner, until, *params, limit)).fetchall()
        # RETURNING has no defined order: hand them out oldest first.
        return [r[0] for r in sorted(rows, key=lambda r: (r[1], r[0]))]

    def due_count(self, states: Iterable[str], now: str) -> int:
        states = list(states)
        if not states:
            return 0
        marks = ",".join("?" * len(states))
        rows = self._read(
            f"SELECT count(*) FROM cases WHERE state IN ({marks})"
            f" AND (retry_at IS NULL OR retry_at <= ?)"
            f" AND (lease_owner IS NULL OR lease_until < ?)", (*states, now, now))
        return int(rows[0][0])

    def release(self, case_ids: Iterable[str], owner: str) -> int:
        ids = list(case_ids)
        if not ids:
            return 0
        with self._write() as conn:
            cur = conn.executemany(
                "UPDATE cases SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?", [(i, owner) for i in ids])
            return cur.rowcount

    def release_owners(self, owners: Iterable[str]) -> int:
        owners = list(owners)
        if not owners:
            return 0
        with self._write() as conn:
            cur = conn.executemany(
                "UPDATE cases SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                [(o,) for o in owners])
            return cur.rowcount

    def lease_owners(self) -> dict[str, int]:
        rows = self._read("SELECT lease_owner, count(*) AS n FROM cases "
                          "WHERE lease_owner IS NOT NULL GROUP BY lease_owner")
        return {r["lease_owner"]: r["n"] for r in rows}

    def apply(self, commits: Sequence[Commit], now: str) -> list[str]:
        # A batch is a handful of multi-row statements, not several statements per commit: each
        # statement hands the GIL back and forth with the event loop, and per-commit
        # statements kept this writer thread busy most of a run waiting for it.
        lost: list[str] = []
        first: dict[str, Commit] = {}
        for c in commits:
            if c.case_id in first:
                lost.append(c.case_id)  # the first result took the lease with it
            else:
                first[c.case_id] = c
        with self._write() as conn:
            updated: set[str] = set()
            for chunk in _chunks(list(first.values()), _ROWS_PER_STATEMENT):
                params: list[Any] = []
                for c in chunk:
                    r = c.result
                    # Attempts count retries of one stage: a failure state or an engine error
                    # (a scheduled re-check that stays in its state is not a retry).
                    params += (c.case_id, c.owner, r.state, r.reason,
                               clock.fmt(r.retry_at) if r.retry_at else None,
                               0 if r.state in CLOSED_STATES else 1,
                               1 if (r.state in RETRY_STATES or r.action == "error") else 0)
                rows = conn.execute(
                    "WITH v(id, owner, state, reason, retry_at, is_open, retry) AS (VALUES "
                    + ",".join(["(?,?,?,?,?,?,?)"] * len(chunk)) + ")"
                    " UPDATE cases SET state = v.state, state_reason = v.reason,"
                    " retry_at = v.retry_at, updated_at = ?, lease_owner = NULL,"
                    " lease_until = NULL, is_open = v.is_open, parked_stage = NULL,"
                    " attempts = CASE WHEN v.retry THEN cases.attempts + 1 ELSE 0 END"
                    " FROM v WHERE cases.id = v.id AND cases.lease_owner = v.owner"
                    " RETURNING cases.id", (*params, now)).fetchall()
                updated.update(r[0] for r in rows)
            lost += [case_id for case_id in first if case_id not in updated]
            self._effects(conn, now, [
                _Effects(c.case_id, c.stage, c.actor, c.result.action, c.result.reason,
                         c.result.detail, c.result.items, c.result.data, c.result.outbox)
                for c in first.values() if c.case_id in updated])
        return lost

    def _write_effects(self, conn: sqlite3.Connection, case_id: str, now: str, *, stage: str,
                       actor: str, action: str, reason: str | None, detail: dict[str, Any],
                       items: Sequence[Item] = (), data: dict[str, Any] | None = None,
                       outbox: Sequence[dict[str, Any]] = ()) -> None:
        self._effects(conn, now, [_Effects(case_id, stage, actor, action, reason, detail, items,
                                           data, outbox)])

    @staticmethod
    def _effects(conn: sqlite3.Connection, now: str, batch: Sequence[_Effects]) -> None:
        """Items, case data, outbox entries and one trail event per case, in multi-row
        statements."""
        items, data, outbox, events = [], [], [], []
        for e in batch:
            items += [(e.case_id, i.url, i.kind, i.status, i.content_type, i.size, i.final_url,
                       i.error, _dumps(i.hashes), _dumps(i.matches), now, now) for i in e.items]
            data += [(e.case_id, key, _dumps(value)) for key, value in (e.data or {}).items()]
            outbox += [(n.get("id") or new_id("N"), e.case_id, now, _dumps(n)) for n in e.outbox]
            event_detail = dict(e.detail)
            if e.reason:
                event_detail.setdefault("reason", e.reason)
            events.append((e.case_id, now, e.stage, e.actor, e.action, _dumps(event_detail)))
        _insert_rows(conn, "INSERT INTO items(case_id, url, kind, status, content_type, size,"
                     " final_url, error, hashes, matches, created_at, updated_at) VALUES {}"
                     " ON CONFLICT(case_id, url) DO UPDATE SET kind=excluded.kind,"
                     " status=excluded.status, content_type=excluded.content_type,"
                     " size=excluded.size, final_url=excluded.final_url, error=excluded.error,"
                     " hashes=excluded.hashes, matches=excluded.matches,"
                     " updated_at=excluded.updated_at", items)
        _insert_rows(conn, "INSERT INTO case_data(case_id, key, value) VALUES {}"
                     " ON CONFLICT(case_id, key) DO UPDATE SET value = excluded.value", data)
        _insert_rows(conn, "INSERT INTO outbox(id, case_id, created_at, payload) VALUES {}",
                     outbox)
        _insert_rows(conn, "INSERT INTO events(case_id, at, stage, actor, action, detail)"
                     " VALUES {}", events)

    def park(self, states: Iterable[str], stage: str, now: str) -> int:
        # Parking keeps the case's lifecycle state and says why nothing happens to it.
        states = list(states)
        marks = ",".join("?" * len(states))
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM cases WHERE state IN ({marks}) AND parked_stage IS NULL",
                states)]
            reason = f"waiting for a plugin that implements the {stage} stage"
            conn.executemany(
                "UPDATE cases SET parked_stage = ?, state_reason = ?, updated_at = ?"
                " WHERE id = ?", [(stage, reason, now, i) for i in ids])
            conn.executemany(
                "INSERT INTO events(case_id, at, stage, actor, action, detail) "
                "VALUES (?,?,?,?,?,?)",
                [(i, now, stage, "engine", "parked", _dumps({"reason": reason})) for i in ids])
        return len(ids)

    def unpark(self, stage: str, now: str) -> int:
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM cases WHERE parked_stage = ?", (stage,))]
            conn.executemany(
                "UPDATE cases SET parked_stage = NULL, state_reason = NULL, updated_at = ?"
                " WHERE id = ?", [(now, i) for i in ids])
            conn.executemany(
                "INSERT INTO events(case_id, at, stage, actor, action, detail) "
                "VALUES (?,?,?,?,?,?)",
                [(i, now, stage, "engine", "unparked", "{}") for i in ids])
        return len(ids)

    def transition(self, case_id: str, *, state: str, stage: str, actor: str, action: str,
                   now: str, reason: str | None = None, detail: dict[str, Any] | None = None,
                   data: dict[str, Any] | None = None, expect: Iterable[str] | None = None,
                   ) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT state FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None:
                raise InputError(f"no case {case_id!r}")
            allowed = list(expect) if expect is not None else None
            if allowed is not None and row[0] not in allowed:
                raise InputError(
                    f"case {case_id} is {row[0]}; this needs one of: {', '.join(allowed)}")
            conn.execute(
                "UPDATE cases SET state = ?, state_reason = ?, retry_at = NULL, updated_at = ?,"
                " is_open = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (state, reason, now, 0 if state in CLOSED_STATES else 1, case_id))
            self._write_effects(conn, case_id, now, stage=stage, actor=actor, action=action,
                                reason=reason, detail=detail or {}, data=data)

    # -- known-hash lists ----------------------------------------------------------------------
    def _bump_generation(self, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES ('hashlist_generation', '1')"
                     " ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")

    def import_hashlist(self, *, name: str, source: str | None, trust: str, negative: bool,
                        thresholds: dict[str, int], entries: Iterable[tuple[str, str, str,
                                                                          str | None,
                                                                          str | None]],
                        now: str) -> int:
        with self._write() as conn:
            conn.execute("DELETE FROM hashlists WHERE name = ?", (name,))
            conn.execute("INSERT INTO hashlists(name, source, trust, negative, thresholds,"
                         " entries, imported_at) VALUES (?,?,?,?,?,0,?)",
                         (name, source, trust, 1 if negative else 0, _dumps(thresholds), now))
            count = self._insert_entries(conn, name, entries)
            conn.execute("UPDATE hashlists SET entries = ? WHERE name = ?", (count, name))
            self._bump_generation(conn)
        return count

    @staticmethod
    def _insert_entries(conn: sqlite3.Connection, name: str,
                        entries: Iterable[tuple[str, str, str, str | None, str | None]]) -> int:
        count = 0
        batch: list[tuple[Any, ...]] = []
        for entry in entries:
            batch.append((name, *entry))
            if len(batch) >= 10_000:
                conn.executemany("INSERT INTO hashlist_entries(list, hash_type, hash, category,"
                                 " label, source) VALUES (?,?,?,?,?,?)", batch)
                count += len(batch)
                batch = []
        conn.executemany("INSERT INTO hashlist_entries(list, hash_type, hash, category,"
                         " label, source) VALUES (?,?,?,?,?,?)", batch)
        return count + len(batch)

    def add_hashlist_entries(self, name: str, entries: Iterable[tuple[str, str, str,
                                                                     str | None, str | None]],
                             *, now: str, trust: str = "auto", negative: bool = False,
                             source: str | None = None) -> int:
        with self._write() as conn:
            conn.execute("INSERT INTO hashlists(name, source, trust, negative, thresholds,"
                         " entries, imported_at) VALUES (?,?,?,?,'{}',0,?)"
                         " ON CONFLICT(name) DO NOTHING",
                         (name, source, trust, 1 if negative else 0, now))
            present = {(r[0], r[1]) for r in conn.execute(
                "SELECT hash_type, hash FROM hashlist_entries WHERE list = ?", (name,))}
            fresh = [e for e in entries if (e[0], e[1]) not in present]
            added = self._insert_entries(conn, name, fresh)
            conn.execute("UPDATE hashlists SET entries = entries + ?, imported_at = ?"
                         " WHERE name = ?", (added, now, name))
            if added:
                self._bump_generation(conn)
        return added

    def hashlists(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM hashlists ORDER BY name")
        return [{"name": r["name"], "source": r["source"], "trust": r["trust"],
                 "negative": bool(r["negative"]), "thresholds": json.loads(r["thresholds"]),
                 "entries": r["entries"], "imported_at": r["imported_at"]} for r in rows]

    def remove_hashlist(self, name: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM hashlists WHERE name = ?", (name,))
            if cur.rowcount:
                self._bump_generation(conn)
            return cur.rowcount > 0

    def hashlist_entries(self) -> Iterator[tuple[int, str, str, str, str]]:
        # A separate cursor on the same connection: fine for the reader thread that owns it.
        with self._lock:
            cur = self.conn.execute(
                "SELECT id, list, hash_type, hash, category FROM hashlist_entries ORDER BY id")
            while True:
                rows = cur.fetchmany(50_000)
                if not rows:
                    return
                for r in rows:
                    yield (r[0], r[1], r[2], r[3], r[4])

    def hashlist_generation(self) -> int:
        rows = self._read("SELECT value FROM meta WHERE key = 'hashlist_generation'")
        return int(rows[0][0]) if rows else 0

    # -- lookup cache, contacts book -----------------------------------------------------------
    def cache_get(self, namespace: str, key: str, now: str) -> Any | None:
        rows = self._read("SELECT value FROM cache WHERE namespace = ? AND key = ?"
                          " AND expires_at > ?", (namespace, key, now))
        return json.loads(rows[0][0]) if rows else None

    def cache_put(self, namespace: str, key: str, value: Any, expires_at: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO cache(namespace, key, value, expires_at) VALUES (?,?,?,?)"
                         " ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value,"
                         " expires_at = excluded.expires_at",
                         (namespace, key, _dumps(value), expires_at))

    def cache_items(self, namespace: str, now: str) -> list[tuple[str, Any]]:
        rows = self._read("SELECT key, value FROM cache WHERE namespace = ? AND expires_at > ?",
                          (namespace, now))
        return [(r[0], json.loads(r[1])) for r in rows]

    def contacts_add(self, *, match_kind: str, match_value: str, scope: str, channel: str,
                     address: str, priority: int = 0, note: str | None = None,
                     now: str) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO contacts(match_kind, match_value, scope, channel, address,"
                " priority, note, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (match_kind, match_value.lower(), scope, channel, address, priority, note, now))
            return int(cur.lastrowid or 0)

    def contacts_list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._read("SELECT * FROM contacts ORDER BY id")]

    def contacts_remove(self, contact_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM contacts WHERE id = ?",
                                (contact_id,)).rowcount > 0

    def contact_failed(self, address: str, error: str, now: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO contact_health(address, failures, last_error, updated_at)"
                         " VALUES (?, 1, ?, ?) ON CONFLICT(address) DO UPDATE SET"
                         " failures = failures + 1, last_error = excluded.last_error,"
                         " updated_at = excluded.updated_at", (address.lower(), error, now))

    def contact_failures(self, addresses: Iterable[str]) -> dict[str, int]:
        wanted = [a.lower() for a in addresses]
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._read(f"SELECT address, failures FROM contact_health"
                          f" WHERE address IN ({marks})", wanted)
        return {r[0]: r[1] for r in rows}

    # -- reporter data, retention, audit -------------------------------------------------------
    _PROCESSED = ("matched", "suppressed", "verdict")

    def reporters(self, *, phone_mac: str | None = None, username_mac: str | None = None,
                  case_id: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        for column, value in (("phone_mac", phone_mac), ("username_mac", username_mac),
                              ("r.case_id", case_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if not where:
            return []
        rows = self._read(
            "SELECT r.*, k.wrapped_key FROM reporters r LEFT JOIN reporter_keys k"
            f" ON k.reporter_id = r.id WHERE {' OR '.join(where)} ORDER BY r.created_at", params)
        return [dict(r) for r in rows]

    def erase_reporters(self, reporter_ids: Iterable[str]) -> int:
        ids = [(i,) for i in reporter_ids]
        with self._write() as conn:
            conn.executemany("DELETE FROM reporter_keys WHERE reporter_id = ?", ids)
            return conn.executemany("DELETE FROM reporters WHERE id = ?", ids).rowcount

    def restrict_reporters(self, reporter_ids: Iterable[str], restricted: bool) -> int:
        with self._write() as conn:
            return conn.executemany("UPDATE reporters SET restricted = ? WHERE id = ?",
                                    [(1 if restricted else 0, i) for i in reporter_ids]).rowcount

    def _processed_cases_sql(self) -> str:
        marks = ",".join(f"'{a}'" for a in self._PROCESSED)
        return (f"SELECT case_id, min(at) AS processed_at FROM events WHERE action IN ({marks})"
                f" GROUP BY case_id")

    def feedback_due(self) -> list[dict[str, Any]]:
        rows = self._read(
            f"SELECT r.id, r.case_id, r.app, r.created_at, p.processed_at, c.state"
            f" FROM reporters r JOIN ({self._processed_cases_sql()}) p ON p.case_id = r.case_id"
            f" JOIN cases c ON c.id = r.case_id"
            f" WHERE r.feedback_sent_at IS NULL AND r.restricted = 0 ORDER BY p.processed_at")
        return [dict(r) for r in rows]

    def feedback_sent(self, case_id: str, now: str) -> int:
        with self._write() as conn:
            return conn.execute("UPDATE reporters SET feedback_sent_at = ? WHERE case_id = ?"
                                " AND feedback_sent_at IS NULL", (now, case_id)).rowcount

    def purge_reporters(self, *, now: str, max_hours: float, dry_run: bool = False) -> int:
        cutoff = clock.fmt(clock.parse(now) - timedelta(hours=max_hours))
        sql = (f"SELECT r.id FROM reporters r JOIN ({self._processed_cases_sql()}) p"
               f" ON p.case_id = r.case_id WHERE r.restricted = 0 AND"
               f" (r.feedback_sent_at IS NOT NULL OR p.processed_at <= ?)")
        ids = [r[0] for r in self._read(sql, (cutoff,))]
        if not dry_run and ids:
            self.erase_reporters(ids)
        return len(ids)

    def anonymise_cases(self, *, now: str, closed_days: float, max_days: float,
                        dry_run: bool = False) -> int:
        finished = ("closed", "removed", "dismissed", "failed")
        closed_cut = clock.fmt(clock.parse(now) - timedelta(days=closed_days))
        max_cut = clock.fmt(clock.parse(now) - timedelta(days=max_days))
        marks = ",".join("?" * len(finished))
        ids = [r[0] for r in self._read(
            f"SELECT id FROM cases WHERE anonymised_at IS NULL AND ((state IN ({marks})"
            f" AND updated_at <= ?) OR created_at <= ?)", (*finished, closed_cut, max_cut))]
        if dry_run or not ids:
            return len(ids)
        # Reporters of these cases go first, whatever their feedback state.
        for case_id in ids:
            with self._write() as conn:
                self._anonymise_one(conn, case_id, now)
            self.erase_reporters(r["id"] for r in self.reporters(case_id=case_id))
        return len(ids)

    @staticmethod
    def _anonymise_one(conn: sqlite3.Connection, case_id: str, now: str) -> None:
        row = conn.execute("SELECT canonical_url, domain FROM cases WHERE id = ?",
                           (case_id,)).fetchone()
        scheme = row[0].split(":", 1)[0]
        anon = f"{scheme}://{row[1]}/"
        conn.execute("UPDATE cases SET url = ?, canonical_url = ?, host = ?, state = 'anonymised',"
                     " state_reason = NULL, retry_at = NULL, is_open = 0, anonymised_at = ?,"
                     " updated_at = ? WHERE id = ?", (anon, anon, row[1], now, now, case_id))
        conn.execute("UPDATE reports SET raw_url = ?, metadata = NULL WHERE case_id = ?",
                     (anon, case_id))
        conn.execute("UPDATE items SET url = ? || '#item-' || id, final_url = NULL"
                     " WHERE case_id = ?", (anon, case_id))
        data = conn.execute("SELECT value FROM case_data WHERE case_id = ? AND key = ?",
                            (case_id, "resolution")).fetchone()
        if data:
            resolution = json.loads(data[0])
            resolution["host"] = row[1]
            conn.execute("UPDATE case_data SET value = ? WHERE case_id = ? AND key = ?",
                         (_dumps(resolution), case_id, "resolution"))
        # The trail is append-only for edits; retention rewrites it whole, without free text
        # and URLs, keeping its order.
        events = conn.execute("SELECT at, stage, actor, action, detail FROM events"
                              " WHERE case_id = ? ORDER BY id", (case_id,)).fetchall()
        conn.execute("DELETE FROM events WHERE case_id = ?", (case_id,))
        drop = {"note", "item", "url", "urls", "input"}
        for at, stage, actor, action, detail in events:
            clean = {k: v for k, v in json.loads(detail or "{}").items() if k not in drop}
            conn.execute("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                         " VALUES (?,?,?,?,?,?)",
                         (case_id, at, stage, actor, action, _dumps(clean)))
        conn.execute("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                     " VALUES (?,?,?,?,?,?)", (case_id, now, "retention", "engine",
                                               "anonymised", "{}"))

    def vacuum(self) -> None:
        with self._lock:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def audit(self, *, actor: str, action: str, obj: str, now: str,
              detail: dict[str, Any] | None = None) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO audit(at, actor, action, object, detail) VALUES (?,?,?,?,?)",
                         (now, actor, action, obj, _dumps(detail or {})))

    def audit_log(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        rows = self._read("SELECT at, actor, action, object, detail FROM audit ORDER BY id"
                          " LIMIT ?", (limit if limit is not None else -1,))
        return [{"at": r[0], "actor": r[1], "action": r[2], "object": r[3],
                 "detail": json.loads(r[4] or "{}")} for r in rows]

