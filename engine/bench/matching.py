"""Benchmarks for hashing and matching, as functions returning JSON-able dicts.

All inputs are synthetic (random hash values or ``engine.lab.images`` scenes). Nothing here
touches the network or the disk.

* :func:`bench_match` — index build time, query latency, memory, and an equality check against
  brute force (an ``AssertionError`` if the index ever differs).
* :func:`bench_hash` — images per second for hashing 1024×768 JPEGs on one core.
* :func:`robustness` — recall of pHash/PDQ after common edits, and false matches among
  unrelated images, at the default radii.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from engine.media.hash_index import (
    DEFAULT_RADIUS,
    HammingIndex,
    brute_force_search,
    hamming_hex,
    hexes_to_words,
)
from engine.media.signals import PERCEPTUAL_NAMES, PERCEPTUAL_TYPES

BITS = {t.name: t.bits for t in PERCEPTUAL_TYPES}


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


def _flip_bits(row: np.ndarray, bits: int, k: int, rng: np.random.Generator) -> np.ndarray:
    out = row.copy()
    for b in rng.choice(bits, size=k, replace=False):
        out[b // 64] ^= np.uint64(1) << np.uint64(63 - int(b) % 64)
    return out


def _make_queries(
    hashes: np.ndarray, bits: int, radius: int, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Half near-duplicates within ``radius``, a quarter just outside it, a quarter random."""
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 3:
            out.append(rng.integers(0, 2**64, size=bits // 64, dtype=np.uint64))
            continue
        src = hashes[int(rng.integers(len(hashes)))]
        k = int(rng.integers(0, radius + 1)) if kind < 2 else radius + int(rng.integers(1, 6))
        out.append(_flip_bits(src, bits, min(k, bits), rng))
    return out


def _bench_one(kind: str, entries: int, queries: int, seed: int, check: int) -> dict[str, Any]:
    bits = BITS[kind]
    radius = DEFAULT_RADIUS[kind]
    rng = np.random.default_rng([seed, bits])
    hashes = rng.integers(0, 2**64, size=(entries, bits // 64), dtype=np.uint64)
    # Planted near-duplicate clusters inside the list, so some queries hit several entries.
    for _ in range(min(1000, entries // 10)):
        src = hashes[int(rng.integers(entries))]
        hashes[int(rng.integers(entries))] = _flip_bits(
            src, bits, int(rng.integers(0, radius)), rng
        )
    ids = np.arange(entries, dtype=np.int64)
    qs = _make_queries(hashes, bits, radius, queries, rng)

    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    index = HammingIndex(bits)
    index.add(hashes, ids)
    build_s = time.perf_counter() - t0
    rss1 = _rss_bytes()

    t0 = time.perf_counter()
    index.search(qs[0], radius)  # first query builds the probe plan (mask tables)
    first_ms = (time.perf_counter() - t0) * 1e3

    lat, cpu_lat, hits, matched = [], [], 0, 0
    t_all = time.perf_counter()
    for q in qs:
        t0, c0 = time.perf_counter(), time.thread_time()
        res = index.search(q, radius)
        lat.append((time.perf_counter() - t0) * 1e3)
        cpu_lat.append((time.thread_time() - c0) * 1e3)
        hits += len(res)
        matched += bool(res)
    total_s = time.perf_counter() - t_all

    n_check = min(check, len(qs))
    brute_ms = []
    sample = list(range(0, len(qs), max(1, len(qs) // n_check)))[:n_check]
    for i in sample:
        t0 = time.perf_counter()
        expected = brute_force_search(hashes, ids, qs[i], radius)
        brute_ms.append((time.perf_counter() - t0) * 1e3)
        got = index.search(qs[i], radius)
        assert got == expected, f"{kind}: index differs from brute force on query {i}"

    return {
        "bits": bits,
        "radius": radius,
        "entries": entries,
        "queries": len(qs),
        "segments": index.segment_sizes,
        "build_s": round(build_s, 3),
        "first_query_ms": round(first_ms, 3),
        "p50_ms": round(_pct(lat, 50), 4),
        "p99_ms": round(_pct(lat, 99), 4),
        "mean_ms": round(statistics.fmean(lat), 4),
        "cpu_p50_ms": round(_pct(cpu_lat, 50), 4),
        "cpu_p99_ms": round(_pct(cpu_lat, 99), 4),
        "queries_per_s": round(len(qs) / total_s, 1),
        "queries_with_hits": matched,
        "hits": hits,
        "index_bytes": index.nbytes,
        "rss_delta_bytes": rss1 - rss0,
        "peak_rss_bytes": _peak_rss_bytes(),
        "brute_force_checked": len(sample),
        "brute_force_equal": True,
        "brute_force_p50_ms": round(_pct(brute_ms, 50), 3),
    }


def bench_match(
    entries: int,
    queries: int = 1000,
    seed: int = 0,
    *,
    kinds: Iterable[str] = PERCEPTUAL_NAMES,
    check: int = 100,
) -> dict[str, Any]:
    """Benchmark ``HammingIndex`` on ``entries`` random hashes of each perceptual hash type.

    Queries mix near-duplicates of list entries (within the default radius), near misses just
    outside it and random hashes. Reports build time, first/p50/p99/mean latency on this one
    thread, queries/s, index array bytes and RSS delta, and checks ``check`` queries against
    brute force (raises ``AssertionError`` on any difference). Latencies are wall-clock
    (``p50_ms``…) and CPU time of the querying thread (``cpu_p50_ms``…).
    """
    return {kind: _bench_one(kind, entries, queries, seed, check) for kind in kinds}


# ---------------------------------------------------------------- hashing throughput


def bench_hash(
    n: int = 200, size: tuple[int, int] = (1024, 768), quality: int = 85
) -> dict[str, Any]:
    """Images/s on one core for hashing ``n`` synthetic JPEGs of ``size``.

    Each figure is ``{"per_s_wall", "per_cpu_s"}``: images per wall-clock second and per
    CPU-second of this process (the per-core rate, robust to other load on the machine).
    Measures crypto hashes alone, crypto + pHash (reduced JPEG decode), crypto + pHash + PDQ,
    and PDQ on a full-resolution decode for comparison.
    """
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import jpeg_bytes, make_image

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.media.hashing import crypto_hashes, decode_luma, hash_media, pdq_hex

    datas = [jpeg_bytes(make_image(10_000 + i, size), quality) for i in range(n)]
    hash_media(datas[0])  # warm-up: imports scipy.fftpack, builds Pillow plugin tables

    def rate(fn) -> dict[str, float]:
        # CPU time of this process is the per-core figure; wall time suffers from other load.
        w0, c0 = time.perf_counter(), time.process_time()
        for d in datas:
            fn(d)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        return {"per_s_wall": round(n / wall, 1), "per_cpu_s": round(n / max(cpu, 1e-9), 1)}

    def full_pdq(d: bytes) -> None:
        luma, *_ = decode_luma(d, min_side=None)
        pdq_hex(luma)

    return {
        "images": n,
        "size": list(size),
        "jpeg_quality": quality,
        "mean_bytes": round(statistics.fmean(len(d) for d in datas)),
        "crypto_per_s": rate(crypto_hashes),
        "phash_crypto_per_s": rate(lambda d: hash_media(d, with_pdq=False)),
        "phash_pdq_crypto_per_s": rate(hash_media),
        "pdq_full_decode_per_s": rate(full_pdq),
        "cpu_count": os.cpu_count(),
    }


# ---------------------------------------------------------------- robustness


def _hash_variant(job: tuple[int, str]) -> dict[str, Any]:
    """Worker: hash one transformed (or original) demo image. Module level for pickling."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import DEMO_SIZE, TRANSFORMS, demo_image_bytes, make_image

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.media.hashing import decode_luma, hash_media, pdq_hex, phash_hex

    seed, name = job
    if name == "original":
        data = demo_image_bytes(seed)
        h = hash_media(data)
        full, *_ = decode_luma(data, min_side=None)
        pdq_full = pdq_hex(full)
        h["phash_full"] = phash_hex(full)
        h["pdq_full"] = pdq_full[0] if pdq_full else None
        return h
    return hash_media(TRANSFORMS[name](make_image(seed, DEMO_SIZE)))


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": int(min(values)),
        "p50": _pct(values, 50),
        "p90": _pct(values, 90),
        "max": int(max(values)),
    }


def robustness(n: int = 200, unrelated: int = 10_000, workers: int | None = None) -> dict:
    """Recall after each edit in ``TRANSFORMS`` and false matches among unrelated images.

    Originals are demo images 0..n-1 (JPEG q90, 512×512); an edited copy is *recalled* when its
    hash, or its mirror image's hash (both are looked up by the matcher), is within the default
    radius (pHash 8, PDQ 31) of its original. ``unrelated`` other
    scenes are checked against the originals and against each other. Also reports how far the
    reduced-decode hashes drift from full-resolution decodes. Uses a process pool.
    """
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import TRANSFORMS

    workers = workers or os.cpu_count() or 1
    ctx = multiprocessing.get_context("spawn")
    t_start = time.perf_counter()
    names = ["original", *TRANSFORMS]
    jobs = [(seed, name) for name in names for seed in range(n)]
    unrelated_jobs = [(1_000_000 + i, "original") for i in range(unrelated)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        results = list(pool.map(_hash_variant, jobs, chunksize=16))
        others = list(pool.map(_hash_variant, unrelated_jobs, chunksize=64))
    by = {name: results[i * n : (i + 1) * n] for i, name in enumerate(names)}
    orig = by["original"]
    kinds = ["phash"] + (["pdq"] if orig and orig[0]["pdq"] else [])

    out: dict[str, Any] = {"n": n, "unrelated": unrelated, "radius": dict(DEFAULT_RADIUS)}
    out["pdq_available"] = "pdq" in kinds
    out["reduced_vs_full_decode"] = {
        kind: _stats([hamming_hex(o[kind], o[f"{kind}_full"]) for o in orig]) for kind in kinds
    }
    out["pdq_quality_original"] = (
        _stats([o["pdq_quality"] for o in orig]) if out["pdq_available"] else {}
    )
    recall: dict[str, Any] = {}
    for name in TRANSFORMS:
        row: dict[str, Any] = {}
        for kind in kinds:
            direct = [hamming_hex(a[kind], b[kind]) for a, b in zip(orig, by[name], strict=True)]
            # The matcher also looks up the hash of each fetched image's mirror image.
            d = [min(x, hamming_hex(a[kind], b[f"{kind}_mirror"])) if b.get(f"{kind}_mirror")
                 else x for x, a, b in zip(direct, orig, by[name], strict=True)]
            row[kind] = {
                "recall": round(sum(x <= DEFAULT_RADIUS[kind] for x in d) / n, 4),
                "recall_without_mirror_lookup": round(
                    sum(x <= DEFAULT_RADIUS[kind] for x in direct) / n, 4),
                "distance": _stats(d),
            }
        recall[name] = row
    out["recall"] = recall

    false: dict[str, Any] = {}
    for kind in kinds:
        bits, radius = BITS[kind], DEFAULT_RADIUS[kind]
        ref = HammingIndex(bits)
        ref.add(hexes_to_words([o[kind] for o in orig], bits), np.arange(n))
        o_words = hexes_to_words([o[kind] for o in others], bits)
        # As the matcher looks them up: each image's hash and (PDQ) its mirror image's hash.
        vs_list = [ref.search(q, radius) for q in o_words]
        if others and others[0].get(f"{kind}_mirror"):
            mirror_words = hexes_to_words([o[f"{kind}_mirror"] for o in others], bits)
            vs_list = [hit or ref.search(m, radius)
                       for hit, m in zip(vs_list, mirror_words, strict=True)]
        pool_index = HammingIndex(bits)
        pool_index.add(o_words, np.arange(len(others)))
        within = [
            sum(1 for j, _ in pool_index.search(q, radius) if j > i) for i, q in enumerate(o_words)
        ]
        # Exact nearest-neighbour distance for a sample (brute force, O(sample·n)).
        nearest = []
        for i in range(min(2000, len(o_words))):
            d = sum(
                np.bitwise_count(o_words[:, k] ^ o_words[i, k]).astype(np.int32)
                for k in range(o_words.shape[1])
            )
            d[i] = bits
            nearest.append(int(d.min()))
        false[kind] = {
            "images_matching_list": sum(bool(r) for r in vs_list),
            "pairs_within_radius": int(sum(within)),
            "pairs_checked": len(others) * (len(others) - 1) // 2,
            "nearest_neighbour_distance": _stats(nearest),
            "nearest_sampled": len(nearest),
        }
    out["false_matches"] = false
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    return out
