"""PostgreSQL backend (psycopg 3): many ``ntd`` workers on many hosts share one database.

Same behaviour as the SQLite backend and the same SQL (``engine.store.sql``), same schema (the
``postgresql`` dialect of ``engine.store.migrations``), same text timestamps. What this module
adds is how PostgreSQL is connected to and how exclusivity is obtained: SQLite has one writer
(``BEGIN IMMEDIATE``); here workers claim cases with ``FOR UPDATE SKIP LOCKED`` (the dialect's
``skip_locked``) so concurrent claimers never wait on, nor take, each other's rows, ``apply``
commits a result only while its lease is still held, and operations whose SQLite version relies
on the single writer (intake's one-open-case-per-URL check, notice aggregation, migrations) take
a transaction-scoped advisory lock (``_lock``). Transactions that meet a deadlock or
serialisation failure are run again (``_transact``).

The store is synchronous: the pipeline calls it from one dedicated thread (``AsyncStore``). It
holds a small ``psycopg_pool.ConnectionPool`` (autocommit connections; writes open an explicit
transaction), so a streamed read such as ``hashlist_entries`` never blocks other calls.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from engine import clock
from engine.errors import StorageError
from engine.store.dialect import POSTGRESQL
from engine.store.migrations import MIGRATIONS
from engine.store.sql import SQLStore

T = TypeVar("T")
Conn = psycopg.Connection[dict[str, Any]]
# Transient conflicts between concurrent transactions: the whole transaction is retried.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure,
              pg_errors.LockNotAvailable)


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


class PgConnection:
    """A pooled psycopg connection that takes the shared store's ``?`` statements."""

    __slots__ = ("raw",)

    def __init__(self, raw: Conn) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        # Parameters always given (even empty): psycopg then undoes the %% of literal percents.
        return self.raw.execute(POSTGRESQL.sql(sql), params or ())  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        rows = list(rows)
        if rows:
            cur.executemany(POSTGRESQL.sql(sql), rows)  # type: ignore[arg-type]
        return cur


class PostgresStore(SQLStore):
    """Case store in a PostgreSQL database (``postgresql://`` or ``postgres://`` URL)."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, max_connections: int = 4, connect_timeout: float = 10.0
                 ) -> None:
        self.url = url
        self.where = describe_url(url)
        try:
            self.pool: ConnectionPool[Conn] = ConnectionPool(
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

    def close(self) -> None:
        self.pool.close()

    # -- connection and transactions -----------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[PgConnection]:
        """A pooled connection, with database errors mapped to ``StorageError``."""
        try:
            with self.pool.connection() as conn:
                yield PgConnection(conn)
        except _RETRYABLE:
            raise  # the caller's retry loop handles these
        except PoolTimeout as exc:
            raise StorageError(f"{self.where}: no database connection available: {exc}") from exc
        except pg_errors.RaiseException as exc:
            raise StorageError(f"{self.where}: {exc.diag.message_primary}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {exc}") from exc

    @contextmanager
    def _write(self, *, pipeline: bool = False) -> Iterator[PgConnection]:
        """One transaction on a pooled connection (committed on success, rolled back else).

        ``pipeline``: in psycopg's pipeline mode, BEGIN, the statements whose results nobody
        fetches and COMMIT travel together; a fetch waits for the answers sent so far. A stage
        commit (an UPDATE … RETURNING, then four inserts) takes two round trips instead of
        seven. Errors surface at the next fetch or at the end, and roll back as usual."""
        with self._conn() as conn, (conn.raw.pipeline() if pipeline else nullcontext()), \
                conn.raw.transaction():
            yield conn

    def _transact(self, fn: Callable[[PgConnection], T], *, pipeline: bool = False,
                  attempts: int = 5) -> T:
        """Run ``fn(conn)`` in a transaction, retrying it after a deadlock or serialisation
        failure (the transaction was rolled back, so running it again is safe)."""
        for attempt in range(attempts):
            try:
                with self._write(pipeline=pipeline) as conn:
                    return fn(conn)
            except _RETRYABLE as exc:
                if attempt == attempts - 1:
                    raise StorageError(f"{self.where}: gave up after {attempts} conflicting "
                                       f"attempts: {exc}") from exc
                time.sleep(0.01 * (attempt + 1))  # back off before the rerun (not a test wait)
        raise AssertionError("unreachable")

    def _lock(self, conn: PgConnection, name: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (advisory_key(name),))

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchall()

    def _read_many(self, statements: Sequence[tuple[str, Sequence[Any]]]
                   ) -> list[list[dict[str, Any]]]:
        # Pipelined on one connection: the reads go out together, one round trip for all.
        with self._conn() as conn:
            with conn.raw.pipeline():
                cursors = [conn.execute(sql, params) for sql, params in statements]
            return [cur.fetchall() for cur in cursors]

    def _atomic(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        # One statement is atomic on its own: autocommit saves the BEGIN/COMMIT round trips.
        return self._read(sql, params)

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor on its own pooled connection: streamed in 50,000-row pages.
        with self._conn() as conn, conn.raw.transaction(), conn.raw.cursor(
                name="ntd_stream", row_factory=tuple_row) as cur:
            cur.itersize = 50_000
            cur.execute(POSTGRESQL.sql(sql), ())  # type: ignore[arg-type]
            yield from cur

    def _bulk_insert(self, conn: PgConnection, table: str, columns: Sequence[str],
                     rows: Iterable[Sequence[Any]]) -> int:
        # COPY streams a million rows in seconds where INSERTs would take minutes.
        count = 0
        with conn.raw.cursor() as cur, cur.copy(
                f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[arg-type]
            for row in rows:
                copy.write_row(row)
                count += 1
        return count

    def _table_columns(self, table: str) -> set[str]:
        return {r["attname"] for r in self._read(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(?)"
            " AND attnum > 0 AND NOT attisdropped", (table,))}

    # -- schema --------------------------------------------------------------------------------
    @staticmethod
    def _version(conn: PgConnection) -> int:
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
                self._lock(conn, "migrate")
                current = self._version(conn)
                if current > newest:
                    raise StorageError(f"{self.where} is at schema version {current}, "
                                       f"newer than this ntd ({newest})")
                if current == newest:
                    return newest
                version = current + 1
                for statement in MIGRATIONS[version]["postgresql"]:
                    conn.raw.execute(statement)  # type: ignore[arg-type]  # literal DDL
                conn.execute("INSERT INTO schema_version(version, applied_at) VALUES (?, ?)",
                             (version, clock.Clock().now_text()))

    # -- maintenance ---------------------------------------------------------------------------
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
            conn.execute(f"VACUUM (FULL) {', '.join(self._SHRED_TABLES)}")
            conn.execute("VACUUM (ANALYZE)")
