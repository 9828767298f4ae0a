"""The store, written once for SQLite and PostgreSQL: cases, pipeline, hash lists, lookups,
reporter data, retention and audit (notices, users and statistics are in the ``sql_*`` mixins).

Every statement uses ``?`` placeholders; what the databases spell differently comes from the
backend's ``Dialect`` (``self.dialect``). A backend (``engine.store.sqlite``,
``engine.store.postgres``) supplies the connections and these few primitives:

* ``_write()`` — one write transaction (SQLite ``BEGIN IMMEDIATE``; a pooled PostgreSQL
  connection), yielding a connection with ``execute``/``executemany`` that take ``?`` SQL;
* ``_transact(fn)`` — ``fn(conn)`` in a write transaction, run again after a transient
  conflict (deadlock, serialisation failure; SQLite's single writer has none);
* ``_read(sql, params)`` — rows of a read (accessed by column name);
* ``_atomic(sql, params)`` — rows of one self-contained statement (a claim);
* ``_stream(sql)`` — tuples of a large read, in pages;
* ``_bulk_insert(conn, table, columns, rows)`` — many rows at once (``COPY`` on PostgreSQL);
* ``_table_columns(table)``, ``migrate``, ``schema_version``, ``close``, ``clone``, ``vacuum``.

Results are the same on both backends: JSON-able dicts, ``Case``/``Event`` records, lists of ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from functools import partial
from typing import Any, NamedTuple, TypeVar

from engine import clock
from engine.errors import InputError
from engine.ids import new_id, new_ids
from engine.models import CLOSED_STATES, Case, Event, Item
from engine.store.base import Store, Transaction
from engine.store.records import Commit, IntakeOutcome, IntakeRow
from engine.store.sql_hashsources import SQLHashSourceMixin
from engine.store.sql_iccam import SQLIccamMixin
from engine.store.sql_intake import SQLIntakeMixin
from engine.store.sql_notices import SQLNoticeMixin
from engine.store.sql_stats import SQLStatsMixin
from engine.store.sql_users import SQLUsersMixin
from engine.store.sql_util import ROWS_PER_STATEMENT, chunks, dumps, insert_rows
from engine.store.sql_workbench import SQLWorkbenchMixin

T = TypeVar("T")

# States that mean "this stage failed; try again later".
RETRY_STATES = frozenset({"unreachable", "unresolved"})
_FINISHED = ("closed", "removed", "dismissed", "failed")
_PROCESSED = ("matched", "suppressed", "verdict")
_ENTRY_COLUMNS = ("list", "hash_type", "hash", "category", "label", "source")


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


def claim_candidates_sql(states: Sequence[str], now: str, limit: int) -> tuple[str, list[Any]]:
    """The cases a claim may take, as SQL (``id, updated_at`` rows) and its parameters.

    Per state, two walks of the ``cases_claim`` index in claim order: cases without a retry
    time, and cases whose retry time has come. Each stops after ``limit`` unleased cases, so a
    claim costs the same with 100 or 100,000 cases waiting (one ``ORDER BY`` over several
    states made the database sort them all).
    """
    lease = "(lease_owner IS NULL OR lease_until < ?)"
    parts: list[str] = []
    params: list[Any] = []
    for state in states:
        for n, retry in enumerate(("retry_at IS NULL", "retry_at <= ?")):
            parts.append(
                f"SELECT * FROM (SELECT id, updated_at FROM cases WHERE state = ? AND {retry}"
                f" AND {lease} ORDER BY updated_at, id LIMIT ?) AS c{len(parts)}")
            params += [state, *([now] if n else []), now, limit]
    return " UNION ALL ".join(parts), params


ITEMS_SQL = "SELECT * FROM items WHERE case_id = ? ORDER BY id"
DATA_SQL = "SELECT key, value FROM case_data WHERE case_id = ?"


def _item_objects(rows: Iterable[Any]) -> list[Item]:
    return [Item(id=r["id"], url=r["url"], kind=r["kind"], status=r["status"],
                 content_type=r["content_type"], size=r["size"], final_url=r["final_url"],
                 error=r["error"], hashes=json.loads(r["hashes"] or "{}"),
                 matches=json.loads(r["matches"] or "[]")) for r in rows]


def _data_dict(rows: Iterable[Any]) -> dict[str, Any]:
    return {r["key"]: json.loads(r["value"]) for r in rows}


class SQLStore(SQLNoticeMixin, SQLStatsMixin, SQLUsersMixin, SQLIccamMixin, SQLHashSourceMixin,
               SQLIntakeMixin, SQLWorkbenchMixin,
               Store):
    """Everything both SQL backends share; subclasses add connections and their dialect."""

    # -- backend primitives --------------------------------------------------------------------
    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _transact(self, fn: Callable[[Any], T], *, pipeline: bool = False) -> T:
        """Run ``fn(conn)`` in one write transaction. ``pipeline``: ``fn`` reads no result
        but those it fetches (no ``rowcount``), so PostgreSQL may send its statements without
        waiting for each answer (one round trip per fetch instead of one per statement)."""
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _read_many(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """The rows of several reads at once (PostgreSQL: one round trip, pipelined)."""
        raise NotImplementedError

    def _atomic(self, sql: str, params: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def _bulk_insert(self, conn: Any, table: str, columns: Sequence[str],
                     rows: Iterable[Sequence[Any]]) -> int:
        raise NotImplementedError

    def _lock(self, conn: Any, name: str) -> None:
        """Serialise writers on ``name`` for the rest of the transaction (SQLite: implicit)."""

    # -- raw SQL (public) ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._write() as conn:
            yield Transaction(conn, self.dialect)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._read(sql, params)]

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
        with self._write() as conn:
            return self._add_reports_in(conn, batch_id, channel, at, rows)

    def _add_reports_in(self, conn: Any, batch_id: str, channel: str, at: str,
                        rows: Sequence[IntakeRow]) -> IntakeOutcome:
        """``add_reports`` inside the caller's transaction (intake sources hand in a message's
        reports and its reference in one)."""
        accepted = duplicates = 0
        case_ids: list[str] = []
        # Intake is serialised (SQLite's single writer does it anyway) so two submitters of
        # the same URL link to one case instead of colliding on the open-URL index.
        self._lock(conn, "intake")
        wanted = list({row.canonical_url for row in rows})
        open_cases: dict[str, str] = {}
        for chunk in chunks(wanted, self.dialect.max_in):
            where, params = self.dialect.in_list("canonical_url", chunk)
            for found in conn.execute(
                    f"SELECT canonical_url, id FROM cases WHERE is_open = 1 AND {where}",
                    params):
                open_cases[found["canonical_url"]] = found["id"]
        new_cases = []
        new_events = []
        reports = []
        created = dumps({"batch": batch_id})
        fresh_ids = iter(new_ids("C", len(rows)))
        media_items = []
        for row in rows:
            case_id = open_cases.get(row.canonical_url)
            duplicate = case_id is not None
            if case_id is None:
                case_id = next(fresh_ids)
                open_cases[row.canonical_url] = case_id
                new_cases.append((case_id, row.raw_url, row.canonical_url, row.host,
                                  row.domain, "new" if row.media is None else "fetched",
                                  at, at))
                new_events.append((case_id, at, "intake", channel, "created", created))
                if row.media is not None:
                    media_items.append((case_id, row.canonical_url, "media",
                                        row.media.get("content_type"),
                                        row.media.get("size"), dumps(row.media["hashes"]),
                                        at, at))
                    new_events.append((case_id, at, "intake", channel, "fetched",
                                       dumps({"media": "handed in"})))
                accepted += 1
            else:
                duplicates += 1
            case_ids.append(case_id)
            reports.append((case_id, batch_id, channel, at, row.raw_url,
                            dumps(row.metadata) if row.metadata else None,
                            1 if duplicate else 0, row.line))
        conn.executemany(
            "INSERT INTO cases(id, url, canonical_url, host, domain, state, created_at, "
            "updated_at) VALUES (?,?,?,?,?,?,?,?)", new_cases)
        conn.executemany(
            "INSERT INTO items(case_id, url, kind, content_type, size, hashes, matches,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,'[]',?,?)", media_items)
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
    def _insert_with_reporter(conn: Any, report: tuple[Any, ...],
                              reporter: tuple[Any, ...], at: str) -> None:
        found = conn.execute(
            "INSERT INTO reports(case_id, batch_id, channel, received_at, raw_url, metadata, "
            "duplicate, line) VALUES (?,?,?,?,?,?,?,?) RETURNING id", report).fetchone()
        rid, app, phone_mac, username_mac, sealed, wrapped, police = reporter
        conn.execute(
            "INSERT INTO reporters(id, report_id, case_id, app, phone_mac, username_mac, sealed,"
            " contact_police, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (rid, found["id"], report[0], app, phone_mac, username_mac, sealed,
             1 if police else 0, at))
        conn.execute("INSERT INTO reporter_keys(reporter_id, wrapped_key) VALUES (?,?)",
                     (rid, wrapped))

    def finish_batch(self, batch_id: str, *, accepted: int, duplicates: int,
                     rejected: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE batches SET accepted=?, duplicates=?, rejected=? WHERE id=?",
                         (accepted, duplicates, rejected, batch_id))

    # -- reading -------------------------------------------------------------------------------
    def _case_row(self, case_id: str) -> Any | None:
        rows = self._read("SELECT * FROM cases WHERE id = ?", (case_id,))
        return rows[0] if rows else None

    def _items(self, case_id: str) -> list[Item]:
        return _item_objects(self._read(ITEMS_SQL, (case_id,)))

    def _data(self, case_id: str) -> dict[str, Any]:
        return _data_dict(self._read(DATA_SQL, (case_id,)))

    @staticmethod
    def _case_dict(row: Any) -> dict[str, Any]:
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
        params += [limit if limit is not None else self.dialect.no_limit, offset]
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
        # Every stage loads each case it claims: the three reads go out together.
        rows, item_rows, data_rows = self._read_many([
            ("SELECT * FROM cases WHERE id = ?", (case_id,)),
            (ITEMS_SQL, (case_id,)), (DATA_SQL, (case_id,))])
        if not rows:
            raise InputError(f"no case {case_id!r}")
        return self._case_object(rows[0], item_rows, data_rows)

    def load_cases(self, case_ids: Sequence[str]) -> dict[str, Case]:
        """``load_case`` of many cases at once (three reads, pipelined, whatever their number;
        ids that name no case are left out)."""
        found: dict[str, Case] = {}
        for chunk in chunks(list(dict.fromkeys(case_ids)), ROWS_PER_STATEMENT):
            marks = ",".join("?" * len(chunk))
            rows, item_rows, data_rows = self._read_many([
                (f"SELECT * FROM cases WHERE id IN ({marks})", chunk),
                (f"SELECT * FROM items WHERE case_id IN ({marks}) ORDER BY case_id, id", chunk),
                (f"SELECT case_id, key, value FROM case_data WHERE case_id IN ({marks})",
                 chunk)])
            items: dict[str, list[Any]] = {}
            for r in item_rows:
                items.setdefault(r["case_id"], []).append(r)
            data: dict[str, list[Any]] = {}
            for r in data_rows:
                data.setdefault(r["case_id"], []).append(r)
            for row in rows:
                found[row["id"]] = self._case_object(row, items.get(row["id"], ()),
                                                     data.get(row["id"], ()))
        return found

    @staticmethod
    def _case_object(row: Any, item_rows: Iterable[Any], data_rows: Iterable[Any]) -> Case:
        return Case(id=row["id"], url=row["url"], canonical_url=row["canonical_url"],
                    host=row["host"], domain=row["domain"], state=row["state"],
                    state_reason=row["state_reason"], created_at=row["created_at"],
                    updated_at=row["updated_at"], retry_at=row["retry_at"],
                    attempts=row["attempts"], items=tuple(_item_objects(item_rows)),
                    data=_data_dict(data_rows))

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
        # On PostgreSQL the candidates are found without locks and the locking SELECT checks
        # them again on their latest version (SKIP LOCKED: a row another claimer is taking is
        # skipped, never waited for, never taken twice). SQLite's writer lock excludes anyway.
        in_states, state_params = self.dialect.in_list("state", states)
        rows = self._atomic(
            "UPDATE cases SET lease_owner = ?, lease_until = ? WHERE id IN ("
            f" SELECT id FROM cases WHERE id IN (SELECT id FROM ({candidates}) AS c)"
            f" AND {in_states} AND (retry_at IS NULL OR retry_at <= ?)"
            " AND (lease_owner IS NULL OR lease_until < ?)"
            f" ORDER BY updated_at, id LIMIT ?{self.dialect.skip_locked})"
            " RETURNING id, updated_at",
            (owner, until, *params, *state_params, now, now, limit))
        # RETURNING has no defined order: hand them out oldest first.
        return [r["id"] for r in sorted(rows, key=lambda r: (r["updated_at"], r["id"]))]

    def due_count(self, states: Iterable[str], now: str) -> int:
        states = list(states)
        if not states:
            return 0
        in_states, params = self.dialect.in_list("state", states)
        rows = self._read(
            f"SELECT count(*) AS n FROM cases WHERE {in_states}"
            " AND (retry_at IS NULL OR retry_at <= ?)"
            " AND (lease_owner IS NULL OR lease_until < ?)", (*params, now, now))
        return int(rows[0]["n"])

    def _clear_leases(self, column: str, values: Iterable[str], *, table: str = "cases",
                      owner: str | None = None) -> int:
        wanted = sorted(set(values))
        if not wanted:
            return 0

        def run(conn: Any) -> int:
            changed = 0
            for chunk in chunks(wanted, self.dialect.max_in):
                where, params = self.dialect.in_list(column, chunk)
                if owner is not None:
                    where += " AND lease_owner = ?"
                    params.append(owner)
                changed += conn.execute(
                    f"UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE {where}",
                    params).rowcount
            return changed

        return self._transact(run)

    def release(self, case_ids: Iterable[str], owner: str) -> int:
        return self._clear_leases("id", case_ids, owner=owner)

    def release_owners(self, owners: Iterable[str]) -> int:
        return self._clear_leases("lease_owner", owners)

    def lease_owners(self) -> dict[str, int]:
        rows = self._read("SELECT lease_owner, count(*) AS n FROM cases "
                          "WHERE lease_owner IS NOT NULL GROUP BY lease_owner")
        return {r["lease_owner"]: int(r["n"]) for r in rows}

    def apply(self, commits: Sequence[Commit], now: str) -> list[str]:
        # A batch is a handful of multi-row statements, not several statements per commit: each
        # statement hands the GIL back and forth with the event loop, and per-commit
        # statements kept this writer thread busy most of a run waiting for it.
        duplicate: list[str] = []
        first: dict[str, Commit] = {}
        for c in sorted(commits, key=lambda c: c.case_id):  # one lock order for all committers
            if c.case_id in first:
                duplicate.append(c.case_id)  # the first result took the lease with it
            else:
                first[c.case_id] = c
        typed = self.dialect.typed
        head = (f"({typed('TEXT')},{typed('TEXT')},{typed('TEXT')},{typed('TEXT')},"
                f"{typed('TEXT')},{typed('INTEGER')},{typed('INTEGER')})")

        def run(conn: Any) -> set[str]:
            updated: set[str] = set()
            for chunk in chunks(list(first.values()), ROWS_PER_STATEMENT):
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
                    + ",".join([head] + ["(?,?,?,?,?,?,?)"] * (len(chunk) - 1)) + ")"
                    " UPDATE cases SET state = v.state, state_reason = v.reason,"
                    " retry_at = v.retry_at, updated_at = ?, lease_owner = NULL,"
                    " lease_until = NULL, is_open = v.is_open, parked_stage = NULL,"
                    " attempts = CASE WHEN v.retry = 1 THEN cases.attempts + 1 ELSE 0 END"
                    " FROM v WHERE cases.id = v.id AND cases.lease_owner = v.owner"
                    " RETURNING cases.id", (*params, now)).fetchall()
                updated.update(r["id"] for r in rows)
            self._effects(conn, now, [
                _Effects(c.case_id, c.stage, c.actor, c.result.action, c.result.reason,
                         c.result.detail, c.result.items, c.result.data, c.result.outbox)
                for c in first.values() if c.case_id in updated])
            return updated

        updated = self._transact(run, pipeline=True)
        return duplicate + [case_id for case_id in first if case_id not in updated]

    def _write_effects(self, conn: Any, case_id: str, now: str, *, stage: str,
                       actor: str, action: str, reason: str | None, detail: dict[str, Any],
                       items: Sequence[Item] = (), data: dict[str, Any] | None = None,
                       outbox: Sequence[dict[str, Any]] = ()) -> None:
        self._effects(conn, now, [_Effects(case_id, stage, actor, action, reason, detail, items,
                                           data, outbox)])

    @staticmethod
    def _effects(conn: Any, now: str, batch: Sequence[_Effects]) -> None:
        """Items, case data, outbox entries and one trail event per case, in multi-row
        statements."""
        # One statement may not upsert a row twice (PostgreSQL refuses): the last version of an
        # item wins, at the place of its first, as row-by-row upserts would have left it.
        items: dict[tuple[str, str], tuple[Any, ...]] = {}
        data, outbox, events = [], [], []
        for e in batch:
            for i in e.items:
                items[(e.case_id, i.url)] = (
                    e.case_id, i.url, i.kind, i.status, i.content_type, i.size, i.final_url,
                    i.error, dumps(i.hashes), dumps(i.matches), now, now)
            data += [(e.case_id, key, dumps(value)) for key, value in (e.data or {}).items()]
            # report_id: the UUIDv4 of this row's X-ARF report, fixed for every resend.
            outbox += [(n.get("id") or new_id("N"), e.case_id, now, dumps(n), n.get("held"),
                        str(uuid.uuid4())) for n in e.outbox]
            event_detail = dict(e.detail)
            if e.reason:
                event_detail.setdefault("reason", e.reason)
            events.append((e.case_id, now, e.stage, e.actor, e.action, dumps(event_detail)))
        insert_rows(conn, "INSERT INTO items(case_id, url, kind, status, content_type, size,"
                    " final_url, error, hashes, matches, created_at, updated_at) VALUES {}"
                    " ON CONFLICT(case_id, url) DO UPDATE SET kind=excluded.kind,"
                    " status=excluded.status, content_type=excluded.content_type,"
                    " size=excluded.size, final_url=excluded.final_url, error=excluded.error,"
                    " hashes=excluded.hashes, matches=excluded.matches,"
                    " updated_at=excluded.updated_at", list(items.values()))
        insert_rows(conn, "INSERT INTO case_data(case_id, key, value) VALUES {}"
                    " ON CONFLICT(case_id, key) DO UPDATE SET value = excluded.value", data)
        insert_rows(conn, "INSERT INTO outbox(id, case_id, created_at, payload, held, report_id)"
                    " VALUES {}", outbox)
        insert_rows(conn, "INSERT INTO events(case_id, at, stage, actor, action, detail)"
                    " VALUES {}", events)

    def park(self, states: Iterable[str], stage: str, now: str) -> int:
        # Parking keeps the case's lifecycle state and says why nothing happens to it. One
        # UPDATE … RETURNING: when several workers park at once, each case is parked (and gets
        # its event) once — the second updater re-checks ``parked_stage IS NULL`` and skips.
        states = list(states)
        if not states:
            return 0
        reason = f"waiting for a plugin that implements the {stage} stage"
        in_states, params = self.dialect.in_list("state", states)

        def run(conn: Any) -> int:
            ids = [r["id"] for r in conn.execute(
                "UPDATE cases SET parked_stage = ?, state_reason = ?, updated_at = ?"
                f" WHERE {in_states} AND parked_stage IS NULL RETURNING id",
                (stage, reason, now, *params)).fetchall()]
            conn.executemany(
                "INSERT INTO events(case_id, at, stage, actor, action, detail) "
                "VALUES (?,?,?,?,?,?)",
                [(i, now, stage, "engine", "parked", dumps({"reason": reason}))
                 for i in sorted(ids)])
            return len(ids)

        return self._transact(run)

    def unpark(self, stage: str, now: str) -> int:
        def run(conn: Any) -> int:
            ids = [r["id"] for r in conn.execute(
                "UPDATE cases SET parked_stage = NULL, state_reason = NULL, updated_at = ?"
                " WHERE parked_stage = ? RETURNING id", (now, stage)).fetchall()]
            conn.executemany(
                "INSERT INTO events(case_id, at, stage, actor, action, detail) "
                "VALUES (?,?,?,?,?,?)",
                [(i, now, stage, "engine", "unparked", "{}") for i in sorted(ids)])
            return len(ids)

        return self._transact(run)

    def transition(self, case_id: str, *, state: str, stage: str, actor: str, action: str,
                   now: str, reason: str | None = None, detail: dict[str, Any] | None = None,
                   data: dict[str, Any] | None = None, expect: Iterable[str] | None = None,
                   retry_at: str | None = None, items: Sequence[Item] = ()) -> None:
        allowed = list(expect) if expect is not None else None

        def run(conn: Any) -> None:
            row = conn.execute(f"SELECT state FROM cases WHERE id = ?{self.dialect.for_update}",
                               (case_id,)).fetchone()
            if row is None:
                raise InputError(f"no case {case_id!r}")
            if allowed is not None and row["state"] not in allowed:
                raise InputError(f"case {case_id} is {row['state']}; this needs one of: "
                                 f"{', '.join(allowed)}")
            conn.execute(
                "UPDATE cases SET state = ?, state_reason = ?, retry_at = ?, updated_at = ?,"
                " is_open = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (state, reason, retry_at, now, 0 if state in CLOSED_STATES else 1, case_id))
            self._write_effects(conn, case_id, now, stage=stage, actor=actor, action=action,
                                reason=reason, detail=detail or {}, items=items, data=data)

        self._transact(run)

    # -- known-hash lists ----------------------------------------------------------------------
    @staticmethod
    def _bump_generation(conn: Any) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES ('hashlist_generation', '1')"
                     " ON CONFLICT(key) DO UPDATE SET"
                     " value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)")

    def import_hashlist(self, *, name: str, source: str | None, trust: str, negative: bool,
                        thresholds: dict[str, int], entries: Iterable[tuple[str, str, str,
                                                                          str | None,
                                                                          str | None]],
                        now: str) -> int:
        with self._write() as conn:
            conn.execute("DELETE FROM hashlists WHERE name = ?", (name,))
            conn.execute("INSERT INTO hashlists(name, source, trust, negative, thresholds,"
                         " entries, imported_at) VALUES (?,?,?,?,?,0,?)",
                         (name, source, trust, 1 if negative else 0, dumps(thresholds), now))
            count = self._bulk_insert(conn, "hashlist_entries", _ENTRY_COLUMNS,
                                      ((name, *entry) for entry in entries))
            conn.execute("UPDATE hashlists SET entries = ? WHERE name = ?", (count, name))
            self._bump_generation(conn)
        return count

    def add_hashlist_entries(self, name: str, entries: Iterable[tuple[str, str, str,
                                                                     str | None, str | None]],
                             *, now: str, trust: str = "auto", negative: bool = False,
                             source: str | None = None) -> int:
        with self._write() as conn:
            conn.execute("INSERT INTO hashlists(name, source, trust, negative, thresholds,"
                         " entries, imported_at) VALUES (?,?,?,?,'{}',0,?)"
                         " ON CONFLICT(name) DO NOTHING",
                         (name, source, trust, 1 if negative else 0, now))
            # Lock the list so two writers appending the same entries add them once.
            conn.execute(f"SELECT name FROM hashlists WHERE name = ?{self.dialect.for_update}",
                         (name,))
            present = {(r["hash_type"], r["hash"]) for r in conn.execute(
                "SELECT hash_type, hash FROM hashlist_entries WHERE list = ?", (name,))}
            fresh = [(name, *e) for e in entries if (e[0], e[1]) not in present]
            added = self._bulk_insert(conn, "hashlist_entries", _ENTRY_COLUMNS, fresh)
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
        for r in self._stream("SELECT id, list, hash_type, hash, category FROM hashlist_entries"
                              " WHERE disabled = 0 ORDER BY id"):
            yield (r[0], r[1], r[2], r[3], r[4])

    def hashlist_generation(self) -> int:
        rows = self._read("SELECT value FROM meta WHERE key = 'hashlist_generation'")
        return int(rows[0]["value"]) if rows else 0

    # -- lookup cache, contacts book -----------------------------------------------------------
    def cache_get(self, namespace: str, key: str, now: str) -> Any | None:
        rows = self._read("SELECT value FROM cache WHERE namespace = ? AND key = ?"
                          " AND expires_at > ?", (namespace, key, now))
        return json.loads(rows[0]["value"]) if rows else None

    def cache_put(self, namespace: str, key: str, value: Any, expires_at: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO cache(namespace, key, value, expires_at) VALUES (?,?,?,?)"
                         " ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value,"
                         " expires_at = excluded.expires_at",
                         (namespace, key, dumps(value), expires_at))

    def cache_items(self, namespace: str, now: str) -> list[tuple[str, Any]]:
        rows = self._read("SELECT key, value FROM cache WHERE namespace = ? AND expires_at > ?",
                          (namespace, now))
        return [(r["key"], json.loads(r["value"])) for r in rows]

    def contacts_add(self, *, match_kind: str, match_value: str, scope: str, channel: str,
                     address: str, priority: int = 0, note: str | None = None,
                     now: str) -> int:
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO contacts(match_kind, match_value, scope, channel, address,"
                " priority, note, created_at) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                (match_kind, match_value.lower(), scope, channel, address, priority, note,
                 now)).fetchone()
            return int(row["id"]) if row else 0

    def contacts_list(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM contacts ORDER BY id")

    def contacts_remove(self, contact_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM contacts WHERE id = ?",
                                (contact_id,)).rowcount > 0

    def contact_failed(self, address: str, error: str, now: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO contact_health(address, failures, last_error, updated_at)"
                         " VALUES (?, 1, ?, ?) ON CONFLICT(address) DO UPDATE SET"
                         " failures = contact_health.failures + 1,"
                         " last_error = excluded.last_error, updated_at = excluded.updated_at",
                         (address.lower(), error, now))

    def contact_failures(self, addresses: Iterable[str]) -> dict[str, int]:
        wanted = sorted({a.lower() for a in addresses})
        out: dict[str, int] = {}
        for chunk in chunks(wanted, self.dialect.max_in):
            where, params = self.dialect.in_list("address", chunk)
            for r in self._read(f"SELECT address, failures FROM contact_health WHERE {where}",
                                params):
                out[r["address"]] = r["failures"]
        return out

    # -- reporter data, retention, audit -------------------------------------------------------
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
        return self.query(
            "SELECT r.*, k.wrapped_key FROM reporters r LEFT JOIN reporter_keys k"
            f" ON k.reporter_id = r.id WHERE {' OR '.join(where)} ORDER BY r.created_at", params)

    def _for_ids(self, statements: Sequence[tuple[str, str]], ids: Iterable[str],
                 first: Sequence[Any] = ()) -> int:
        """Run each ``(statement, column)`` (the statement ends in ``{}``, where ``column IN
        ids`` goes) in one transaction; returns the rows the last statement changed."""
        wanted = sorted(set(ids))
        changed = 0
        with self._write() as conn:
            for chunk in chunks(wanted, self.dialect.max_in):
                for statement, column in statements:
                    where, params = self.dialect.in_list(column, chunk)
                    changed_now = conn.execute(statement.format(where),
                                               (*first, *params)).rowcount
                changed += changed_now
        return changed

    def erase_reporters(self, reporter_ids: Iterable[str]) -> int:
        return self._for_ids((("DELETE FROM reporter_keys WHERE {}", "reporter_id"),
                              ("DELETE FROM reporters WHERE {}", "id")), reporter_ids)

    def restrict_reporters(self, reporter_ids: Iterable[str], restricted: bool) -> int:
        return self._for_ids((("UPDATE reporters SET restricted = ? WHERE {}", "id"),),
                             reporter_ids, (1 if restricted else 0,))

    @staticmethod
    def _processed_cases_sql() -> str:
        marks = ",".join(f"'{a}'" for a in _PROCESSED)
        return (f"SELECT case_id, min(at) AS processed_at FROM events WHERE action IN ({marks})"
                f" GROUP BY case_id")

    def feedback_due(self) -> list[dict[str, Any]]:
        return self.query(
            f"SELECT r.id, r.case_id, r.app, r.created_at, p.processed_at, c.state"
            f" FROM reporters r JOIN ({self._processed_cases_sql()}) p ON p.case_id = r.case_id"
            f" JOIN cases c ON c.id = r.case_id"
            f" WHERE r.feedback_sent_at IS NULL AND r.restricted = 0 ORDER BY p.processed_at")

    def feedback_sent(self, case_id: str, now: str) -> int:
        with self._write() as conn:
            return conn.execute("UPDATE reporters SET feedback_sent_at = ? WHERE case_id = ?"
                                " AND feedback_sent_at IS NULL", (now, case_id)).rowcount

    def purge_reporters(self, *, now: str, max_hours: float, dry_run: bool = False) -> int:
        cutoff = clock.fmt(clock.parse(now) - timedelta(hours=max_hours))
        sql = (f"SELECT r.id FROM reporters r JOIN ({self._processed_cases_sql()}) p"
               f" ON p.case_id = r.case_id WHERE r.restricted = 0 AND"
               f" (r.feedback_sent_at IS NOT NULL OR p.processed_at <= ?)")
        ids = [r["id"] for r in self._read(sql, (cutoff,))]
        if not dry_run and ids:
            self.erase_reporters(ids)
        return len(ids)

    def anonymise_cases(self, *, now: str, closed_days: float, max_days: float,
                        dry_run: bool = False) -> int:
        closed_cut = clock.fmt(clock.parse(now) - timedelta(days=closed_days))
        max_cut = clock.fmt(clock.parse(now) - timedelta(days=max_days))
        finished, params = self.dialect.in_list("state", _FINISHED)
        ids = [r["id"] for r in self._read(
            f"SELECT id FROM cases WHERE anonymised_at IS NULL AND (({finished}"
            f" AND updated_at <= ?) OR created_at <= ?)", (*params, closed_cut, max_cut))]
        if dry_run or not ids:
            return len(ids)
        # Reporters of these cases go first, whatever their feedback state.
        for case_id in ids:
            self._transact(partial(self._anonymise_one, case_id=case_id, now=now))
            self.erase_reporters(r["id"] for r in self.reporters(case_id=case_id))
        return len(ids)

    def _anonymise_one(self, conn: Any, *, case_id: str, now: str) -> None:
        row = conn.execute("SELECT canonical_url, domain FROM cases WHERE id = ?"
                           f"{self.dialect.for_update}", (case_id,)).fetchone()
        if row is None or row["canonical_url"] is None:
            return
        scheme = row["canonical_url"].split(":", 1)[0]
        domain = row["domain"]
        anon = f"{scheme}://{domain}/"
        conn.execute("UPDATE cases SET url = ?, canonical_url = ?, host = ?, state = 'anonymised',"
                     " state_reason = NULL, retry_at = NULL, is_open = 0, anonymised_at = ?,"
                     " updated_at = ? WHERE id = ?", (anon, anon, domain, now, now, case_id))
        conn.execute("UPDATE reports SET raw_url = ?, metadata = NULL WHERE case_id = ?",
                     (anon, case_id))
        conn.execute("UPDATE items SET url = ? || '#item-' || id, final_url = NULL"
                     " WHERE case_id = ?", (anon, case_id))
        conn.execute("UPDATE iccam_items SET url = ? || '#iccam-' || id WHERE case_id = ?",
                     (anon, case_id))
        data = conn.execute("SELECT value FROM case_data WHERE case_id = ? AND key = ?",
                            (case_id, "resolution")).fetchone()
        if data:
            resolution = json.loads(data["value"])
            resolution["host"] = domain
            conn.execute("UPDATE case_data SET value = ? WHERE case_id = ? AND key = ?",
                         (dumps(resolution), case_id, "resolution"))
        # The trail is append-only for edits; retention rewrites it whole, without free text
        # and URLs, keeping its order.
        events = conn.execute("SELECT at, stage, actor, action, detail FROM events"
                              " WHERE case_id = ? ORDER BY id", (case_id,)).fetchall()
        conn.execute("DELETE FROM events WHERE case_id = ?", (case_id,))
        drop = {"note", "item", "url", "urls", "input", "refused"}
        rows = []
        for e in events:
            clean = {k: v for k, v in json.loads(e["detail"] or "{}").items() if k not in drop}
            rows.append((case_id, e["at"], e["stage"], e["actor"], e["action"], dumps(clean)))
        rows.append((case_id, now, "retention", "engine", "anonymised", "{}"))
        conn.executemany("INSERT INTO events(case_id, at, stage, actor, action, detail)"
                         " VALUES (?,?,?,?,?,?)", rows)

    def audit(self, *, actor: str, action: str, obj: str, now: str,
              detail: dict[str, Any] | None = None) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO audit(at, actor, action, object, detail) VALUES (?,?,?,?,?)",
                         (now, actor, action, obj, dumps(detail or {})))

    def audit_log(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        rows = self._read("SELECT at, actor, action, object, detail FROM audit ORDER BY id"
                          " LIMIT ?", (limit if limit is not None else self.dialect.no_limit,))
        return [{"at": r["at"], "actor": r["actor"], "action": r["action"],
                 "object": r["object"], "detail": json.loads(r["detail"] or "{}")} for r in rows]
