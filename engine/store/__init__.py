"""Storage: ``open_store(url)`` picks the backend from the database URL or path."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ConfigError
from engine.store.base import Store
from engine.store.records import Commit, IntakeOutcome, IntakeRow
from engine.store.sqlite import SQLiteStore

DEFAULT_DB = "ntd.db"
DB_ENV = "NTD_DATABASE_URL"

__all__ = ["Commit", "IntakeOutcome", "IntakeRow", "Store", "open_store", "database_url",
           "missing_database"]


def database_url(explicit: str | None = None) -> str:
    """``--db``, then ``NTD_DATABASE_URL``, then ``./ntd.db``."""
    return explicit or os.environ.get(DB_ENV) or DEFAULT_DB


def missing_database(url: str | None = None) -> str | None:
    """The path of a SQLite database that does not exist yet, else None (PostgreSQL URLs are
    checked when they are opened)."""
    target = database_url(url)
    if "://" in target and not target.startswith("sqlite:///"):
        return None
    path = Path(target.removeprefix("sqlite:///"))
    return None if path.exists() else str(path)


def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """Open (and by default migrate) the store named by ``url`` (a path or a database URL)."""
    target = database_url(url)
    if target.startswith(("postgresql://", "postgres://")):
        try:
            # deferred: pulls in psycopg, loaded on first use
            from engine.store.postgres import PostgresStore
        except ImportError as exc:  # psycopg is an optional dependency
            raise ConfigError(f"database URL {target.split('@')[-1]!r}: the PostgreSQL backend "
                              f"needs psycopg 3 and psycopg-pool ({exc})") from exc
        pg = PostgresStore(target)
        if migrate:
            try:
                pg.migrate()
            except BaseException:
                pg.close()
                raise
        return pg
    if target.startswith("sqlite:///"):
        target = target[len("sqlite:///"):]
    elif "://" in target:
        raise ConfigError(f"database URL {target!r}: unsupported scheme (use a path, "
                          "sqlite:///PATH or postgresql://...)")

    store = SQLiteStore(Path(target))
    if migrate:
        store.migrate()
    return store
