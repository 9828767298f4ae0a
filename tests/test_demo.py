"""The demo runs the whole chain offline and its figures are right."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path: Path) -> None:
    from engine.demo import run_demo

    out = run_demo(urls=80, keep=str(tmp_path / "demo.db"))
    assert (tmp_path / "demo.db").is_file()  # --keep PATH: the database file itself
    assert out["accepted"] == 80 and out["rejected"] == 3 and out["duplicates"] == 8
    assert out["planted"] > 0 and out["found"] == out["planted"]
    assert out["false_matches"] == 0
    # Every notice went out once: the sink saw as many messages as notices were sent.
    assert out["notices"] > 0 and out["received"] == out["notices"]
    assert out["recheck"]["removed"] > 0 and out["recheck"]["errors"] == 0
    assert "noticed" not in out["by_state"] or out["recheck"]["checked"] > 0
    # The ICCAM exchange: a partner's report came in, ours went out, with their actions.
    iccam = out["iccam"]
    assert iccam["imported"] == 1 and iccam["reports_created"] > 0
    assert iccam["actions"] == {"ReportedToISP": 3, "ReportedToLEA": 3, "Removed": 3}
    assert iccam["errors"] == []
