"""The analyst's queue in groups: byte-identical copies are one group, near-identical images
(PDQ within ``[assessment] group_pdq_radius``) another, each with the closest known-list
entries (``nearest``) even when they were too far to match.

``GET /api/queue?group=sha256|pdq`` and the console's grid read :meth:`QueueGroups.page`. The
grouping of all waiting cases is computed once per state of the queue (its count and newest
change: one indexed query) and kept in memory, so paging, filters and sorting cost a few
milliseconds; ``nearest`` is looked up for the groups of the page only, in indexes of the
known lists rebuilt when a list changes (``hashlist_generation``).

PDQ groups are found by multi-index hashing: with the 256 bits cut into ``radius + 1``
chunks, two hashes within ``radius`` agree exactly on at least one chunk (pigeonhole), so only
hashes sharing a chunk value are compared; the groups are the connected components.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from engine import clock as clocks
from engine.media.hash_index import ExactIndex, HammingIndex, hex_to_words
from engine.media.items import IMAGE_TYPES

GROUP_KINDS = ("sha256", "pdq")
SORTS = ("oldest", "largest")
NEAREST = 3
# Nearest entries are looked for up to this distance (well beyond the match radii: 31 PDQ,
# 10 pHash), so the analyst sees "close to list X" even when it did not match.
NEAREST_RADIUS = {"pdq": 90, "phash": 24}
CRYPTO = ("sha256", "md5", "sha1")


@dataclass
class _Case:
    id: str
    created_at: str
    channel: str | None
    item: int
    sha256: str | None
    pdq: str | None
    phash: str | None
    lists: frozenset[str]
    pending_by: str | None
    disputed: bool


def _primary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The item a case is judged by: its first image (direct or found on the page), else its
    first hashed item."""
    for r in rows:
        if r["content_type"] in IMAGE_TYPES and r["sha256"]:
            return r
    for r in rows:
        if r["sha256"]:
            return r
    return rows[0]


def _cases(signals: list[dict[str, Any]]) -> list[_Case]:
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in signals:
        by_case[r["case"]].append(r)
    out = []
    for case_id, rows in by_case.items():
        p = _primary(rows)
        lists = frozenset(m.get("list") for r in rows for m in r["matches"] if m.get("list"))
        out.append(_Case(id=case_id, created_at=rows[0]["created_at"], channel=p["channel"],
                         item=p["item"], sha256=p["sha256"], pdq=p["pdq"], phash=p["phash"],
                         lists=lists, pending_by=(p["pending"] or {}).get("by"),
                         disputed=bool(p["disputed"])))
    return out


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def pdq_components(hexes: list[str], radius: int) -> list[int]:
    """For each PDQ hash, the index of its group's first member (groups = hashes linked by
    distances ≤ ``radius``, transitively)."""
    n = len(hexes)
    parent = list(range(n))
    if n < 2:
        return parent
    words = np.stack([hex_to_words(h) for h in hexes]).astype(">u8")
    bits = np.unpackbits(words.view(np.uint8), axis=1)  # (n, 256), most significant first
    m = min(radius + 1, 256)
    edges = np.linspace(0, 256, m + 1).astype(int)
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        width = end - start
        weights = (1 << np.arange(width - 1, -1, -1, dtype=np.int64))
        keys = bits[:, start:end].astype(np.int64) @ weights
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = sorted_keys[1:] == sorted_keys[:-1]
        if not same.any():
            continue
        starts = np.flatnonzero(np.r_[True, ~same])
        dup = np.flatnonzero(same) + 1
        run_of = starts[np.searchsorted(starts, dup, side="right") - 1]
        for pos, st in zip(dup.tolist(), run_of.tolist(), strict=True):
            j = int(order[pos])
            for k in order[st:pos].tolist():
                a, b = _find(parent, k), _find(parent, j)
                if a == b:
                    break
                if int(np.count_nonzero(bits[k] != bits[j])) <= radius:
                    parent[max(a, b)] = min(a, b)
                    break
    return [_find(parent, i) for i in range(n)]


def build_groups(cases: list[_Case], kind: str, radius: int) -> list[dict[str, Any]]:
    """Groups of waiting cases, oldest case first within and across groups."""
    groups: dict[str, list[_Case]] = {}
    for c in cases:
        key = f"sha256:{c.sha256}" if c.sha256 else f"case:{c.id}"
        groups.setdefault(key, []).append(c)
    if kind == "pdq":
        keys = list(groups)
        with_pdq = [k for k in keys if groups[k][0].pdq]
        roots = pdq_components([groups[k][0].pdq or "" for k in with_pdq], radius)
        merged: dict[str, list[_Case]] = {}
        for k, root in zip(with_pdq, roots, strict=True):
            merged.setdefault(f"pdq:{groups[with_pdq[root]][0].pdq}", []).extend(groups[k])
        for k in keys:
            if not groups[k][0].pdq:
                merged[k] = groups[k]
        groups = {k: sorted(v, key=lambda c: (c.created_at, c.id)) for k, v in merged.items()}
    return [{"key": k, "kind": k.split(":", 1)[0], "members": v} for k, v in groups.items()]


class _Nearest:
    """Indexes of every known-list entry, for "how close is the nearest entry"."""

    def __init__(self, store: Any) -> None:
        self.generation = store.hashlist_generation()
        self.meta: dict[int, tuple[str, str]] = {}
        hexes: dict[str, tuple[list[str], list[int]]] = defaultdict(lambda: ([], []))
        for entry_id, list_name, hash_type, value, category in store.hashlist_entries():
            self.meta[entry_id] = (list_name, category)
            hexes[hash_type][0].append(value)
            hexes[hash_type][1].append(entry_id)
        self.perceptual: dict[str, HammingIndex] = {}
        self.exact: dict[str, ExactIndex] = {}
        for hash_type, (values, ids) in hexes.items():
            try:
                if hash_type in NEAREST_RADIUS:
                    index = HammingIndex(256 if hash_type == "pdq" else 64)
                    index.add(np.stack([hex_to_words(v) for v in values]), ids)
                    self.perceptual[hash_type] = index
                elif hash_type in CRYPTO:
                    bits = {"sha256": 256, "md5": 128, "sha1": 160}[hash_type]
                    exact = ExactIndex(bits)
                    exact.add(np.stack([np.resize(hex_to_words(v), (bits + 63) // 64)
                                        for v in values]), ids)
                    self.exact[hash_type] = exact
            except ValueError:  # a malformed entry: that type has no nearest then
                continue

    def nearest(self, c: _Case) -> list[dict[str, Any]]:
        hits: dict[int, int] = {}
        if c.sha256 and "sha256" in self.exact:
            try:
                for entry_id in self.exact["sha256"].lookup(c.sha256):
                    hits[entry_id] = 0
            except ValueError:
                pass
        for hash_type, value in (("pdq", c.pdq), ("phash", c.phash)):
            index = self.perceptual.get(hash_type)
            if not value or index is None:
                continue
            try:
                found = index.search(value, NEAREST_RADIUS[hash_type])
            except ValueError:
                continue
            for entry_id, dist in found[:NEAREST * 4]:
                hits[entry_id] = min(dist, hits.get(entry_id, dist))
        best: dict[tuple[str, str], int] = {}
        for entry_id, dist in hits.items():
            key = self.meta[entry_id]
            best[key] = min(dist, best.get(key, dist))
        ranked = sorted(best.items(), key=lambda kv: (kv[1], kv[0]))[:NEAREST]
        return [{"list": k[0], "category": k[1], "distance": d} for k, d in ranked]


class QueueGroups:
    """The grouped queue of one store, cached per state of the queue (thread-safe)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self._cached: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._nearest: _Nearest | None = None
        self._views: dict[tuple[Any, ...], tuple[Any, list[Any], int]] = {}

    def _groups(self, kind: str) -> list[dict[str, Any]]:
        store = self.rt.store
        radius = self.rt.config.get("assessment", "group_pdq_radius", 16)
        key = (store.queue_version(), kind, radius)
        with self._lock:
            found = self._cached.get(key)
        if found is not None:
            return found
        groups = self._pruned(key) or build_groups(_cases(store.waiting_signals()), kind,
                                                   radius)
        with self._lock:
            # keep the previous grouping of each kind for pruning; drop the rest
            self._cached = {k: v for k, v in self._cached.items()
                            if k[0] == key[0] or k[1:] == key[1:]}
            for k in [k for k in self._cached if k[1:] == key[1:] and k != key]:
                del self._cached[k]
            self._cached[key] = groups
        return groups

    def _pruned(self, key: tuple[Any, ...]) -> list[dict[str, Any]] | None:
        """When cases only left the queue since the cached grouping (fewer cases, the same
        newest change: verdicts, not arrivals), the cached groups without them — one read of
        the waiting ids instead of the whole grouping."""
        (count, newest), kind, radius = key
        with self._lock:
            older = [(k, v) for k, v in self._cached.items()
                     if k[1:] == (kind, radius) and k[0][1] == newest and k[0][0] > count]
        if not older:
            return None
        waiting = set(self.rt.store.waiting_ids())
        if len(waiting) != count:
            return None
        pruned = []
        for g in older[0][1]:
            members = [c for c in g["members"] if c.id in waiting]
            if members:
                pruned.append({**g, "members": members})
        return pruned

    def _nearest_index(self) -> _Nearest:
        generation = self.rt.store.hashlist_generation()
        with self._lock:
            current = self._nearest
        if current is None or current.generation != generation:
            current = _Nearest(self.rt.store)
            with self._lock:
                self._nearest = current
        return current

    def page(self, *, group: str = "sha256", limit: int = 50, offset: int = 0,
             channel: str | None = None, list_name: str | None = None,
             age_hours: float | None = None, sort: str = "oldest",
             viewer: str | None = None, disputed: bool = False) -> dict[str, Any]:
        """``GET /api/queue?group=``'s answer: a page of groups with true totals.

        Filters: ``channel`` (of the first report), ``list_name`` (a list one of the case's
        items matched without deciding), ``age_hours`` (waiting at least this long). A case
        whose verdict waits for a second opinion is hidden from the analyst who gave it;
        disputed cases appear only with ``disputed`` (the admins' list)."""
        cutoff = None
        if age_hours is not None:
            cutoff = clocks.fmt(clocks.parse(self.rt.clock.now_text())
                                - timedelta(hours=age_hours))

        def keep(c: _Case) -> bool:
            if c.disputed != disputed:
                return False
            if viewer is not None and c.pending_by == viewer:
                return False
            if channel and c.channel != channel:
                return False
            if list_name and list_name not in c.lists:
                return False
            return cutoff is None or c.created_at <= cutoff

        groups = self._groups(group)
        # The filtered, sorted view is cached too (per state of the queue and filters): a page
        # is then a slice. Who is viewing matters only while some verdict awaits a second one.
        pending = any(c.pending_by for g in groups for c in g["members"]) if viewer else False
        view_key = (id(groups), channel, list_name, cutoff, sort, disputed,
                    viewer if pending else None)
        with self._lock:
            view = self._views.get(view_key)
        if view is None or view[0] is not groups:
            shown = []
            for g in groups:
                members = [c for c in g["members"] if keep(c)]
                if members:
                    shown.append((g, members))
            if sort == "largest":
                shown.sort(key=lambda gm: (-len(gm[1]), gm[1][0].created_at, gm[1][0].id))
            else:
                shown.sort(key=lambda gm: (gm[1][0].created_at, gm[1][0].id))
            view = (groups, shown, sum(len(m) for _, m in shown))
            with self._lock:
                if len(self._views) > 64:
                    self._views.clear()
                self._views[view_key] = view
        _, shown, total_cases = view
        nearest = self._nearest_index() if shown[offset:offset + limit] else None
        out = []
        for g, members in shown[offset:offset + limit]:
            first = members[0]
            out.append({
                "key": g["key"], "kind": g["kind"], "count": len(members),
                "cases": [c.id for c in members],
                "sample": {"case": first.id, "item": first.item},
                "nearest": nearest.nearest(first) if nearest else [],
                "oldest": first.created_at,
                "pending": [c.id for c in members if c.pending_by],
                "pdq": first.pdq})
        return {"groups": out, "total_cases": total_cases, "total_groups": len(shown),
                "limit": limit, "offset": offset}
