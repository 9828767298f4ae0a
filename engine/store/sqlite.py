"""SQLite backend (the embedded default): WAL, explicit ``BEGIN IMMEDIATE`` for writes.

One connection per ``SQLiteStore``; the pipeline uses it from one dedicated thread. The SQL is
shared with PostgreSQL (``engine.store.sql``); this module holds only the connection, its
transactions and what SQLite does its own way (migrations, WAL checkpoints, ``VACUUM``). Leases
give the same claim semantics as the PostgreSQL backend: a case is worked by one owner at a time
and a result is committed only while its lease is held.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from engine import clock
from engine.errors import StorageError
from engine.store.dialect import SQLITE
from engine.store.migrations import MIGRATIONS
from engine.store.sql import SQLStore

T = TypeVar("T")
_BULK_ROWS = 10_000  # rows of one executemany in a bulk insert


class SQLiteStore(SQLStore):
    """Case store in one SQLite file."""

    dialect = SQLITE
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
        self._mutex = threading.RLock()

    # -- connection and transactions -----------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so writers queue instead of deadlocking."""
        with self._mutex:
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

    def _transact(self, fn: Callable[[sqlite3.Connection], T], *, pipeline: bool = False) -> T:
        with self._write() as conn:  # one writer: no conflicts to retry; no round trips
            return fn(conn)

    def _read_many(self, statements: Sequence[tuple[str, Sequence[Any]]]
                   ) -> list[list[sqlite3.Row]]:
        with self._mutex:  # one snapshot per statement, as separate reads would see
            return [self.conn.execute(sql, params).fetchall() for sql, params in statements]

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._mutex:
            return self.conn.execute(sql, params).fetchall()

    def _atomic(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        with self._write() as conn:
            return conn.execute(sql, params).fetchall()

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        # A separate cursor on the same connection: fine for the reader thread that owns it.
        with self._mutex:
            cur = self.conn.execute(sql)
            while True:
                rows = cur.fetchmany(50_000)
                if not rows:
                    return
                yield from (tuple(r) for r in rows)

    def _bulk_insert(self, conn: sqlite3.Connection, table: str, columns: Sequence[str],
                     rows: Iterable[Sequence[Any]]) -> int:
        sql = f"INSERT INTO {table}({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})"
        count = 0
        batch: list[Sequence[Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _BULK_ROWS:
                conn.executemany(sql, batch)
                count += len(batch)
                batch = []
        conn.executemany(sql, batch)
        return count + len(batch)

    def _table_columns(self, table: str) -> set[str]:
        return {r["name"] for r in self._read(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        with self._mutex:
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

    # -- maintenance ---------------------------------------------------------------------------
    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """No automatic WAL checkpoints during a large intake.

        Checkpoints (copying the WAL into the database file, with an fsync) took a third of a
        100,000-URL submission. Commits stay durable in the WAL; the next commit after the
        batch, or the last connection's close, checkpoints as usual.
        """
        with self._mutex:
            before = int(self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            self.conn.execute("PRAGMA wal_autocheckpoint=0")
        try:
            yield
        finally:
            with self._mutex:
                self.conn.execute(f"PRAGMA wal_autocheckpoint={before}")

    def vacuum(self) -> None:
        with self._mutex:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
