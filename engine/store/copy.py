"""``ntd db copy``: move every table of one store into another (SQLite → PostgreSQL, or back).

Tables are copied in dependency order with their ids preserved (PostgreSQL identity sequences are
moved past the copied ids). The whole copy is one transaction on the target, and before it
commits the target is read back: per table, the row count and an order-independent checksum
(the sum of a SHA-256 per row, over a canonical encoding of its values) must equal what was read
from the source, otherwise nothing is committed. The target must be empty; the source must be at
the newest schema version (``ntd --db SOURCE db migrate`` first). Stop the workers while copying:
rows written to the source during the copy may be missed.

The worker registry (``workers``) is not copied: it describes processes of the old deployment.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError, StorageError
from engine.store import Store, database_url, open_store
from engine.store.migrations import MIGRATIONS

# (table, key columns to read it in order) in foreign-key dependency order.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("batches", ("id",)),
    ("cases", ("id",)),
    ("reports", ("id",)),
    ("items", ("id",)),
    ("events", ("id",)),
    ("case_data", ("case_id", "key")),
    ("outbox", ("id",)),
    ("hashlists", ("name",)),
    ("hashlist_entries", ("id",)),
    ("meta", ("key",)),
    ("cache", ("namespace", "key")),
    ("contacts", ("id",)),
    ("contact_health", ("address",)),
    ("notices", ("id",)),
    ("reporters", ("id",)),
    ("reporter_keys", ("reporter_id",)),
    ("audit", ("id",)),
    ("users", ("id",)),
    ("api_tokens", ("token_hash",)),
    ("user_settings", ("user_id",)),
    ("iccam_items", ("id",)),
    ("iccam_outbox", ("id",)),
    ("iccam_errors", ("key",)),
    ("contact_approvals", ("address",)),
    ("hashlist_hits", ("entry_id", "url_key")),
    ("hashlist_holds", ("entry_id",)),
    ("hashsource_state", ("list",)),
    ("intake_refs", ("source", "reference")),
)
# Not copied: the target's own migration history, and the old deployment's processes.
SKIPPED = frozenset({"schema_version", "workers"})
# Tables whose ``id`` is an identity column on PostgreSQL.
IDENTITY_TABLES = frozenset({"reports", "items", "events", "hashlist_entries", "contacts",
                             "audit", "iccam_items"})
_BATCH = 5_000
_MOD = 1 << 256


@dataclass(frozen=True, kw_only=True)
class TableCopy:
    """What was copied for one table."""

    table: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def ok(self) -> bool:
        """Counts and checksums agree."""
        return (self.source_rows == self.target_rows
                and self.source_checksum == self.target_checksum)


@dataclass(kw_only=True)
class CopyReport:
    """The result of ``copy_database``."""

    source: str
    target: str
    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every table agrees."""
        return all(t.ok for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``ntd db copy --json``."""
        return {"source": self.source, "target": self.target, "ok": self.ok,
                "seconds": round(self.seconds, 3),
                "rows": sum(t.source_rows for t in self.tables),
                "tables": [{**asdict(t), "ok": t.ok} for t in self.tables]}


class _Checksum:
    """Order-independent checksum and count of rows."""

    def __init__(self) -> None:
        self.total = 0
        self.rows = 0

    def add(self, row: tuple[Any, ...]) -> None:
        encoded = json.dumps([_canon(v) for v in row], separators=(",", ":"),
                             ensure_ascii=False).encode()
        self.total = (self.total + int.from_bytes(hashlib.sha256(encoded).digest())) % _MOD
        self.rows += 1

    def hexdigest(self) -> str:
        return f"{self.total:064x}"


def _canon(value: Any) -> Any:
    """One encoding for equal values on both backends (bytes as hex, memoryview as bytes)."""
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes | bytearray):
        return {"b": bytes(value).hex()}
    if isinstance(value, bool):
        return int(value)
    return value


def describe(url: str) -> str:
    """A store URL without any password, for messages and reports."""
    if url.startswith(("postgresql://", "postgres://")):
        # deferred: pulls in psycopg, loaded on first use
        from engine.store.postgres import describe_url

        return describe_url(url)
    return url


# -- backend access (the copy works below the Store interface, on raw rows) ---------------------
def _is_pg(store: Store) -> bool:
    return store.dialect.name == "postgresql"


@contextmanager
def _transaction(store: Store) -> Iterator[Any]:
    """The driver's own connection inside one store transaction (the copy is part of the
    store package and reads below its interface)."""
    with store._write() as conn:  # type: ignore[attr-defined]  # SQLStore's primitive
        yield getattr(conn, "raw", conn)


def _columns(conn: Any, pg: bool, table: str) -> list[str]:
    if pg:
        cur = conn.cursor()
        cur.execute(f"SELECT * FROM {table} LIMIT 0")
    else:
        cur = conn.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d[0] for d in cur.description]


def _rows(conn: Any, pg: bool, table: str, columns: list[str],
          key: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(key)}"
    if pg:
        from psycopg.rows import tuple_row  # deferred: optional dependency

        with conn.cursor(name=f"ntd_copy_{table}", row_factory=tuple_row) as cur:
            cur.itersize = _BATCH
            cur.execute(sql)
            yield from cur
    else:
        cur = conn.execute(sql)
        while True:
            batch = cur.fetchmany(_BATCH)
            if not batch:
                return
            for row in batch:
                yield tuple(row)


def _write_rows(store: Store, conn: Any, table: str, columns: list[str],
                rows: Iterator[tuple[Any, ...]]) -> None:
    """The backend's bulk insert (``COPY`` on PostgreSQL, batched INSERTs on SQLite)."""
    if _is_pg(store):
        # deferred: pulls in psycopg, loaded on first use
        from engine.store.postgres import PgConnection  # psycopg is an optional dependency

        conn = PgConnection(conn)
    store._bulk_insert(conn, table, columns, rows)  # type: ignore[attr-defined]


def _tables(conn: Any, pg: bool) -> set[str]:
    if pg:
        found = conn.execute("SELECT tablename FROM pg_tables"
                             " WHERE schemaname = current_schema()").fetchall()
        return {r["tablename"] for r in found}
    found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                         " AND name NOT LIKE 'sqlite_%'").fetchall()
    return {r[0] for r in found}


def _count(conn: Any, pg: bool, table: str) -> int:
    if pg:
        row = conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
        return int(row["n"] if isinstance(row, dict) else row[0])
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# -- the copy ------------------------------------------------------------------------------------
def _open_source(url: str) -> Store:
    if not url.startswith(("postgresql://", "postgres://")):
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
        if not Path(path).is_file():
            raise InputError(f"--from: no database file {path}")
    source = open_store(url, migrate=False)
    version, newest = source.schema_version(), max(MIGRATIONS)
    if version != newest:
        source.close()
        raise InputError(f"--from {describe(url)} is at schema version {version}, this ntd "
                         f"writes {newest}: run `ntd --db SOURCE db migrate` first")
    return source


def copy_database(source_url: str, target_url: str) -> CopyReport:
    """Copy every table from ``source_url`` into the empty store at ``target_url``.

    Raises ``InputError`` for a non-empty target or an old source schema, and
    ``StorageError`` (nothing committed) when the target does not read back identical.
    """
    started = time.monotonic()
    source_url, target_url = database_url(source_url), database_url(target_url)
    if source_url == target_url:
        raise InputError("--from and --to name the same database")
    report = CopyReport(source=describe(source_url), target=describe(target_url))
    source = _open_source(source_url)
    try:
        target = open_store(target_url, migrate=True)
        try:
            _copy(source, target, report)
        finally:
            target.close()
    finally:
        source.close()
    report.seconds = time.monotonic() - started
    return report


def _copy(source: Store, target: Store, report: CopyReport) -> None:
    src_pg, dst_pg = _is_pg(source), _is_pg(target)
    with _transaction(target) as dst:
        unknown = _tables(dst, dst_pg) - SKIPPED - {t for t, _ in TABLES}
        if unknown:  # a newer migration added a table this copy does not know yet
            raise StorageError(f"db copy does not know table(s) {', '.join(sorted(unknown))}")
        busy = [t for t, _ in TABLES if _count(dst, dst_pg, t)]
        if busy:
            raise InputError(f"--to {report.target} is not empty (rows in {', '.join(busy)}):"
                             " copy only into a new database")
        for table, key in TABLES:
            with _transaction(source) as src:
                columns = _columns(src, src_pg, table)
                missing = set(columns) ^ set(_columns(dst, dst_pg, table))
                if missing:
                    raise StorageError(f"table {table}: columns differ between source and "
                                       f"target ({', '.join(sorted(missing))})")
                read = _Checksum()

                def tapped(rows: Iterator[tuple[Any, ...]], sink: _Checksum = read
                           ) -> Iterator[tuple[Any, ...]]:
                    for row in rows:
                        sink.add(row)
                        yield row

                _write_rows(target, dst, table, columns,
                            tapped(_rows(src, src_pg, table, columns, key)))
            if dst_pg and table in IDENTITY_TABLES:
                dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id))"
                            f" FROM {table}")
            back = _Checksum()
            for row in _rows(dst, dst_pg, table, columns, key):
                back.add(row)
            report.tables.append(TableCopy(
                table=table, source_rows=read.rows, target_rows=back.rows,
                source_checksum=read.hexdigest(), target_checksum=back.hexdigest()))
        if not report.ok:
            bad = ", ".join(t.table for t in report.tables if not t.ok)
            # Raising rolls the target's transaction back: nothing half-copied stays behind.
            raise StorageError(f"copy to {report.target} does not read back identical "
                               f"({bad}); nothing was committed")
