"""SQLite part of the store for anonymised statistics (read-only aggregate queries)."""

from __future__ import annotations


class SQLiteStatsMixin:
    """Aggregate queries of the SQLite store used by ``engine.stats``."""
