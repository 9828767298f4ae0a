"""Hash sources and match-quality controls, written once for both backends.

Mixed into ``engine.store.sql.SQLStore``; the role interface is
``engine.store.roles.HashSourceStore``.

- ``sync_hashlist``: apply what a hash source reported (``docs/hash-sources.md``) as a diff
  against the local list, keyed by the source's own id of each entry (``external_id``): rows
  that did not change keep their id, their ``disabled`` switch and their flood-guard state, and
  a sync that changed nothing leaves the hash-list generation alone (running matchers do not
  reload). ``hashsource_state`` keeps where the source's last sync stopped (its cursor).
- ``set_hash_disabled``: one hash of a list switched off or on (``ntd hashlist disable``).
- ``record_entry_hits`` / ``hold_entries`` / ``held_entries`` / ``release_entry``: the flood
  guard. A hit is (entry, SHA-256 of the matched URL, time); an entry whose distinct URLs within
  the window pass the limit is held, and a held entry's matches go to the analyst instead of
  confirming, until an admin releases it.

Entries are confidential: nothing here logs a hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from engine.store.sql_util import chunks, dumps, insert_rows

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from engine.store.dialect import Dialect

T = TypeVar("T")
_COLUMNS = ("list", "hash_type", "hash", "category", "label", "source", "external_id")


def url_key(url: str) -> str:
    """The flood guard's key of a URL (its SHA-256: the URL itself is not stored twice)."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


class SQLHashSourceMixin:
    """Hash-source and match-quality methods of the SQL store."""

    dialect: Dialect

    if TYPE_CHECKING:
        def _write(self) -> AbstractContextManager[Any]: ...
        def _transact(self, fn: Callable[[Any], T], *, pipeline: bool = False) -> T: ...
        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
        def _bulk_insert(self, conn: Any, table: str, columns: Sequence[str],
                         rows: Iterable[Sequence[Any]]) -> int: ...
        @staticmethod
        def _bump_generation(conn: Any) -> None: ...

    # -- syncs ---------------------------------------------------------------------------------
    def sync_hashlist(self, name: str, *, source: str, trust: str, negative: bool = False,
                      entries: Iterable[tuple[str, str, str, str, str | None]],
                      removed: Iterable[str] = (), replace: bool = False,
                      cursor: str | None = None, state_source: str | None = None,
                      now: str) -> dict[str, int]:
        """Apply a source's changes to list ``name`` (created if missing) in one transaction.

        ``entries`` yields ``(external_id, hash_type, hash, category, label)``: for each
        external id given, the list ends up holding exactly those hashes (missing ones added,
        gone ones removed, a changed category updated). ``removed``: external ids deleted at
        the source. ``replace``: the entries are the whole list — rows of other external ids
        go. ``cursor`` (with ``state_source``) is stored as the list's sync state. Returns
        ``{"added", "updated", "removed", "unchanged"}``; the generation moves only when one of
        the first three is not zero."""
        wanted: dict[str, dict[tuple[str, str], tuple[str, str | None]]] = {}
        for external_id, hash_type, value, category, label in entries:
            wanted.setdefault(str(external_id), {})[(hash_type, value)] = (category, label)
        gone = {str(r) for r in removed} - set(wanted)
        counts = {"added": 0, "updated": 0, "removed": 0, "unchanged": 0}
        with self._write() as conn:
            conn.execute("INSERT INTO hashlists(name, source, trust, negative, thresholds,"
                         " entries, imported_at) VALUES (?,?,?,?,'{}',0,?)"
                         " ON CONFLICT(name) DO NOTHING",
                         (name, source, trust, 1 if negative else 0, now))
            conn.execute(f"SELECT name FROM hashlists WHERE name = ?{self.dialect.for_update}",
                         (name,))
            present: dict[str, dict[tuple[str, str], tuple[int, str]]] = {}
            for r in conn.execute("SELECT id, external_id, hash_type, hash, category"
                                  " FROM hashlist_entries WHERE list = ?", (name,)):
                present.setdefault(str(r["external_id"]), {})[(r["hash_type"], r["hash"])] = (
                    r["id"], r["category"])
            drop: list[int] = []
            fresh: list[tuple[Any, ...]] = []
            changed: list[tuple[str, int]] = []
            for external_id, hashes in wanted.items():
                have = present.get(external_id, {})
                for key, (entry_id, category) in have.items():
                    if key not in hashes:
                        drop.append(entry_id)
                    elif hashes[key][0] != category:
                        changed.append((hashes[key][0], entry_id))
                    else:
                        counts["unchanged"] += 1
                fresh += [(name, t, v, c, lbl, source, external_id)
                          for (t, v), (c, lbl) in hashes.items() if (t, v) not in have]
            stale = set(present) - set(wanted) if replace else gone
            for external_id in stale:
                drop += [entry_id for entry_id, _ in present.get(external_id, {}).values()]
            for part in chunks(drop, self.dialect.max_in):
                where, params = self.dialect.in_list("id", part)
                conn.execute(f"DELETE FROM hashlist_entries WHERE {where}", params)
            if changed:
                conn.executemany("UPDATE hashlist_entries SET category = ? WHERE id = ?",
                                 changed)
            counts["added"] = self._bulk_insert(conn, "hashlist_entries", _COLUMNS, fresh)
            counts["removed"], counts["updated"] = len(drop), len(changed)
            moved = counts["added"] + counts["removed"] + counts["updated"]
            if moved:
                conn.execute("UPDATE hashlists SET entries = (SELECT COUNT(*) FROM"
                             " hashlist_entries WHERE list = ?), imported_at = ?, trust = ?,"
                             " source = ? WHERE name = ?", (name, now, trust, source, name))
                self._bump_generation(conn)
            if state_source is not None:
                conn.execute(
                    "INSERT INTO hashsource_state(list, source, cursor, synced_at, detail)"
                    " VALUES (?,?,?,?,?) ON CONFLICT(list) DO UPDATE SET"
                    " source = excluded.source, cursor = COALESCE(excluded.cursor,"
                    " hashsource_state.cursor), synced_at = excluded.synced_at,"
                    " detail = excluded.detail",
                    (name, state_source, cursor, now, dumps(counts)))
        return counts

    def hashsource_states(self) -> list[dict[str, Any]]:
        """Every list's sync state: ``list``, ``source``, ``cursor``, ``synced_at``, ``detail``
        (the counts of its last sync)."""
        return [{"list": r["list"], "source": r["source"], "cursor": r["cursor"],
                 "synced_at": r["synced_at"], "detail": json.loads(r["detail"])}
                for r in self._read("SELECT * FROM hashsource_state ORDER BY list")]

    # -- single entries ------------------------------------------------------------------------
    def set_hash_disabled(self, list_name: str, value: str, disabled: bool) -> int:
        """Switch every entry of ``list_name`` holding the hash ``value`` (any hash type) off
        or on; returns how many entries changed (0: no such hash, or already so)."""
        with self._write() as conn:
            cur = conn.execute("UPDATE hashlist_entries SET disabled = ? WHERE list = ?"
                               " AND hash = ? AND disabled <> ?",
                               (1 if disabled else 0, list_name, value.lower(),
                                1 if disabled else 0))
            if cur.rowcount:
                self._bump_generation(conn)
            return int(cur.rowcount)

    def disabled_count(self, list_name: str) -> int:
        """How many entries of a list are switched off."""
        rows = self._read("SELECT COUNT(*) AS n FROM hashlist_entries WHERE list = ?"
                          " AND disabled = 1", (list_name,))
        return int(rows[0]["n"])

    # -- flood guard ---------------------------------------------------------------------------
    def record_entry_hits(self, entry_ids: Iterable[int], url: str, *, now: str,
                          since: str, limit: int) -> dict[int, int]:
        """Record that ``url`` matched these entries; return the entries (not yet held) that
        matched more than ``limit`` distinct URLs since ``since``, with their counts."""
        ids = sorted(set(entry_ids))
        if not ids:
            return {}
        key = url_key(url)
        where, params = self.dialect.in_list("entry_id", ids)

        def run(conn: Any) -> dict[int, int]:
            # Pipelined on PostgreSQL: the delete and the insert go out with the count, one
            # round trip (the flood guard runs for every confirmed case).
            conn.execute(f"DELETE FROM hashlist_hits WHERE {where} AND at < ?",
                         [*params, since])
            insert_rows(conn, "INSERT INTO hashlist_hits(entry_id, url_key, at) VALUES {}"
                        " ON CONFLICT(entry_id, url_key) DO UPDATE SET at = excluded.at",
                        [(i, key, now) for i in ids])
            counts = conn.execute(
                f"SELECT h.entry_id, COUNT(*) AS n FROM hashlist_hits h WHERE {where}"
                " AND NOT EXISTS (SELECT 1 FROM hashlist_holds d"
                " WHERE d.entry_id = h.entry_id) GROUP BY h.entry_id", params).fetchall()
            return {int(r["entry_id"]): int(r["n"]) for r in counts if r["n"] > limit}

        return self._transact(run, pipeline=True)

    def hold_entries(self, counts: dict[int, int], *, now: str) -> int:
        """Hold entries for review (``{entry id: distinct URLs}``); returns how many new."""
        if not counts:
            return 0
        with self._write() as conn:
            where, params = self.dialect.in_list("id", sorted(counts))
            lists = {int(r["id"]): r["list"] for r in conn.execute(
                f"SELECT id, list FROM hashlist_entries WHERE {where}", params)}
            rows = [(i, lists[i], n, now) for i, n in counts.items() if i in lists]
            before = conn.execute("SELECT COUNT(*) AS n FROM hashlist_holds").fetchone()["n"]
            conn.executemany("INSERT INTO hashlist_holds(entry_id, list, urls, held_at)"
                             " VALUES (?,?,?,?) ON CONFLICT(entry_id) DO NOTHING", rows)
            added = conn.execute("SELECT COUNT(*) AS n FROM hashlist_holds").fetchone()["n"]
            if added != before:
                self._bump_generation(conn)
            return int(added - before)

    def held_entries(self) -> list[dict[str, Any]]:
        """The held entries: ``entry_id``, ``list``, ``hash_type``, ``category``, ``urls``,
        ``held_at`` (never the hash itself: entries are confidential)."""
        return [{"entry_id": int(r["entry_id"]), "list": r["list"], "hash_type": r["hash_type"],
                 "category": r["category"], "urls": int(r["urls"]), "held_at": r["held_at"]}
                for r in self._read(
                    "SELECT d.entry_id, d.list, e.hash_type, e.category, d.urls, d.held_at"
                    " FROM hashlist_holds d JOIN hashlist_entries e ON e.id = d.entry_id"
                    " ORDER BY d.held_at, d.entry_id")]

    def held_entry_ids(self) -> set[int]:
        """The ids of the held entries (the matcher treats their matches as review)."""
        return {int(r["entry_id"]) for r in self._read("SELECT entry_id FROM hashlist_holds")}

    def release_entry(self, entry_id: int) -> bool:
        """Release a held entry: its matches confirm again and its hit count starts afresh."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM hashlist_holds WHERE entry_id = ?", (entry_id,))
            conn.execute("DELETE FROM hashlist_hits WHERE entry_id = ?", (entry_id,))
            if cur.rowcount:
                self._bump_generation(conn)
            return bool(cur.rowcount)
