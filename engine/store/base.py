"""The storage interface every backend implements (SQLite and PostgreSQL).

Stages never see SQL: they read ``Case`` records and return ``StageResult``s, and the engine calls
the store's methods. ``Store`` combines the role interfaces of ``engine.store.roles`` (cases,
hash lists, lookups, privacy, notices, users, statistics); ``engine.store.sql.SQLStore``
implements them once, and each backend adds only its connections and its ``Dialect``
(``engine.store.dialect``). All methods are synchronous and each write is one transaction; the
pipeline runs them on a dedicated thread (``engine.store.async_store``) so the event loop never
blocks on I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from engine.store.dialect import Dialect
from engine.store.roles import (
    CaseStore,
    HashListStore,
    HashSourceStore,
    IccamStore,
    IntakeSourceStore,
    LookupStore,
    NoticeStore,
    PrivacyStore,
    StatsStore,
    UserStore,
)


class Transaction:
    """SQL with ``?`` placeholders inside one store transaction, on either backend.

    ``tx(sql, params)`` runs a statement and returns its rows as dicts (``[]`` for statements
    without rows); ``tx.rowcount`` is the rows the last statement changed.
    """

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self.rowcount = 0

    def __call__(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        self.rowcount = cur.rowcount
        return [dict(r) for r in cur.fetchall()] if cur.description else []

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for each parameter row."""
        if rows:
            self.conn.executemany(sql, rows)


class Store(CaseStore, HashListStore, HashSourceStore, LookupStore, PrivacyStore, NoticeStore,
            UserStore, StatsStore, IccamStore, IntakeSourceStore, ABC):
    """The whole store: every role, plus schema, connections and raw transactions."""

    url: str
    dialect: Dialect

    # -- schema --------------------------------------------------------------------------------
    @abstractmethod
    def migrate(self) -> int:
        """Bring the schema to the newest version; return that version."""

    @abstractmethod
    def schema_version(self) -> int:
        """The schema version the database is at (0 when empty)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection(s)."""

    @abstractmethod
    def clone(self) -> Store:
        """Another store on the same database with its own connection (for reader threads)."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """One write transaction for SQL the store has no method for (worker registry,
        benchmark set-up): statements use ``?`` placeholders on either backend."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of one read-only statement (``?`` placeholders) as dicts."""
