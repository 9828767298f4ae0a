"""Small helpers of the SQL store: JSON text, slicing, multi-row inserts."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

ROWS_PER_STATEMENT = 100  # rows of one multi-row statement (well under SQLite's variable cap)


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``seq`` in slices of at most ``size``."""
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


def insert_rows(conn: Any, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``sql`` (with ``{}`` where the VALUES rows go) for ``rows``, a chunk per statement."""
    if not rows:
        return
    marks = "(" + ",".join("?" * len(rows[0])) + ")"
    for chunk in chunks(rows, ROWS_PER_STATEMENT):
        conn.execute(sql.format(",".join([marks] * len(chunk))),
                     [value for row in chunk for value in row])


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON text (how the store keeps JSON values)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
