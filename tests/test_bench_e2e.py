"""``ntd bench e2e`` keeps its JSON contract and checks its own correctness (a small run)."""

from __future__ import annotations

from engine.bench.e2e import run_e2e

CONTRACT = {"urls", "seconds", "urls_per_s", "stages", "peak_rss_mb", "max_loop_block_ms",
            "planted_matches", "found_matches", "false_matches", "notices_expected",
            "notices_received"}


async def test_small_e2e_run_finds_every_planted_match_and_sends_each_notice_once() -> None:
    out = await run_e2e(urls=300, latency_ms=5)
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
