"""Built-in match stage: compare item hashes with known-hash lists; analyst learning; commands.

Exact lookups for the cryptographic hash types (MD5/SHA-1/SHA-256), Hamming-radius search for
the perceptual ones (pHash, default radius 8; PDQ, default 31) through
``engine.media.hash_index``; the types, bit lengths and radii come from ``engine.media.signals``.
A list with ``trust = "auto"`` confirms a case on a match; a ``review`` list only flags it for the
analyst; a *negative* list (known-benign hashes) suppresses matches on the same item. Lists are
reloaded whenever the store's hash-list generation changes, so a newly imported list matches on
the next case without a restart.

Decision per case:
- any item with a (non-suppressed) match on an ``auto`` list → ``confirmed``;
- every hashed item suppressed by a negative list and nothing else to look at → ``dismissed``;
- otherwise → ``awaiting_assessment`` (matches on ``review`` lists are recorded for the analyst).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from engine.media.hash_index import HammingIndex, hexes_to_words
from engine.media.signals import (
    CRYPTO_NAMES,
    PERCEPTUAL_NAMES,
    PERCEPTUAL_TYPES,
    VPDQ,
    default_radii,
    perceptually_hashed,
)
from engine.media.vpdq_format import parse_features
from engine.models import Item

# HMA's defaults (python-threatexchange VPDQ_QUERY/INDEX_MATCH_THRESHOLD_PERCENT): a video
# matches a listed one when 80 % of its frames are found in it; how much of the listed video
# is found is not required (0 %): a clip of a listed video matches.
VPDQ_QUERY_MATCH = 80.0
VPDQ_INDEX_MATCH = 0.0


def percent(value: float) -> str | None:
    """A configuration check: a share in per cent."""
    return None if 0 <= value <= 100 else "must be between 0 and 100"


@dataclass
class _ListMeta:
    name: str
    trust: str
    negative: bool
    thresholds: dict[str, int]


@dataclass
class Matcher:
    """In-memory indexes over every stored list, tagged with the generation they reflect."""

    generation: int = -1
    lists: dict[str, _ListMeta] = field(default_factory=dict)
    entry_list: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (list, cat)
    exact: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    hamming: dict[str, HammingIndex] = field(default_factory=dict)
    min_quality: dict[str, int] = field(default_factory=dict)  # {hash type: lowest quality}
    default_radius: dict[str, int] = field(
        default_factory=lambda: {**default_radii(), VPDQ.name: VPDQ.default_radius})
    # vPDQ: every listed video's unique frames (of sufficient quality) in one Hamming index;
    # a row's video entry, and each entry's number of frames there.
    frames: HammingIndex = field(default_factory=lambda: HammingIndex(VPDQ.bits))
    frame_entry: list[int] = field(default_factory=list)
    entry_frames: dict[int, int] = field(default_factory=dict)
    vpdq_query_match: float = VPDQ_QUERY_MATCH
    vpdq_index_match: float = VPDQ_INDEX_MATCH
    held: set[int] = field(default_factory=set)  # entries the flood guard holds for review

    @classmethod
    def build(cls, store: Any, *, default_radius: dict[str, int] | None = None,
              min_quality: dict[str, int] | None = None,
              vpdq_match: tuple[float, float] = (VPDQ_QUERY_MATCH, VPDQ_INDEX_MATCH),
              ) -> Matcher:
        """Load every list from the store (synchronous; run off the event loop).

        ``default_radius`` and ``min_quality`` override the hash types' defaults, by name;
        ``vpdq_match``: the shares (%) of query and listed frames a video match needs."""
        m = cls(min_quality=dict(min_quality or {}), vpdq_query_match=vpdq_match[0],
                vpdq_index_match=vpdq_match[1])
        if default_radius:
            m.default_radius.update(default_radius)
        m.generation = store.hashlist_generation()
        m.held = store.held_entry_ids()
        for meta in store.hashlists():
            m.lists[meta["name"]] = _ListMeta(meta["name"], meta["trust"], meta["negative"],
                                              dict(meta["thresholds"]))
        m.exact = {t: {} for t in CRYPTO_NAMES}
        pending: dict[str, tuple[list[str], list[int]]] = {t: ([], []) for t in
                                                           PERCEPTUAL_NAMES}
        video_hexes: list[str] = []
        for entry_id, list_name, hash_type, value, category in store.hashlist_entries():
            m.entry_list[entry_id] = (list_name, category)
            if hash_type == VPDQ.name:
                unique = m._video_frames(value)
                video_hexes += unique
                m.frame_entry += [entry_id] * len(unique)
                m.entry_frames[entry_id] = len(unique)
            elif hash_type in m.exact:
                m.exact[hash_type].setdefault(value, []).append(entry_id)
            elif hash_type in pending:
                pending[hash_type][0].append(value)
                pending[hash_type][1].append(entry_id)
        for kind in PERCEPTUAL_TYPES:
            index = HammingIndex(kind.bits)
            hexes, ids = pending[kind.name]
            if hexes:
                import numpy as np  # deferred: heavy dependency, loaded on first use

                index.add(hexes_to_words(hexes, kind.bits), np.asarray(ids, dtype=np.int64))
            m.hamming[kind.name] = index
        if video_hexes:
            import numpy as np  # deferred: heavy dependency, loaded on first use

            m.frames.add(hexes_to_words(video_hexes, VPDQ.bits),
                         np.arange(len(video_hexes), dtype=np.int64))
        return m

    def _video_frames(self, value: object) -> list[str]:
        """A vPDQ value's unique frame PDQs of at least the quality floor (HMA's dedupe and
        quality filter); none for a malformed value (lists are validated on import)."""
        floor = self.min_quality.get(VPDQ.name, VPDQ.default_min_quality)
        try:
            features = parse_features(value)
        except ValueError:
            return []
        return list(dict.fromkeys(f.pdq for f in features if f.quality >= floor))

    def video_matches(self, value: object) -> list[tuple[int, int, float, float]]:
        """The listed videos a vPDQ value matches: (entry id, closest frame distance, % of
        the query's frames found, % of the entry's frames found), both shares at least their
        thresholds. Each query frame is looked up in the frame index within the vPDQ radius
        of the entry's list (the vPDQ comparison, through the index)."""
        if not len(self.frames):
            return []
        query = self._video_frames(value)
        if not query:
            return []
        widest = max([self.radius(VPDQ.name, n) for n in self.lists] or [0])
        found_q: dict[int, set[int]] = {}  # entry -> query frames found
        found_c: dict[int, set[int]] = {}  # entry -> its frames found
        best: dict[int, int] = {}
        for qi, pdq in enumerate(query):
            for row, distance in self.frames.search(pdq, widest):
                entry_id = self.frame_entry[row]
                if distance > self.radius(VPDQ.name, self.entry_list[entry_id][0]):
                    continue
                found_q.setdefault(entry_id, set()).add(qi)
                found_c.setdefault(entry_id, set()).add(row)
                best[entry_id] = min(distance, best.get(entry_id, distance))
        out = []
        for entry_id, rows in found_c.items():
            q_share = len(found_q[entry_id]) * 100 / len(query)
            c_share = len(rows) * 100 / self.entry_frames[entry_id]
            if q_share >= self.vpdq_query_match and c_share >= self.vpdq_index_match:
                out.append((entry_id, best[entry_id], round(q_share, 1), round(c_share, 1)))
        return out

    def radius(self, hash_type: str, list_name: str) -> int:
        """The Hamming threshold of a list for a hash type (list setting, else default)."""
        meta = self.lists.get(list_name)
        if meta and hash_type in meta.thresholds:
            return int(meta.thresholds[hash_type])
        return self.default_radius[hash_type]

    def match_hashes(self, hashes: dict[str, Any],
                     mirror: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every list entry matching one item's hashes, as contract-shaped match records."""
        return self._match(hashes, mirror)[0]

    def _match(self, hashes: dict[str, Any], mirror: dict[str, str] | None = None,
               ) -> tuple[list[dict[str, Any]], set[tuple[str, str]], dict[tuple[str, str], int]]:
        """Match records, the (list, hash type) pairs whose best hit came through the
        hash of the left-right mirror image (``mirror``: ``{"pdq": ..}``; negative lists are
        not searched with it), and the entry id of each pair's best hit."""
        # (entry id, hash type, distance, mirrored)
        hits: list[tuple[int, str, int, bool]] = []
        for hash_type in CRYPTO_NAMES:
            value = hashes.get(hash_type)
            if value:
                hits += [(i, hash_type, 0, False)
                         for i in self.exact.get(hash_type, {}).get(value, [])]
        if hashes.get(VPDQ.name):
            hits += [(entry_id, VPDQ.name, distance, False)
                     for entry_id, distance, _, _ in self.video_matches(hashes[VPDQ.name])]
        for kind in PERCEPTUAL_TYPES:
            hash_type = kind.name
            index = self.hamming.get(hash_type)
            if index is None or not len(index):
                continue
            if kind.quality_key and ((hashes.get(kind.quality_key) or 0)
                                     < self.min_quality.get(hash_type, kind.default_min_quality)):
                continue  # low-quality PDQ (flat images) matches everything flat
            widest = max([self.radius(hash_type, n) for n in self.lists] or [0])
            # The item's hash, and the hash of its left-right mirror (a mirrored copy of a
            # listed image matches through the latter).
            for value, mirrored in ((hashes.get(hash_type), False),
                                    ((mirror or {}).get(hash_type), True)):
                if not value:
                    continue
                for entry_id, distance in index.search(value, widest):
                    list_name, _ = self.entry_list[entry_id]
                    if mirrored and self.lists[list_name].negative:
                        continue  # a benign look-alike of the mirror image suppresses nothing
                    if distance <= self.radius(hash_type, list_name):
                        hits.append((entry_id, hash_type, distance, mirrored))
        best: dict[tuple[str, str], dict[str, Any]] = {}
        entry_of: dict[tuple[str, str], int] = {}
        via_mirror: set[tuple[str, str]] = set()
        for entry_id, hash_type, distance, mirrored in hits:
            list_name, category = self.entry_list[entry_id]
            meta = self.lists[list_name]
            key = (list_name, hash_type)
            if key not in best or distance < best[key]["distance"]:
                best[key] = {"list": list_name, "hash_type": hash_type, "distance": distance,
                             "category": category, "negative": meta.negative}
                entry_of[key] = entry_id
                if mirrored:
                    via_mirror.add(key)
                else:
                    via_mirror.discard(key)
        records = sorted(best.values(), key=lambda m: (m["negative"], m["distance"], m["list"]))
        return records, via_mirror, entry_of

    def decide(self, items: Iterable[Item], mirrors: dict[str, dict[str, str]] | None = None,
               remote: dict[str, list[Any]] | None = None,
               ) -> tuple[str, list[Item], dict[str, Any]]:
        """Match every item; return (state, items with matches, event detail).

        ``mirrors``: an item's SHA-256 -> the perceptual hashes of its mirror image. A
        confirmation found through them is marked ``"mirrored": true`` in the event detail (the
        match records keep their contract fields). ``remote``: an item's URL -> the
        ``RemoteMatch`` answers of match-time lookup sources, taken like matches on lists of
        their ``trust``. A match on an entry the flood guard holds (``held``) goes to review;
        the detail's ``confirming_entries`` lists the entry ids that confirmed (for the flood
        guard; the stage drops it from the event)."""
        items = list(items)
        out: list[Item] = []
        confirming: list[dict[str, Any]] = []
        hashed = suppressed = held = 0
        review: list[dict[str, Any]] = []
        low_quality: list[dict[str, Any]] = []
        entries: set[int] = set()
        for item in items:
            if not item.hashes:
                out.append(item)
                continue
            low_quality += self._below_quality(item)
            mirror = (mirrors or {}).get(str(item.hashes.get("sha256")))
            matches, via_mirror, entry_of = self._match(item.hashes, mirror)
            trust = {m["list"]: self.lists[m["list"]].trust for m in matches}
            for answer in (remote or {}).get(item.url, ()):
                if any(m["list"] == answer["list"] and m["hash_type"] == answer["hash_type"]
                       for m in matches):
                    continue
                matches.append({"list": answer["list"], "hash_type": answer["hash_type"],
                                "distance": answer["distance"], "category": answer["category"],
                                "negative": False})
                trust[answer["list"]] = answer["trust"]
            out.append(replace(item, matches=matches))
            if not perceptually_hashed(item.hashes) and item.kind == "url" and not matches:
                continue  # a page's own bytes: nothing for the analyst to assess by hash
            hashed += 1
            if any(m["negative"] for m in matches):
                suppressed += 1
                continue
            for m in matches:
                key = (m["list"], m["hash_type"])
                hit = {**m, "item": item.url, "mirrored": key in via_mirror}
                if key in entry_of and entry_of[key] in self.held:
                    held += 1
                    review.append(hit)
                elif trust[m["list"]] == "auto":
                    confirming.append(hit)
                    if key in entry_of:
                        entries.add(entry_of[key])
                else:
                    review.append(hit)
        # The case says which hashes were kept but not matched for their low quality.
        quality_note = {"not_matched_low_quality": low_quality} if low_quality else {}
        if confirming:
            best = min(confirming, key=lambda m: m["distance"])
            detail = {"list": best["list"], "category": best["category"],
                      "hash_type": best["hash_type"], "distance": best["distance"],
                      "matched_items": len({m["item"] for m in confirming}),
                      "confirming_entries": sorted(entries), **quality_note}
            if best["mirrored"]:
                detail["mirrored"] = True  # the listed image, flipped left-right
            if best["hash_type"] == VPDQ.name:  # the shares of frames found, both ways
                detail.update(self._video_detail(items, best))
            return "confirmed", out, detail
        if hashed and suppressed == hashed:
            return "dismissed", out, {"reason": "all media known benign (negative list)",
                                      "suppressed_items": suppressed, **quality_note}
        detail = {"review_matches": len(review), "suppressed_items": suppressed,
                  **quality_note}
        if held:
            detail["held_matches"] = held  # matches on entries the flood guard holds
        return "awaiting_assessment", out, detail

    def _below_quality(self, item: Item) -> list[dict[str, Any]]:
        """The item's perceptual hashes that are kept but not looked up (quality too low)."""
        out = []
        for kind in PERCEPTUAL_TYPES:
            if not kind.quality_key or not item.hashes.get(kind.name):
                continue
            quality = item.hashes.get(kind.quality_key) or 0
            floor = self.min_quality.get(kind.name, kind.default_min_quality)
            if quality < floor:
                out.append({"item": item.url, "hash_type": kind.name, "quality": quality,
                            "min_quality": floor})
        return out

    def _video_detail(self, items: list[Item], best: dict[str, Any]) -> dict[str, Any]:
        """The shares of frames found both ways (``query_match``, ``index_match``, in %) of
        the best vPDQ confirmation."""
        for item in items:
            if item.url == best["item"] and item.hashes.get(VPDQ.name):
                for entry_id, distance, q_share, c_share in self.video_matches(
                        item.hashes[VPDQ.name]):
                    if self.entry_list[entry_id][0] == best["list"] \
                            and distance == best["distance"]:
                        return {"query_match": q_share, "index_match": c_share}
        return {}


class _State:
    """The run's matcher, rebuilt when the store's hash-list generation changes."""

    def __init__(self) -> None:
        self.matcher: Matcher | None = None
        self.lock = asyncio.Lock()
        self.checked_at = 0.0
        self.build_lock = threading.Lock()
        # The generation read in flight, and the one that will be sent after it (shared by
        # every case that arrived meanwhile).
        self.reading: asyncio.Future[int] | None = None
        self.next_read: asyncio.Future[int] | None = None


def _state(ctx: Any) -> _State:
    state = ctx.state.get("hashmatch")
    if state is None:
        state = ctx.state["hashmatch"] = _State()
    return state


def _settings(ctx: Any) -> dict[str, Any]:
    return ctx.config.section("match")


async def _read_generation(ctx: Any, state: _State, previous: asyncio.Future[int] | None
                           ) -> int:
    if previous is not None:  # it was sent before this read's callers arrived: wait it out
        await asyncio.wait([previous])
    state.reading, state.next_read = state.next_read, None
    return int(await ctx.store.hashlist_generation())


async def fresh_generation(ctx: Any) -> int:
    """The store's hash-list generation, read after this call began (so a list import that
    committed before it is seen). Callers that arrive while a read is in flight share the next
    read: one in flight and one waiting, however many cases ask (one round trip per case
    serialised the match stage on PostgreSQL)."""
    state = _state(ctx)
    if state.next_read is None:
        state.next_read = asyncio.ensure_future(_read_generation(ctx, state, state.reading))
    return await asyncio.shield(state.next_read)


async def current_matcher(ctx: Any) -> Matcher:
    """The up-to-date matcher of this run (reloads after a list import, without a restart)."""
    state = _state(ctx)
    settings = _settings(ctx)
    seen = state.matcher
    generation = -1  # no matcher yet: any will do
    if seen is not None:
        if time.monotonic() - state.checked_at < settings.get("reload_check_seconds", 0.0):
            return seen
        generation = await fresh_generation(ctx)
        state.checked_at = time.monotonic()
        if generation == seen.generation:
            return seen
    async with state.lock:
        # Rebuilt by another case meanwhile: good enough if it reflects the generation this
        # case read (generations only grow), else build again.
        if state.matcher is not None and state.matcher.generation >= generation:
            return state.matcher
        radius = {t.name: settings.get(f"{t.name}_radius", t.default_radius)
                  for t in PERCEPTUAL_TYPES}
        quality = {t.name: settings.get(f"min_{t.name}_quality", t.default_min_quality)
                   for t in PERCEPTUAL_TYPES if t.quality_key}
        radius[VPDQ.name] = settings.get("vpdq_radius", VPDQ.default_radius)
        quality[VPDQ.name] = settings.get("min_vpdq_quality", VPDQ.default_min_quality)
        vpdq_match = (settings.get("vpdq_query_match", VPDQ_QUERY_MATCH),
                      settings.get("vpdq_index_match", VPDQ_INDEX_MATCH))
        # Built on the database thread: it reads the store, and the loop stays free.
        state.matcher = await ctx.store.call_fn(
            Matcher.build, default_radius=radius, min_quality=quality,
            vpdq_match=vpdq_match)
        state.checked_at = time.monotonic()
        return state.matcher


