"""``ntd bench e2e`` keeps its JSON contract and checks its own correctness (a small run)."""

from __future__ import annotations

from engine.bench.e2e import run_e2e

CONTRACT = {"urls", "seconds", "urls_per_s", "stages", "peak_rss_mb", "max_loop_block_ms",
            "planted_matches", "found_matches", "false_matches", "notices_expected",
            "notices_received"}


async def test_small_e2e_run_finds_every_planted_match_and_sends_each_notice_once() -> None:
    out = await run_e2e(urls=300, latency_ms=5, distinct_share=None)
    assert CONTRACT <= set(out)
    assert out["urls"] == 300 and out["urls_per_s"] > 0
    assert out["planted_matches"] > 0 and out["found_matches"] == out["planted_matches"]
    assert out["false_matches"] == 0
    assert out["notices_expected"] > 0
    assert out["notices_received"] == out["notices_expected"] and out["notices_duplicated"] == 0
    assert {"fetch", "match", "resolve", "route", "notify"} <= set(out["stages"])
    for stage in out["stages"].values():
        assert 0 <= stage["p50_ms"] <= stage["p99_ms"]
    (loop,) = out["loop_blocks"]  # one engine: its own loop's figures
    assert loop["max_loop_block_ms"] == out["max_loop_block_ms"] >= 0


def test_a_hostile_share_leaves_every_other_url_of_the_world_as_it_was() -> None:
    from engine.lab.world import HOSTILE_KINDS, build_world

    clean = build_world(urls=400, hosters=30, plan_only=True).urls
    mixed = build_world(urls=400, hosters=30, plan_only=True, hostile_share=0.2).urls
    assert len(clean) == len(mixed) == 400
    hostile = [m for m in mixed if m.kind.startswith("hostile_")]
    assert 40 < len(hostile) < 120 and {m.kind for m in hostile} == set(HOSTILE_KINDS)
    assert not any(m.planted for m in hostile)
    assert all(c == m for c, m in zip(clean, mixed, strict=True)
               if not m.kind.startswith("hostile_"))


async def test_hostile_pages_and_images_cost_the_clean_urls_nothing() -> None:
    out = await run_e2e(urls=200, latency_ms=5, hostile_share=0.1, distinct_share=None)
    assert out["found_matches"] == out["planted_matches"] > 0 and out["false_matches"] == 0
    hostile = out["hostile"]
    assert sum(hostile["urls"].values()) > 5
    assert hostile["item_errors"].get("bomb")  # the huge-dimension PNGs, refused from headers
    assert "failed" not in hostile["states"] and out["peak_rss_total_mb"] > 0
    assert out["notices_received"] == out["notices_expected"]


async def test_a_realistic_world_serves_distinct_files_and_reports_the_hashing_limit() -> None:
    out = await run_e2e(urls=160, latency_ms=5, distinct_share=0.9)
    # Listed images served as files of their own are found by their perceptual hashes.
    assert out["found_matches"] == out["planted_matches"] > 0 and out["false_matches"] == 0
    assert out["distinct_share"] == 0.9 and out["images_hashed"] > 100
    assert out["hash_limit_images_per_s"] > 0 and out["hash_ms_per_image"] > 0
    assert out["images_per_s"] > 0
    assert out["share_of_hash_limit"] == round(out["images_per_s"]
                                               / out["hash_limit_images_per_s"], 2)


def test_distinct_copies_keep_their_pixels_and_change_their_bytes() -> None:
    import hashlib
    import io

    from PIL import Image

    from engine.lab.distinct import distinct_copy
    from engine.lab.images import realistic_image

    kinds = {}
    for seed in range(40):
        data, ctype = realistic_image(seed)
        kinds[ctype] = data
        if len(kinds) == 3:
            break
    assert set(kinds) == {"image/jpeg", "image/png", "image/webp"}
    for data in kinds.values():
        a, b = distinct_copy(data, b"url 1"), distinct_copy(data, b"url 2")
        assert len({hashlib.sha256(x).digest() for x in (data, a, b)}) == 3
        pixels = {Image.open(io.BytesIO(x)).convert("RGB").tobytes() for x in (data, a, b)}
        assert len(pixels) == 1
        longest = max(Image.open(io.BytesIO(data)).size)
        assert 640 <= longest <= 1600
