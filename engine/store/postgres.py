"""PostgreSQL backend (psycopg 3): many ``ntd`` workers on many hosts share one database.

Same behaviour as the SQLite backend (``engine.store.sqlite``), same schema (the ``postgresql``
dialect of ``engine.store.migrations``), same text timestamps. What differs is how exclusivity is
obtained: SQLite has one writer (``BEGIN IMMEDIATE``); here workers claim cases with
``FOR UPDATE SKIP LOCKED`` so concurrent claimers never wait on, nor take, each other's rows, and
``apply`` commits a result only while its lease is still held. Operations whose SQLite version
relies on the single writer (intake's one-open-case-per-URL check, notice aggregation, migrations)
take a transaction-scoped advisory lock instead.

The store is synchronous: the pipeline calls it from one dedicated thread (``AsyncStore``). It
holds a small ``psycopg_pool.ConnectionPool`` (autocommit connections; writes open an explicit
transaction), so a streamed read such as ``hashlist_entries`` never blocks other calls.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from engine import clock
from engine.errors import InputError, StorageError
from engine.ids import new_id
from engine.models import CLOSED_STATES, Case, Event, Item
from engine.store.base import Commit, IntakeOutcome, IntakeRow, Store, claim_candidates_sql
from engine.store.migrations import MIGRATIONS
from engine.store.postgres_notices import PostgresNoticeMixin
from engine.store.postgres_stats import PostgresStatsMixin
from engine.store.postgres_users import PostgresUsersMixin

T = TypeVar("T")
# States that mean "this stage failed; try again later" (as in the SQLite backend).
RETRY_STATES = frozenset({"unreachable", "unresolved"})
# Transient conflicts between concurrent transactions: the whole transaction is retried.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure,
              pg_errors.LockNotAvailable)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def advisory_key(name: str) -> int:
    """A stable 32-bit key for ``pg_advisory_xact_lock`` derived from a lock name."""
    return zlib.crc32(f"ntd:{name}".encode())


def describe_url(url: str) -> str:
    """``user@host:port/dbname`` of a PostgreSQL URL, never its password (for messages)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://?"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', 'localhost')}{port}/{parts.get('dbname', '')}"


class PostgresStore(PostgresNoticeMixin, PostgresStatsMixin, PostgresUsersMixin, Store):
    """Case store in a PostgreSQL database (``postgresql://`` or ``postgres://`` URL)."""

    dialect = "postgresql"

    def __init__(self, url: str, *, max_connections: int = 4, connect_timeout: float = 10.0
                 ) -> None:
        self.url = url
        self.where = describe_url(url)
        try:
            self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
                url, min_size=1, max_size=max(1, max_connections), open=False,
                kwargs={"autocommit": True, "row_factory": dict_row},
                name="ntd-store", timeout=connect_timeout)
            self.pool.open(wait=True, timeout=connect_timeout)
        except (psycopg.Error, PoolTimeout) as exc:
            self._close_quietly()
            raise StorageError(f"cannot connect to {self.where}: {exc}") from exc

    def clone(self) -> PostgresStore:
        """Another store on the same database with its own pool (for other threads)."""
        return PostgresStore(self.url, max_connections=self.pool.max_size)

    def _close_quietly(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One transaction on a pooled connection (committed on success, rolled back else)."""
        with self._conn() as conn, conn.transaction():
            yield conn

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection, with database errors mapped to ``StorageError``."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except _RETRYABLE:
            raise  # the caller's retry loop handles these
        except PoolTimeout as exc:
            raise StorageError(f"{self.where}: no database connection available: {exc}") from exc
        except pg_errors.RaiseException as exc:
            raise StorageError(f"{self.where}: {exc.diag.message_primary}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {exc}") from exc

    def _retrying(self, fn: Callable[[psycopg.Connection[dict[str, Any]]], T],
                  attempts: int = 5) -> T:
        """Run ``fn(conn)`` in a transaction, retrying it after a deadlock or serialisation
        failure (the transaction was rolled back, so running it again is safe)."""
        for attempt in range(attempts):
            try:
                with self._write() as conn:
                    return fn(conn)
            except _RETRYABLE as exc:
                if attempt == attempts - 1:
                    raise StorageError(f"{self.where}: gave up after {attempts} conflicting "
                                       f"attempts: {exc}") from exc
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.pool.close()

    # -- schema --------------------------------------------------------------------------------
    @staticmethod
    def _version(conn: psycopg.Connection[dict[str, Any]]) -> int:
        row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS present"
                           ).fetchone()
        if not row or not row["present"]:
            return 0
        found = conn.execute("SELECT max(version) AS v FROM schema_version").fetchone()
        return int(found["v"] or 0) if found else 0

    def schema_version(self) -> int:
        with self._conn() as conn:
            return self._version(conn)

    def migrate(self) -> int:
        newest = max(MIGRATIONS)
        while True:
            # The advisory lock serialises concurrent start-ups: the second worker waits, then
            # sees the first one's versions and applies nothing twice.
            with self._write() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("migrate"),))
                current = self._version(conn)
                if current > newest:
                    raise StorageError(f"{self.where} is at schema version {current}, "
                                       f"newer than this ntd ({newest})")
                if current == newest:
                    return newest
                version = current + 1
                for statement in MIGRATIONS[version]["postgresql"]:
                    conn.execute(statement)  # type: ignore[arg-type]  # literal DDL
                conn.execute("INSERT INTO schema_version(version, applied_at) VALUES (%s, %s)",
                             (version, clock.Clock().now_text()))

    # -- intake --------------------------------------------------------------------------------
    def create_batch(self, *, channel: str, source: str, at: str) -> str:
        batch_id = new_id("B")
        with self._write() as conn:
            conn.execute("INSERT INTO batches(id, channel, source, created_at)"
                         " VALUES (%s,%s,%s,%s)", (batch_id, channel, source, at))
        return batch_id

    def add_reports(self, batch_id: str, channel: str, at: str,
                    rows: Sequence[IntakeRow]) -> IntakeOutcome:
        if not rows:
            return IntakeOutcome(accepted=0, duplicates=0)
        accepted = duplicates = 0
        case_ids: list[str] = []
        with self._write() as conn:
            # Intake is serialised (as SQLite's single writer does) so two submitters of the
            # same URL link to one case instead of colliding on the open-URL index.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("intake"),))
            wanted = list({row.canonical_url for row in rows})
            open_cases: dict[str, str] = {}
            for found in conn.execute(
                    "SELECT canonical_url, id FROM cases WHERE is_open = 1"
                    " AND canonical_url = ANY(%s)", (wanted,)):
                open_cases[found["canonical_url"]] = found["id"]
            new_cases = []
            new_events = []
            reports = []
            created = _dumps({"batch": batch_id})
            for row in rows:
                case_id = open_cases.get(row.canonical_url)
                duplicate = case_id is not None
                if case_id is None:
                    case_id = new_id("C")
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
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO cases(id, url, canonical_url, host, domain, state, created_at,"
                    " updated_at) VALUES (%s,%s,%s,%s,%s,'new',%s,%s)", new_cases)
                plain = [r for r, row in zip(reports, rows, strict=True) if row.reporter is None]
                cur.executemany(
                    "INSERT INTO reports(case_id, batch_id, channel, received_at, raw_url,"
                    " metadata, duplicate, line) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", plain)
                for report, row in zip(reports, rows, strict=True):
                    if row.reporter is not None:
                        self._insert_with_reporter(conn, report, row.reporter, at)
                cur.executemany(
                    "INSERT INTO events(case_id, at, stage, actor, action, detail)"
                    " VALUES (%s,%s,%s,%s,%s,%s)", new_events)
        return IntakeOutcome(accepted=accepted, duplicates=duplicates, case_ids=tuple(case_ids))

    @staticmethod
    def _insert_with_reporter(conn: psycopg.Connection[dict[str, Any]],
                              report: tuple[Any, ...], reporter: tuple[Any, ...],
                              at: str) -> None:
        found = conn.execute(
            "INSERT INTO reports(case_id, batch_id, channel, received_at, raw_url, metadata,"
            " duplicate, line) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id", report).fetchone()
        assert found is not None
        rid, app, phone_mac, username_mac, sealed, wrapped, police = reporter
        conn.execute(
            "INSERT INTO reporters(id, report_id, case_id, app, phone_mac, username_mac, sealed,"
            " contact_police, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (rid, found["id"], report[0], app, phone_mac, username_mac, sealed,
             1 if police else 0, at))
        conn.execute("INSERT INTO reporter_keys(reporter_id, wrapped_key) VALUES (%s,%s)",
                     (rid, wrapped))

    def finish_batch(self, batch_id: str, *, accepted: int, duplicates: int,
                     rejected: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE batches SET accepted=%s, duplicates=%s, rejected=%s"
                         " WHERE id=%s", (accepted, duplicates, rejected, batch_id))

    # -- reading -------------------------------------------------------------------------------
    def _case_row(self, case_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM cases WHERE id = %s", (case_id,))
        return rows[0] if rows else None

    def _items(self, case_id: str) -> list[Item]:
        rows = self._read("SELECT * FROM items WHERE case_id = %s ORDER BY id", (case_id,))
        return [Item(id=r["id"], url=r["url"], kind=r["kind"], status=r["status"],
                     content_type=r["content_type"], size=r["size"], final_url=r["final_url"],
                     error=r["error"], hashes=json.loads(r["hashes"] or "{}"),
                     matches=json.loads(r["matches"] or "[]")) for r in rows]

    def _data(self, case_id: str) -> dict[str, Any]:
        rows = self._read("SELECT key, value FROM case_data WHERE case_id = %s", (case_id,))
        return {r["key"]: json.loads(r["value"]) for r in rows}

    @staticmethod
    def _case_dict(row: dict[str, Any]) -> dict[str, Any]:
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
            for r in self._read("SELECT * FROM reports WHERE case_id = %s ORDER BY id",
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
            sql += " WHERE state = %s"
            params.append(state)
        sql += " ORDER BY created_at, id LIMIT %s OFFSET %s"
        params += [limit, offset]  # LIMIT NULL is no limit
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
        rows = self._read("SELECT * FROM events WHERE case_id = %s ORDER BY id", (case_id,))
        return [Event(at=r["at"], stage=r["stage"], actor=r["actor"], action=r["action"],
                      detail=json.loads(r["detail"] or "{}")) for r in rows]

    # -- pipeline ------------------------------------------------------------------------------
    def claim(self, states: Iterable[str], *, limit: int, owner: str, lease_seconds: float,
              now: str) -> list[str]:
        states = list(states)
        if not states or limit <= 0:
            return []
        until = clock.fmt(clock.parse(now) + timedelta(seconds=lease_seconds))
        # SKIP LOCKED: a row another claimer is taking right now is skipped, never waited for
        # and never taken twice; the outer UPDATE sets the lease in the same statement. One
        # statement is atomic on its own: autocommit saves the BEGIN/COMMIT round trips.
        # The candidates are found without locks; the locking SELECT checks them again on
        # their latest version, so a case another worker just leased is never taken twice.
        candidates, params = claim_candidates_sql(states, now, limit, mark="%s")
        with self._conn() as conn:
            rows = conn.execute(
                "UPDATE cases SET lease_owner = %s, lease_until = %s WHERE id IN ("
                f" SELECT id FROM cases WHERE id IN (SELECT id FROM ({candidates}) AS c)"
                " AND state = ANY(%s)"
                " AND (retry_at IS NULL OR retry_at <= %s)"
                " AND (lease_owner IS NULL OR lease_until < %s)"
                " ORDER BY updated_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING id, updated_at",
                (owner, until, *params, states, now, now, limit)).fetchall()
        # RETURNING has no order: hand them out oldest first, as SQLite does.
        return [r["id"] for r in sorted(rows, key=lambda r: (r["updated_at"], r["id"]))]

    def due_count(self, states: Iterable[str], now: str) -> int:
        states = list(states)
        if not states:
            return 0
        rows = self._read(
            "SELECT count(*) AS n FROM cases WHERE state = ANY(%s)"
            " AND (retry_at IS NULL OR retry_at <= %s)"
            " AND (lease_owner IS NULL OR lease_until < %s)", (states, now, now))
        return int(rows[0]["n"])

    def release(self, case_ids: Iterable[str], owner: str) -> int:
        ids = sorted(set(case_ids))
        if not ids:
            return 0

        def run(conn: psycopg.Connection[dict[str, Any]]) -> int:
            cur = conn.execute("UPDATE cases SET lease_owner = NULL, lease_until = NULL"
                               " WHERE id = ANY(%s) AND lease_owner = %s", (ids, owner))
            return cur.rowcount

        return self._retrying(run)

    def release_owners(self, owners: Iterable[str]) -> int:
        owners = list(owners)
        if not owners:
            return 0

        def run(conn: psycopg.Connection[dict[str, Any]]) -> int:
            cur = conn.execute("UPDATE cases SET lease_owner = NULL, lease_until = NULL"
                               " WHERE lease_owner = ANY(%s)", (owners,))
            return cur.rowcount

        return self._retrying(run)

    def lease_owners(self) -> dict[str, int]:
        rows = self._read("SELECT lease_owner, count(*) AS n FROM cases"
                          " WHERE lease_owner IS NOT NULL GROUP BY lease_owner")
        return {r["lease_owner"]: r["n"] for r in rows}

    def apply(self, commits: Sequence[Commit], now: str) -> list[str]:
        # Rows are locked in id order so two committers can never deadlock on each other.
        ordered = sorted(commits, key=lambda c: c.case_id)

        def run(conn: psycopg.Connection[dict[str, Any]]) -> list[str]:
            lost: list[str] = []
            for c in ordered:
                r = c.result
                retry_at = clock.fmt(r.retry_at) if r.retry_at else None
                cur = conn.execute(
                    "UPDATE cases SET state = %s, state_reason = %s, retry_at = %s,"
                    " updated_at = %s, lease_owner = NULL, lease_until = NULL, is_open = %s,"
                    " parked_stage = NULL,"
                    # Attempts count retries of one stage: a failure state, or staying put.
                    " attempts = CASE WHEN %s OR state = %s THEN attempts + 1 ELSE 0 END"
                    " WHERE id = %s AND lease_owner = %s",
                    (r.state, r.reason, retry_at, now, 0 if r.state in CLOSED_STATES else 1,
                     r.state in RETRY_STATES, r.state, c.case_id, c.owner))
                if cur.rowcount != 1:
                    lost.append(c.case_id)
                    continue
                self._write_effects(conn, c.case_id, now, stage=c.stage, actor=c.actor,
                                    action=r.action, reason=r.reason, detail=r.detail,
                                    items=r.items, data=r.data, outbox=r.outbox)
            return lost

        lost_ids = set(self._retrying(run))
        return [c.case_id for c in commits if c.case_id in lost_ids]

    def _write_effects(self, conn: psycopg.Connection[dict[str, Any]], case_id: str, now: str,
                       *, stage: str, actor: str, action: str, reason: str | None,
                       detail: dict[str, Any], items: Sequence[Item] = (),
                       data: dict[str, Any] | None = None,
                       outbox: Sequence[dict[str, Any]] = ()) -> None:
        with conn.cursor() as cur:
            if items:
                cur.executemany(
                    "INSERT INTO items(case_id, url, kind, status, content_type, size, final_url,"
                    " error, hashes, matches, created_at, updated_at)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT(case_id, url) DO UPDATE SET kind=excluded.kind,"
                    " status=excluded.status, content_type=excluded.content_type,"
                    " size=excluded.size, final_url=excluded.final_url, error=excluded.error,"
                    " hashes=excluded.hashes, matches=excluded.matches,"
                    " updated_at=excluded.updated_at",
                    [(case_id, item.url, item.kind, item.status, item.content_type, item.size,
                      item.final_url, item.error, _dumps(item.hashes), _dumps(item.matches),
                      now, now) for item in items])
            if data:
                cur.executemany(
                    "INSERT INTO case_data(case_id, key, value) VALUES (%s,%s,%s)"
                    " ON CONFLICT(case_id, key) DO UPDATE SET value = excluded.value",
                    [(case_id, key, _dumps(value)) for key, value in data.items()])
            if outbox:
                cur.executemany(
                    "INSERT INTO outbox(id, case_id, created_at, payload) VALUES (%s,%s,%s,%s)",
                    [(notice.get("id") or new_id("N"), case_id, now, _dumps(notice))
                     for notice in outbox])
        event_detail = dict(detail)
        if reason:
            event_detail.setdefault("reason", reason)
        conn.execute("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                     " VALUES (%s,%s,%s,%s,%s,%s)",
                     (case_id, now, stage, actor, action, _dumps(event_detail)))

    def park(self, states: Iterable[str], stage: str, now: str) -> int:
        # Parking keeps the case's lifecycle state and says why nothing happens to it. One
        # UPDATE … RETURNING: when several workers park at once, each case is parked (and gets
        # its event) once — the second updater re-checks ``parked_stage IS NULL`` and skips.
        states = list(states)
        reason = f"waiting for a plugin that implements the {stage} stage"

        def run(conn: psycopg.Connection[dict[str, Any]]) -> int:
            ids = [r["id"] for r in conn.execute(
                "UPDATE cases SET parked_stage = %s, state_reason = %s, updated_at = %s"
                " WHERE state = ANY(%s) AND parked_stage IS NULL RETURNING id",
                (stage, reason, now, states)).fetchall()]
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO events(case_id, at, stage, actor, action, detail)"
                    " VALUES (%s,%s,%s,%s,%s,%s)",
                    [(i, now, stage, "engine", "parked", _dumps({"reason": reason}))
                     for i in sorted(ids)])
            return len(ids)

        return self._retrying(run)

    def unpark(self, stage: str, now: str) -> int:
        def run(conn: psycopg.Connection[dict[str, Any]]) -> int:
            ids = [r["id"] for r in conn.execute(
                "UPDATE cases SET parked_stage = NULL, state_reason = NULL, updated_at = %s"
                " WHERE parked_stage = %s RETURNING id", (now, stage)).fetchall()]
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO events(case_id, at, stage, actor, action, detail)"
                    " VALUES (%s,%s,%s,%s,%s,%s)",
                    [(i, now, stage, "engine", "unparked", "{}") for i in sorted(ids)])
            return len(ids)

        return self._retrying(run)

    def transition(self, case_id: str, *, state: str, stage: str, actor: str, action: str,
                   now: str, reason: str | None = None, detail: dict[str, Any] | None = None,
                   data: dict[str, Any] | None = None, expect: Iterable[str] | None = None,
                   ) -> None:
        allowed = list(expect) if expect is not None else None

        def run(conn: psycopg.Connection[dict[str, Any]]) -> None:
            row = conn.execute("SELECT state FROM cases WHERE id = %s FOR UPDATE",
                               (case_id,)).fetchone()
            if row is None:
                raise InputError(f"no case {case_id!r}")
            if allowed is not None and row["state"] not in allowed:
                raise InputError(f"case {case_id} is {row['state']}; this needs one of: "
                                 f"{', '.join(allowed)}")
            conn.execute(
                "UPDATE cases SET state = %s, state_reason = %s, retry_at = NULL,"
                " updated_at = %s, is_open = %s, lease_owner = NULL, lease_until = NULL"
                " WHERE id = %s",
                (state, reason, now, 0 if state in CLOSED_STATES else 1, case_id))
            self._write_effects(conn, case_id, now, stage=stage, actor=actor, action=action,
                                reason=reason, detail=detail or {}, data=data)

        self._retrying(run)

    # -- known-hash lists ----------------------------------------------------------------------
    @staticmethod
    def _bump_generation(conn: psycopg.Connection[dict[str, Any]]) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES ('hashlist_generation', '1')"
                     " ON CONFLICT(key) DO UPDATE SET value = (meta.value::bigint + 1)::text")

    def import_hashlist(self, *, name: str, source: str | None, trust: str, negative: bool,
                        thresholds: dict[str, int], entries: Iterable[tuple[str, str, str,
                                                                          str | None,
                                                                          str | None]],
                        now: str) -> int:
        with self._write() as conn:
            conn.execute("DELETE FROM hashlists WHERE name = %s", (name,))
            conn.execute("INSERT INTO hashlists(name, source, trust, negative, thresholds,"
                         " entries, imported_at) VALUES (%s,%s,%s,%s,%s,0,%s)",
                         (name, source, trust, 1 if negative else 0, _dumps(thresholds), now))
            count = self._insert_entries(conn, name, entries)
            conn.execute("UPDATE hashlists SET entries = %s WHERE name = %s", (count, name))
            self._bump_generation(conn)
        return count

    @staticmethod
    def _insert_entries(conn: psycopg.Connection[dict[str, Any]], name: str,
                        entries: Iterable[tuple[str, str, str, str | None, str | None]]) -> int:
        # COPY streams a million entries in seconds where INSERTs would take minutes.
        count = 0
        with conn.cursor() as cur, cur.copy(
                "COPY hashlist_entries (list, hash_type, hash, category, label, source)"
                " FROM STDIN") as copy:
            for entry in entries:
                copy.write_row((name, *entry))
                count += 1
        return count

    def add_hashlist_entries(self, name: str, entries: Iterable[tuple[str, str, str,
                                                                     str | None, str | None]],
                             *, now: str, trust: str = "auto", negative: bool = False,
                             source: str | None = None) -> int:
        with self._write() as conn:
            conn.execute("INSERT INTO hashlists(name, source, trust, negative, thresholds,"
                         " entries, imported_at) VALUES (%s,%s,%s,%s,'{}',0,%s)"
                         " ON CONFLICT(name) DO NOTHING",
                         (name, source, trust, 1 if negative else 0, now))
            # Lock the list so two writers appending the same entries add them once.
            conn.execute("SELECT name FROM hashlists WHERE name = %s FOR UPDATE", (name,))
            present = {(r["hash_type"], r["hash"]) for r in conn.execute(
                "SELECT hash_type, hash FROM hashlist_entries WHERE list = %s", (name,))}
            fresh = [e for e in entries if (e[0], e[1]) not in present]
            added = self._insert_entries(conn, name, fresh)
            conn.execute("UPDATE hashlists SET entries = entries + %s, imported_at = %s"
                         " WHERE name = %s", (added, now, name))
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
            cur = conn.execute("DELETE FROM hashlists WHERE name = %s", (name,))
            if cur.rowcount:
                self._bump_generation(conn)
            return cur.rowcount > 0

    def hashlist_entries(self) -> Iterator[tuple[int, str, str, str, str]]:
        # A server-side cursor on its own pooled connection: streamed in 50,000-row pages.
        with self._conn() as conn, conn.transaction(), conn.cursor(
                name="ntd_hashlist_entries", row_factory=psycopg.rows.tuple_row) as cur:
            cur.itersize = 50_000
            cur.execute("SELECT id, list, hash_type, hash, category FROM hashlist_entries"
                        " ORDER BY id")
            for r in cur:
                yield (r[0], r[1], r[2], r[3], r[4])

    def hashlist_generation(self) -> int:
        rows = self._read("SELECT value FROM meta WHERE key = 'hashlist_generation'")
        return int(rows[0]["value"]) if rows else 0

    # -- lookup cache, contacts book -----------------------------------------------------------
    def cache_get(self, namespace: str, key: str, now: str) -> Any | None:
        rows = self._read("SELECT value FROM cache WHERE namespace = %s AND key = %s"
                          " AND expires_at > %s", (namespace, key, now))
        return json.loads(rows[0]["value"]) if rows else None

    def cache_put(self, namespace: str, key: str, value: Any, expires_at: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO cache(namespace, key, value, expires_at)"
                         " VALUES (%s,%s,%s,%s)"
                         " ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value,"
                         " expires_at = excluded.expires_at",
                         (namespace, key, _dumps(value), expires_at))

    def cache_items(self, namespace: str, now: str) -> list[tuple[str, Any]]:
        rows = self._read("SELECT key, value FROM cache WHERE namespace = %s"
                          " AND expires_at > %s", (namespace, now))
        return [(r["key"], json.loads(r["value"])) for r in rows]

    def contacts_add(self, *, match_kind: str, match_value: str, scope: str, channel: str,
                     address: str, priority: int = 0, note: str | None = None,
                     now: str) -> int:
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO contacts(match_kind, match_value, scope, channel, address,"
                " priority, note, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                (match_kind, match_value.lower(), scope, channel, address, priority, note,
                 now)).fetchone()
            return int(row["id"]) if row else 0

    def contacts_list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._read("SELECT * FROM contacts ORDER BY id")]

    def contacts_remove(self, contact_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM contacts WHERE id = %s",
                                (contact_id,)).rowcount > 0

    def contact_failed(self, address: str, error: str, now: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO contact_health(address, failures, last_error, updated_at)"
                         " VALUES (%s, 1, %s, %s) ON CONFLICT(address) DO UPDATE SET"
                         " failures = contact_health.failures + 1,"
                         " last_error = excluded.last_error, updated_at = excluded.updated_at",
                         (address.lower(), error, now))

    def contact_failures(self, addresses: Iterable[str]) -> dict[str, int]:
        wanted = [a.lower() for a in addresses]
        if not wanted:
            return {}
        rows = self._read("SELECT address, failures FROM contact_health"
                          " WHERE address = ANY(%s)", (wanted,))
        return {r["address"]: r["failures"] for r in rows}

    # -- reporter data, retention, audit -------------------------------------------------------
    _PROCESSED = ("matched", "suppressed", "verdict")

    def reporters(self, *, phone_mac: str | None = None, username_mac: str | None = None,
                  case_id: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        for column, value in (("phone_mac", phone_mac), ("username_mac", username_mac),
                              ("r.case_id", case_id)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if not where:
            return []
        rows = self._read(
            "SELECT r.*, k.wrapped_key FROM reporters r LEFT JOIN reporter_keys k"
            f" ON k.reporter_id = r.id WHERE {' OR '.join(where)} ORDER BY r.created_at",
            params)
        return [dict(r) for r in rows]

    def erase_reporters(self, reporter_ids: Iterable[str]) -> int:
        ids = sorted(set(reporter_ids))
        with self._write() as conn:
            conn.execute("DELETE FROM reporter_keys WHERE reporter_id = ANY(%s)", (ids,))
            return conn.execute("DELETE FROM reporters WHERE id = ANY(%s)", (ids,)).rowcount

    def restrict_reporters(self, reporter_ids: Iterable[str], restricted: bool) -> int:
        ids = sorted(set(reporter_ids))
        with self._write() as conn:
            return conn.execute("UPDATE reporters SET restricted = %s WHERE id = ANY(%s)",
                                (1 if restricted else 0, ids)).rowcount

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
            return conn.execute("UPDATE reporters SET feedback_sent_at = %s WHERE case_id = %s"
                                " AND feedback_sent_at IS NULL", (now, case_id)).rowcount

    def purge_reporters(self, *, now: str, max_hours: float, dry_run: bool = False) -> int:
        cutoff = clock.fmt(clock.parse(now) - timedelta(hours=max_hours))
        sql = (f"SELECT r.id FROM reporters r JOIN ({self._processed_cases_sql()}) p"
               f" ON p.case_id = r.case_id WHERE r.restricted = 0 AND"
               f" (r.feedback_sent_at IS NOT NULL OR p.processed_at <= %s)")
        ids = [r["id"] for r in self._read(sql, (cutoff,))]
        if not dry_run and ids:
            self.erase_reporters(ids)
        return len(ids)

    def anonymise_cases(self, *, now: str, closed_days: float, max_days: float,
                        dry_run: bool = False) -> int:
        finished = ["closed", "removed", "dismissed", "failed"]
        closed_cut = clock.fmt(clock.parse(now) - timedelta(days=closed_days))
        max_cut = clock.fmt(clock.parse(now) - timedelta(days=max_days))
        ids = [r["id"] for r in self._read(
            "SELECT id FROM cases WHERE anonymised_at IS NULL AND ((state = ANY(%s)"
            " AND updated_at <= %s) OR created_at <= %s)", (finished, closed_cut, max_cut))]
        if dry_run or not ids:
            return len(ids)
        # Reporters of these cases go first, whatever their feedback state.
        for case_id in ids:
            self._retrying(partial(self._anonymise_one, case_id=case_id, now=now))
            self.erase_reporters(r["id"] for r in self.reporters(case_id=case_id))
        return len(ids)

    @staticmethod
    def _anonymise_one(conn: psycopg.Connection[dict[str, Any]], case_id: str,
                       now: str) -> None:
        row = conn.execute("SELECT canonical_url, domain FROM cases WHERE id = %s FOR UPDATE",
                           (case_id,)).fetchone()
        if row is None or row["canonical_url"] is None:
            return
        scheme = row["canonical_url"].split(":", 1)[0]
        domain = row["domain"]
        anon = f"{scheme}://{domain}/"
        conn.execute("UPDATE cases SET url = %s, canonical_url = %s, host = %s,"
                     " state = 'anonymised', state_reason = NULL, retry_at = NULL, is_open = 0,"
                     " anonymised_at = %s, updated_at = %s WHERE id = %s",
                     (anon, anon, domain, now, now, case_id))
        conn.execute("UPDATE reports SET raw_url = %s, metadata = NULL WHERE case_id = %s",
                     (anon, case_id))
        conn.execute("UPDATE items SET url = %s || '#item-' || id, final_url = NULL"
                     " WHERE case_id = %s", (anon, case_id))
        data = conn.execute("SELECT value FROM case_data WHERE case_id = %s AND key = %s",
                            (case_id, "resolution")).fetchone()
        if data:
            resolution = json.loads(data["value"])
            resolution["host"] = domain
            conn.execute("UPDATE case_data SET value = %s WHERE case_id = %s AND key = %s",
                         (_dumps(resolution), case_id, "resolution"))
        # The trail is append-only for edits; retention rewrites it whole, without free text
        # and URLs, keeping its order.
        events = conn.execute("SELECT at, stage, actor, action, detail FROM events"
                              " WHERE case_id = %s ORDER BY id", (case_id,)).fetchall()
        conn.execute("DELETE FROM events WHERE case_id = %s", (case_id,))
        drop = {"note", "item", "url", "urls", "input"}
        rows = []
        for e in events:
            clean = {k: v for k, v in json.loads(e["detail"] or "{}").items() if k not in drop}
            rows.append((case_id, e["at"], e["stage"], e["actor"], e["action"], _dumps(clean)))
        rows.append((case_id, now, "retention", "engine", "anonymised", "{}"))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                            " VALUES (%s,%s,%s,%s,%s,%s)", rows)

    # Tables whose deleted rows held personal data: rewritten by VACUUM FULL (small tables).
    _SHRED_TABLES = ("reporters", "reporter_keys")

    def vacuum(self) -> None:
        """VACUUM (FULL) the reporter tables, plain VACUUM (ANALYZE) the rest.

        FULL rewrites a table into new files, so erased reporter records no longer sit in dead
        tuples; it locks the table briefly, which is fine for these small tables. The large case
        tables get a plain VACUUM (no exclusive lock on a live multi-worker system): their
        anonymised rows' old versions are marked reusable, not overwritten (see
        docs/postgresql.md for a maintenance-window ``VACUUM FULL`` and WAL/backup retention).
        """
        with self._conn() as conn:  # autocommit: VACUUM cannot run inside a transaction
            conn.execute(f"VACUUM (FULL) {', '.join(self._SHRED_TABLES)}")  # type: ignore[arg-type]
            conn.execute("VACUUM (ANALYZE)")

    def audit(self, *, actor: str, action: str, obj: str, now: str,
              detail: dict[str, Any] | None = None) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO audit(at, actor, action, object, detail)"
                         " VALUES (%s,%s,%s,%s,%s)",
                         (now, actor, action, obj, _dumps(detail or {})))

    def audit_log(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        rows = self._read("SELECT at, actor, action, object, detail FROM audit ORDER BY id"
                          " LIMIT %s", (limit,))
        return [{"at": r["at"], "actor": r["actor"], "action": r["action"],
                 "object": r["object"], "detail": json.loads(r["detail"] or "{}")} for r in rows]
