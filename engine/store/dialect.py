"""What differs between SQLite and PostgreSQL SQL, in one small object per backend.

The shared store (``engine.store.sql``) writes every statement once, with ``?`` placeholders, and
asks its backend's dialect for the few fragments the two databases spell differently: list
membership (``IN (?, ?)`` vs ``= ANY(?)``), row locks (none on SQLite, whose single writer
already excludes, vs ``FOR UPDATE`` / ``FOR UPDATE SKIP LOCKED``), JSON access
(``json_extract`` vs ``->`` / ``->>``), JSON array aggregation and "no limit". Placeholders are
translated once per distinct statement (``?`` → ``%s`` for psycopg, cached). Connection
handling, migrations, bulk loading and vacuuming live in the backend modules
(``engine.store.sqlite``, ``engine.store.postgres``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["Dialect", "POSTGRESQL", "SQLITE"]


class Dialect:
    """The SQLite spelling; ``_Postgres`` overrides what PostgreSQL spells otherwise."""

    name = "sqlite"
    #: Appended to a ``SELECT`` whose rows the transaction will update (no-op on SQLite).
    for_update = ""
    #: Appended to a claim's inner ``SELECT``: rows another claimer holds are skipped.
    skip_locked = ""
    #: ``LIMIT ?`` value meaning "no limit".
    no_limit: int | None = -1
    #: Most values bound in one ``IN (...)`` list (SQLite counts bound variables).
    max_in = 500

    def sql(self, statement: str) -> str:
        """``statement`` (written with ``?`` placeholders) as the driver expects it."""
        return statement

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the condition and its parameters."""
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def json_value(self, column: str, key: str) -> str:
        """The JSON value at ``key`` of a JSON text column (numbers stay numbers)."""
        return f"json_extract({column}, '$.{key}')"

    def json_text(self, column: str, key: str) -> str:
        """The value at ``key`` of a JSON text column, as text (for comparisons)."""
        return f"json_extract({column}, '$.{key}')"

    def json_array_agg(self, expr: str) -> str:
        """A JSON array of ``expr`` over an ordered subquery (``'[]'`` when it is empty)."""
        return f"json_group_array({expr})"

    def typed(self, sql_type: str) -> str:
        """A placeholder with its type spelled out (PostgreSQL cannot infer a VALUES column)."""
        return "?"


class _Postgres(Dialect):
    name = "postgresql"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    no_limit = None  # LIMIT NULL is no limit
    max_in = 1 << 30  # one array parameter, whatever its length

    def sql(self, statement: str) -> str:
        return _psycopg_sql(statement)

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def json_value(self, column: str, key: str) -> str:
        return f"({column})::json -> '{key}'"

    def json_text(self, column: str, key: str) -> str:
        return f"({column})::json ->> '{key}'"

    def json_array_agg(self, expr: str) -> str:
        return f"coalesce(json_agg({expr} ORDER BY {expr}), '[]'::json)"

    def typed(self, sql_type: str) -> str:
        return f"CAST(? AS {sql_type})"


@lru_cache(maxsize=4096)
def _psycopg_sql(statement: str) -> str:
    # A literal % (``LIKE 'escalat%'``) must be doubled once placeholders are %s.
    return statement.replace("%", "%%").replace("?", "%s")


SQLITE = Dialect()
POSTGRESQL = _Postgres()
