"""SQLite part of the store for notices (outbox actions, aggregated notices, delivery state).

Mixed into ``SQLiteStore``; the abstract methods live in ``engine.store.base_notices``.
"""

from __future__ import annotations


class SQLiteNoticeMixin:
    """Notice-outbox methods of the SQLite store."""
