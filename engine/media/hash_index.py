"""In-memory indexes of known hashes: exact (MD5/SHA-1/SHA-256) and Hamming radius (pHash/PDQ).

Hashes are held as rows of big-endian 64-bit words (``hex_to_words``): a 64-bit pHash is one
word, a 256-bit PDQ four, a 160-bit SHA-1 three (zero-padded). Every entry carries an integer
id that the caller maps back to its list and category.

``HammingIndex`` is multi-index hashing (Norouzi, Punjani & Fleet, "Fast Search in Hamming Space
with Multi-Index Hashing", CVPR 2012) in pure numpy. The bits are cut into ``m`` chunks; by the
pigeonhole principle an entry within distance ``r`` of the query has, for ``r = m·q + a``, at
least one of the first ``a+1`` chunks within ``q`` of the query's chunk or one of the others
within ``q-1``. Each chunk has a bucket table (CSR: offsets by chunk value into a permutation of
entry positions), so a query enumerates the few hundred chunk values within that sub-radius,
collects the entries in those buckets and verifies their full distance. Results are therefore
exactly those of brute force, only the work differs; a radius too large for the probes to pay
off falls back to brute force automatically.

Adding entries never blocks searches for long: new entries land in a small brute-force *tail*;
a full tail becomes an immutable segment, and segments merge when a newer one grows to half of
an older one's size, so there are O(log n) segments. State is replaced copy-on-write under a
lock, so searches running in other threads always see a consistent snapshot.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

from engine.media.signals import CRYPTO_NAMES, HASH_TYPES, PERCEPTUAL_NAMES, default_radii

WORD = 64
DEFAULT_RADIUS = default_radii()  # {perceptual type: radius}, from engine.media.signals
HASH_BITS = {name: t.bits for name, t in HASH_TYPES.items()}

_MAX_CHUNK_BITS = 22  # bucket table of 2^22 uint32 = 16 MiB per chunk; wider isn't worth it
_MIN_CHUNK_BITS = 8
_MAX_PROBES = 200_000
_DEFAULT_TAIL = 16_384  # brute force over this many rows costs ~20-80 µs
# Brute force streams n·W words at ~1 ns each; a probe or a candidate costs ~20× that.
_COST_RATIO = 20


# ---------------------------------------------------------------- conversion helpers


def _words_for(bits: int) -> int:
    return (bits + WORD - 1) // WORD


def hex_to_words(hex_str: str) -> np.ndarray:
    """Convert a hex hash to big-endian uint64 words (right-padded with zero bits).

    Raises ``ValueError`` for empty or non-hex input.
    """
    s = hex_str.strip()
    if not s:
        raise ValueError("empty hash")
    pad = (-len(s)) % 16
    try:
        raw = bytes.fromhex(s + "0" * pad)
    except ValueError as exc:
        raise ValueError("hash is not hexadecimal") from exc
    if len(raw) * 2 != len(s) + pad:  # bytes.fromhex skips whitespace inside the string
        raise ValueError("hash is not hexadecimal")
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def hexes_to_words(hexes: Iterable[str], bits: int) -> np.ndarray:
    """Convert many hex hashes of ``bits`` bits to an ``(n, words)`` uint64 array."""
    nhex = bits // 4
    pad = "0" * ((-nhex) % 16)
    items = list(hexes)
    for h in items:
        if len(h) != nhex:
            raise ValueError(f"expected {nhex} hex characters per hash")
    try:
        raw = bytes.fromhex(pad.join(items) + pad if pad else "".join(items))
    except ValueError as exc:
        raise ValueError("hash is not hexadecimal") from exc
    words = _words_for(bits)
    if len(raw) != len(items) * words * 8:
        raise ValueError("hash is not hexadecimal")
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(items), words)


def words_to_hex(words: np.ndarray, bits: int) -> str:
    """Inverse of :func:`hex_to_words` for one row."""
    return np.asarray(words, dtype=">u8").tobytes().hex()[: bits // 4]


def hamming_hex(a: str, b: str) -> int:
    """Hamming distance between two hex hashes of equal length."""
    if len(a) != len(b):
        raise ValueError("hashes differ in length")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _as_query(query: str | np.ndarray, words: int, bits: int | None = None) -> np.ndarray:
    if isinstance(query, str):
        if bits is not None and len(query.strip()) * 4 != bits:
            raise ValueError(f"expected {bits // 4} hex characters")
        q = hex_to_words(query)
    else:
        q = np.asarray(query, dtype=np.uint64)
    q = q.reshape(-1)
    if q.shape[0] != words:
        raise ValueError(f"query has {q.shape[0]} words, index holds {words}")
    return q


def _distances(hashes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamming distance of every row of ``hashes`` (n, W) to ``q`` (W,), as int32."""
    if hashes.shape[1] == 1:
        return np.bitwise_count(hashes[:, 0] ^ q[0]).astype(np.int32)
    d = np.bitwise_count(hashes[:, 0] ^ q[0]).astype(np.int32)
    for k in range(1, hashes.shape[1]):
        d += np.bitwise_count(hashes[:, k] ^ q[k])
    return d


def _sorted_hits(ids: np.ndarray, dists: np.ndarray) -> list[tuple[int, int]]:
    order = np.lexsort((ids, dists))
    return [(int(i), int(d)) for i, d in zip(ids[order], dists[order], strict=True)]


def brute_force_search(
    hashes: np.ndarray, ids: np.ndarray, query: str | np.ndarray, radius: int
) -> list[tuple[int, int]]:
    """Reference search: every ``(id, distance)`` with distance ≤ ``radius``, sorted."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    q = _as_query(query, hashes.shape[1])
    d = _distances(hashes, q)
    keep = np.flatnonzero(d <= radius)
    return _sorted_hits(np.asarray(ids, dtype=np.int64)[keep], d[keep])


def _check_batch(hashes: np.ndarray, ids: Sequence[int] | np.ndarray, words: int):
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    if h.ndim == 1 and words == 1:
        h = h.reshape(-1, 1)
    if h.ndim != 2 or h.shape[1] != words:
        raise ValueError(f"hashes must have shape (n, {words})")
    i = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if i.shape[0] != h.shape[0]:
        raise ValueError("hashes and ids differ in length")
    return h, i


# ---------------------------------------------------------------- multi-index segment


@lru_cache(maxsize=256)
def _masks(width: int, rho: int) -> np.ndarray:
    """All ``width``-bit values with at most ``rho`` bits set (the probe offsets)."""
    out = [0]
    for k in range(1, rho + 1):
        out.extend(sum(1 << b for b in c) for c in combinations(range(width), k))
    arr = np.array(out, dtype=np.int64)
    arr.setflags(write=False)
    return arr


def _n_masks(width: int, rho: int) -> int:
    return sum(math.comb(width, k) for k in range(max(rho, -1) + 1))


def _extract(hashes: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits ``[start, start+width)`` (bit 0 = MSB of word 0) of every row, as int64."""
    a, o = divmod(start, WORD)
    if o + width <= WORD:
        v = (hashes[:, a] >> np.uint64(WORD - o - width)) & np.uint64((1 << width) - 1)
    else:
        lo_bits = width - (WORD - o)
        hi = hashes[:, a] & np.uint64((1 << (WORD - o)) - 1)
        v = (hi << np.uint64(lo_bits)) | (hashes[:, a + 1] >> np.uint64(WORD - lo_bits))
    return v.astype(np.int64)


def _chunk_plan(n: int, bits: int) -> list[tuple[int, int]]:
    """Split ``bits`` into chunks of about log2(n) bits: [(start, width)], narrow ones first."""
    target = min(_MAX_CHUNK_BITS, max(_MIN_CHUNK_BITS, round(math.log2(max(n, 2)))))
    m = max(1, math.ceil(bits / _MAX_CHUNK_BITS), round(bits / target))
    base, extra = divmod(bits, m)
    widths = [base] * (m - extra) + [base + 1] * extra
    plan, start = [], 0
    for w in widths:
        plan.append((start, w))
        start += w
    return plan


@dataclass(frozen=True, kw_only=True)
class _Probes:
    chunk: np.ndarray  # chunk index of each probe
    mask: np.ndarray  # xor applied to the query's chunk value
    base: np.ndarray  # offset of that chunk's bucket table in the flat table


class _HammingSegment:
    """Immutable multi-index over one batch of rows."""

    def __init__(self, hashes: np.ndarray, ids: np.ndarray, bits: int) -> None:
        self.hashes, self.ids, self.bits = hashes, ids, bits
        n = hashes.shape[0]
        self.n = n
        self.chunks = _chunk_plan(n, bits)
        m = len(self.chunks)
        pos_dtype = np.int32 if n < 2**31 else np.int64
        off_dtype = np.uint32 if m * n < 2**32 else np.int64
        table_sizes = [(1 << w) + 1 for _, w in self.chunks]
        self.table_base = np.concatenate(([0], np.cumsum(table_sizes)[:-1])).astype(np.int64)
        self.offsets = np.empty(sum(table_sizes), dtype=off_dtype)
        self.perm = np.empty(m * n, dtype=pos_dtype)
        for j, (start, width) in enumerate(self.chunks):
            keys = _extract(hashes, start, width)
            order = np.argsort(keys)  # any order within a bucket will do
            self.perm[j * n : (j + 1) * n] = order
            counts = np.bincount(keys, minlength=1 << width)
            t0 = int(self.table_base[j])
            self.offsets[t0] = j * n
            self.offsets[t0 + 1 : t0 + 1 + (1 << width)] = np.cumsum(counts) + j * n
        self._plans: dict[int, _Probes | None] = {}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes + self.ids.nbytes + self.offsets.nbytes + self.perm.nbytes

    def _plan(self, radius: int) -> _Probes | None:
        plan = self._plans.get(radius, False)
        if plan is not False:
            return plan  # type: ignore[return-value]
        m = len(self.chunks)
        q, a = divmod(radius, m)
        # Chunks 0..a get sub-radius q, the rest q-1 (generalised pigeonhole, see module doc);
        # the narrow chunks come first so the larger sub-radius costs fewest probes.
        rhos = [q if j <= a else q - 1 for j in range(m)]
        n_probes = sum(_n_masks(w, r) for (_, w), r in zip(self.chunks, rhos, strict=True))
        est_candidates = sum(
            _n_masks(w, r) * self.n / (1 << w) for (_, w), r in zip(self.chunks, rhos, strict=True)
        )
        words = self.hashes.shape[1]
        result: _Probes | None = None
        cost = (n_probes + est_candidates * words) * _COST_RATIO
        if n_probes <= _MAX_PROBES and cost < self.n * words:
            chunk, mask, base = [], [], []
            for j, ((_, w), r) in enumerate(zip(self.chunks, rhos, strict=True)):
                if r < 0:
                    continue
                mk = _masks(w, r)
                chunk.append(np.full(mk.shape[0], j, dtype=np.int64))
                mask.append(mk)
                base.append(np.full(mk.shape[0], self.table_base[j], dtype=np.int64))
            result = _Probes(
                chunk=np.concatenate(chunk), mask=np.concatenate(mask), base=np.concatenate(base)
            )
        with self._lock:
            self._plans[radius] = result
        return result

    def search(self, q: np.ndarray, q_int: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and distances of rows within ``radius`` of the query."""
        plan = self._plan(radius)
        if plan is None:
            d = _distances(self.hashes, q)
            pos = np.flatnonzero(d <= radius)
            return pos, d[pos]
        keys = np.array(
            [(q_int >> (self.bits - s - w)) & ((1 << w) - 1) for s, w in self.chunks],
            dtype=np.int64,
        )
        slots = plan.base + (keys[plan.chunk] ^ plan.mask)
        starts = self.offsets[slots].astype(np.int64)
        lens = self.offsets[slots + 1].astype(np.int64) - starts
        total = int(lens.sum())
        if total == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
        # Concatenate the ranges [start, start+len) without a Python loop.
        ends = np.cumsum(lens)
        idx = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lens), lens)
        cand = self.perm[idx]
        d = _distances(self.hashes[cand], q)
        keep = d <= radius
        # An entry found through several chunks appears once per chunk: deduplicate only the
        # few survivors (sorting every candidate first costs more than the repeated checks).
        pos, first = np.unique(cand[keep], return_index=True)
        return pos, d[keep][first]


# ---------------------------------------------------------------- exact segment


class _ExactSegment:
    """Immutable sorted array of hashes; binary search on the first word."""

    def __init__(self, hashes: np.ndarray, ids: np.ndarray, bits: int) -> None:
        order = np.lexsort(hashes.T[::-1])
        self.hashes = hashes[order]
        self.ids = ids[order]
        self.first = np.ascontiguousarray(self.hashes[:, 0])
        self.n = hashes.shape[0]

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes + self.ids.nbytes + self.first.nbytes

    def search(self, q: np.ndarray, q_int: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        lo = int(np.searchsorted(self.first, q[0], side="left"))
        hi = int(np.searchsorted(self.first, q[0], side="right"))
        if lo == hi:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
        eq = np.flatnonzero((self.hashes[lo:hi] == q).all(axis=1)) + lo
        return eq, np.zeros(eq.shape[0], dtype=np.int32)


# ---------------------------------------------------------------- segmented container


@dataclass(frozen=True, kw_only=True)
class _State:
    segments: tuple
    tail_hashes: np.ndarray
    tail_ids: np.ndarray


class _SegmentedIndex:
    _segment_type: type = _HammingSegment

    def __init__(self, bits: int, *, tail_limit: int = _DEFAULT_TAIL) -> None:
        if bits <= 0:
            raise ValueError("bits must be positive")
        self.bits = bits
        self.words = _words_for(bits)
        self.tail_limit = max(1, tail_limit)
        self._write_lock = threading.Lock()
        self._state = _State(
            segments=(),
            tail_hashes=np.empty((0, self.words), dtype=np.uint64),
            tail_ids=np.empty(0, dtype=np.int64),
        )

    def __len__(self) -> int:
        st = self._state
        return sum(s.n for s in st.segments) + st.tail_ids.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's numpy arrays (hashes, ids and lookup tables)."""
        st = self._state
        return sum(s.nbytes for s in st.segments) + st.tail_hashes.nbytes + st.tail_ids.nbytes

    @property
    def segment_sizes(self) -> list[int]:
        """Entry count of each immutable segment, oldest first (tail excluded)."""
        return [s.n for s in self._state.segments]

    def add(self, hashes: np.ndarray, ids: Sequence[int] | np.ndarray) -> None:
        """Add rows ``hashes`` (n, words) uint64 with integer ``ids``; searchable on return."""
        h, i = _check_batch(hashes, ids, self.words)
        if h.shape[0] == 0:
            return
        with self._write_lock:
            st = self._state
            th = np.concatenate((st.tail_hashes, h))
            ti = np.concatenate((st.tail_ids, i))
            segments = list(st.segments)
            if th.shape[0] >= self.tail_limit:
                segments.append(self._segment_type(th, ti, self.bits))
                th = th[:0]
                ti = ti[:0]
                # Merge while a newer segment has reached half the size of the one before it:
                # sizes then at least double towards the oldest, so O(log n) segments.
                while len(segments) >= 2 and segments[-2].n <= 2 * segments[-1].n:
                    new, old = segments.pop(), segments.pop()
                    segments.append(
                        self._segment_type(
                            np.concatenate((old.hashes, new.hashes)),
                            np.concatenate((old.ids, new.ids)),
                            self.bits,
                        )
                    )
            self._state = _State(segments=tuple(segments), tail_hashes=th, tail_ids=ti)

    def _collect(self, query: str | np.ndarray, radius: int) -> list[tuple[int, int]]:
        q = _as_query(query, self.words, self.bits)
        q_int = int.from_bytes(q.astype(">u8").tobytes(), "big") >> (self.words * WORD - self.bits)
        st = self._state
        ids, dists = [], []
        for seg in st.segments:
            pos, d = seg.search(q, q_int, radius)
            ids.append(seg.ids[pos])
            dists.append(d)
        if st.tail_ids.shape[0]:
            d = _distances(st.tail_hashes, q)
            keep = np.flatnonzero(d <= radius)
            ids.append(st.tail_ids[keep])
            dists.append(d[keep])
        if not ids:
            return []
        return _sorted_hits(np.concatenate(ids), np.concatenate(dists))


class HammingIndex(_SegmentedIndex):
    """Hamming-radius search over 64·k-bit hashes (pHash: 64, PDQ: 256)."""

    _segment_type = _HammingSegment

    def __init__(self, bits: int, *, tail_limit: int = _DEFAULT_TAIL) -> None:
        if bits % WORD:
            raise ValueError("HammingIndex needs a multiple of 64 bits")
        super().__init__(bits, tail_limit=tail_limit)

    def search(self, query: str | np.ndarray, radius: int) -> list[tuple[int, int]]:
        """Every ``(id, distance)`` with distance ≤ ``radius`` (inclusive), by distance then id.

        Identical to :func:`brute_force_search` over all added rows. ``query`` is a hex string
        or a words array; raises ``ValueError`` for a malformed query or a negative radius.
        """
        if radius < 0:
            raise ValueError("radius must be ≥ 0")
        return self._collect(query, min(radius, self.bits))


class ExactIndex(_SegmentedIndex):
    """Exact lookups of cryptographic hashes (any bit length, e.g. 128/160/256)."""

    _segment_type = _ExactSegment

    def lookup(self, query: str | np.ndarray) -> list[int]:
        """Ids of every entry equal to ``query`` (hex string or words), sorted."""
        return [i for i, _ in self._collect(query, 0)]

    def __contains__(self, query: object) -> bool:
        return isinstance(query, str) and bool(self.lookup(query))


# ---------------------------------------------------------------- all hash types together


@dataclass(frozen=True, kw_only=True, slots=True)
class Match:
    """One known-hash match: the entry ``id``, its ``hash_type`` and Hamming ``distance``."""

    hash_type: str
    id: int
    distance: int


class HashMatcher:
    """One index per hash type: exact for the cryptographic ones, Hamming for the perceptual.

    ``radii`` overrides :data:`DEFAULT_RADIUS` per perceptual type.
    """

    def __init__(self, radii: dict[str, int] | None = None) -> None:
        self.radii = {**DEFAULT_RADIUS, **(radii or {})}
        self._exact = {t: ExactIndex(HASH_BITS[t]) for t in CRYPTO_NAMES}
        self._hamming = {t: HammingIndex(HASH_BITS[t]) for t in PERCEPTUAL_NAMES}

    def add(self, hash_type: str, hexes: Sequence[str], ids: Sequence[int] | np.ndarray) -> None:
        """Add hex hashes of one type with their ids; raises ``ValueError`` on bad input."""
        index: _SegmentedIndex
        if hash_type in self._exact:
            index = self._exact[hash_type]
        elif hash_type in self._hamming:
            index = self._hamming[hash_type]
        else:
            raise ValueError(f"unknown hash type {hash_type!r}")
        index.add(hexes_to_words([h.lower() for h in hexes], HASH_BITS[hash_type]), ids)

    def __len__(self) -> int:
        return sum(len(i) for i in (*self._exact.values(), *self._hamming.values()))

    def match(self, hashes: dict[str, object]) -> list[Match]:
        """Matches for a ``hash_media``-style dict (missing/None types are skipped)."""
        out: list[Match] = []
        for t, index in self._exact.items():
            value = hashes.get(t)
            if isinstance(value, str):
                out.extend(Match(hash_type=t, id=i, distance=0) for i in index.lookup(value))
        for t, hindex in self._hamming.items():
            value = hashes.get(t)
            if isinstance(value, str):
                out.extend(
                    Match(hash_type=t, id=i, distance=d)
                    for i, d in hindex.search(value, self.radii[t])
                )
        return out
