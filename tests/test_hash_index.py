"""Known-hash indexes: results identical to brute force, incremental adds, exact lookups."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.media import hash_index
from engine.media.hash_index import (
    DEFAULT_RADIUS,
    ExactIndex,
    HammingIndex,
    brute_force_search,
    hamming_hex,
    hex_to_words,
    hexes_to_words,
    words_to_hex,
)


def _flip(row: np.ndarray, bits: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Copy of ``row`` with ``k`` distinct random bits flipped."""
    out = row.copy()
    for b in rng.choice(bits, size=k, replace=False):
        out[b // 64] ^= np.uint64(1) << np.uint64(63 - b % 64)
    return out


def _dataset(bits: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = bits // 64
    hashes = rng.integers(0, 2**64, size=(n, w), dtype=np.uint64)
    # Planted clusters and exact duplicates so there are many hits at small radii.
    for _i in range(0, n // 10):
        src = hashes[rng.integers(n)]
        hashes[rng.integers(n)] = _flip(src, bits, int(rng.integers(0, bits // 8)), rng)
    hashes[-3:] = hashes[0]
    return hashes, np.arange(n, dtype=np.int64) * 7 + 3


def _queries(hashes: np.ndarray, bits: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    radius = DEFAULT_RADIUS["phash" if bits == 64 else "pdq"]
    out = []
    for i in range(count):
        if i % 4 == 3:
            out.append(rng.integers(0, 2**64, size=bits // 64, dtype=np.uint64))
        else:
            src = hashes[rng.integers(len(hashes))]
            out.append(_flip(src, bits, int(rng.integers(0, radius + 3)), rng))
    return out


def test_hex_word_round_trip() -> None:
    h = "0123456789abcdef" * 4
    w = hex_to_words(h)
    assert w.dtype == np.uint64 and w.shape == (4,)
    assert words_to_hex(w, 256) == h
    assert hex_to_words("ff")[0] == np.uint64(0xFF << 56)
    assert hexes_to_words([h, h.upper()], 256).shape == (2, 4)
    sha1 = "a" * 40
    assert words_to_hex(hexes_to_words([sha1], 160)[0], 160) == sha1
    with pytest.raises(ValueError):
        hex_to_words("xyz")
    with pytest.raises(ValueError):
        hex_to_words("")
    with pytest.raises(ValueError):
        hexes_to_words(["ab"], 64)


def test_hamming_hex() -> None:
    assert hamming_hex("00", "ff") == 8
    assert hamming_hex("f0f0", "f0f1") == 1
    with pytest.raises(ValueError):
        hamming_hex("00", "000")


@pytest.mark.parametrize("bits", [64, 256])
def test_index_equals_brute_force(bits: int) -> None:
    hashes, ids = _dataset(bits, 6000, seed=bits)
    index = HammingIndex(bits, tail_limit=1000)
    # Uneven batches exercise tail, segment building and merging.
    for lo, hi in [(0, 10), (10, 900), (900, 2500), (2500, 2501), (2501, 6000)]:
        index.add(hashes[lo:hi], ids[lo:hi])
    assert len(index) == 6000
    assert len(index.segment_sizes) >= 1
    default = DEFAULT_RADIUS["phash" if bits == 64 else "pdq"]
    # The multi-index path (not the brute-force fallback) answers the default radius.
    assert index._state.segments[0]._plan(default) is not None
    hits = 0
    for q in _queries(hashes, bits, 60, seed=1):
        for radius in (0, default // 2, default, default + 5):
            got = index.search(q, radius)
            assert got == brute_force_search(hashes, ids, q, radius)
            hits += bool(got)
    assert hits > 60  # planted neighbours are found
    hexq = words_to_hex(hashes[0], bits)
    top = index.search(hexq, 0)
    assert {i for i, d in top} >= {int(ids[0]), int(ids[-1])} and {d for _, d in top} == {0}


def test_large_radius_falls_back_and_stays_exact() -> None:
    hashes, ids = _dataset(64, 3000, seed=5)
    index = HammingIndex(64, tail_limit=500)
    index.add(hashes, ids)
    q = hashes[17]
    for radius in (20, 32, 64, 1000):
        assert index.search(q, radius) == brute_force_search(hashes, ids, q, radius)
    assert len(index.search(q, 64)) == 3000


def test_skewed_buckets() -> None:
    # Real pHash lists cluster (near-blank images); heavy buckets must not change results.
    rng = np.random.default_rng(3)
    base = np.full((4000, 1), 0xFFFF_0000_FFFF_0000, dtype=np.uint64)
    hashes = np.array([_flip(r, 64, int(rng.integers(0, 12)), rng) for r in base])
    ids = np.arange(4000)
    index = HammingIndex(64, tail_limit=256)
    index.add(hashes, ids)
    for q in hashes[:20]:
        assert index.search(q, 8) == brute_force_search(hashes, ids, q, 8)


def test_incremental_add_is_searchable_immediately() -> None:
    rng = np.random.default_rng(9)
    index = HammingIndex(64, tail_limit=64)
    all_h = []
    for i in range(300):
        h = rng.integers(0, 2**64, size=(1, 1), dtype=np.uint64)
        index.add(h, [i])
        all_h.append(h[0])
        assert index.search(h[0], 0)[0] == (i, 0)
    hashes = np.array(all_h)
    assert len(index) == 300
    # Merging keeps the number of segments logarithmic.
    assert len(index.segment_sizes) <= 4
    for q in hashes[::37]:
        assert index.search(q, 12) == brute_force_search(hashes, np.arange(300), q, 12)


def test_add_validates_shapes() -> None:
    index = HammingIndex(256)
    with pytest.raises(ValueError):
        index.add(np.zeros((3, 1), dtype=np.uint64), [1, 2, 3])
    with pytest.raises(ValueError):
        index.add(np.zeros((3, 4), dtype=np.uint64), [1, 2])
    with pytest.raises(ValueError):
        index.search("00" * 8, 3)  # pHash-sized query against a PDQ index
    with pytest.raises(ValueError):
        index.search("00" * 32, -1)
    with pytest.raises(ValueError):
        HammingIndex(100)
    index.add(np.zeros((0, 4), dtype=np.uint64), [])
    assert len(index) == 0 and index.search("00" * 32, 31) == []


def test_memory_reported() -> None:
    index = HammingIndex(64, tail_limit=100)
    index.add(np.arange(1000, dtype=np.uint64).reshape(-1, 1), np.arange(1000))
    assert index.nbytes >= 1000 * 16


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=300),
    batches=st.lists(st.integers(1, 80), min_size=1, max_size=6),
    query=st.integers(0, 2**64 - 1),
    radius=st.integers(0, 20),
    tail=st.integers(1, 64),
)
def test_hypothesis_index_equals_brute_force(
    data: list[int], batches: list[int], query: int, radius: int, tail: int
) -> None:
    hashes = np.array(data, dtype=np.uint64).reshape(-1, 1)
    ids = np.arange(len(data)) % 50  # repeated ids are allowed
    index = HammingIndex(64, tail_limit=tail)
    pos = 0
    for b in batches * 10:
        index.add(hashes[pos : pos + b], ids[pos : pos + b])
        pos += b
    index.add(hashes[pos:], ids[pos:])
    queries = [f"{query:016x}"] + [f"{int(x) ^ (query & 0xFF):016x}" for x in data[:3]]
    expected = [brute_force_search(hashes, ids, q, radius) for q in queries]
    assert [index.search(q, radius) for q in queries] == expected
    # Same again with the cost model forced onto the multi-index path for tiny segments.
    saved = hash_index._COST_RATIO
    hash_index._COST_RATIO = 0
    try:
        forced = HammingIndex(64, tail_limit=tail)
        forced.add(hashes, ids)
        assert [forced.search(q, radius) for q in queries] == expected
    finally:
        hash_index._COST_RATIO = saved


def test_exact_index() -> None:
    rng = np.random.default_rng(1)
    md5s = [rng.bytes(16).hex() for _ in range(5000)]
    index = ExactIndex(128, tail_limit=1000)
    index.add(hexes_to_words(md5s[:4000], 128), np.arange(4000))
    index.add(hexes_to_words(md5s[4000:], 128), np.arange(4000, 5000))
    index.add(hexes_to_words([md5s[10]], 128), [99_999])  # same hash on a second list
    assert index.lookup(md5s[4321]) == [4321]
    assert index.lookup(md5s[10]) == [10, 99_999]
    assert md5s[0] in index and rng.bytes(16).hex() not in index
    assert index.lookup(md5s[4321].upper()) == [4321]
    # Entries that share the first word differ only later: no false positives.
    a = "00" * 8 + "11" * 8
    b = "00" * 8 + "22" * 8
    index.add(hexes_to_words([a], 128), [-1])
    assert index.lookup(b) == []
    with pytest.raises(ValueError):
        index.lookup("abc")


def test_exact_index_sha1_padding() -> None:
    sha1s = [f"{i:040x}" for i in range(50)]
    index = ExactIndex(160, tail_limit=16)
    index.add(hexes_to_words(sha1s, 160), np.arange(50))
    assert len(index) == 50
    assert all(index.lookup(h) == [i] for i, h in enumerate(sha1s))
    assert index.lookup("f" * 40) == []


def test_hash_matcher_all_types() -> None:
    from engine.media.hash_index import HashMatcher, Match

    m = HashMatcher(radii={"phash": 4})
    m.add("md5", ["A" * 32, "b" * 32], [1, 2])
    m.add("phash", ["00000000000000ff", "ffffffffffffffff"], [3, 4])
    m.add("pdq", ["0" * 64], [5])
    assert len(m) == 5
    got = m.match(
        {"md5": "a" * 32, "phash": "000000000000000f", "pdq": "0" * 63 + "7", "sha1": None}
    )
    assert got == [
        Match(hash_type="md5", id=1, distance=0),
        Match(hash_type="phash", id=3, distance=4),
        Match(hash_type="pdq", id=5, distance=3),
    ]
    with pytest.raises(ValueError):
        m.add("crc32", ["00"], [1])


def test_bench_match_smoke() -> None:
    from engine.bench.matching import bench_match

    r = bench_match(3000, queries=40, check=40)
    for kind in ("phash", "pdq"):
        assert r[kind]["brute_force_equal"] and r[kind]["brute_force_checked"] == 40
        assert r[kind]["queries_with_hits"] >= 20  # the planted near-duplicates
        assert r[kind]["index_bytes"] > 0
