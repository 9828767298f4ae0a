"""Statistics in INHOPE's terms: receipt → ICCAM report, → notice, → removal, per country."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine import clock
from engine.stats import Period, compute
from engine.store import open_store
from engine.testing import resolution
from tests.iccam_lab import our_case, send_notice, set_case

T0 = "2026-03-02T09:00:00.000000Z"


def at(hours: float) -> str:
    return clock.fmt(clock.parse(T0) + timedelta(hours=hours))


def test_inhope_figures_per_hosting_country(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ntd.db"))
    try:
        de = our_case(store, "http://a.example.test/p", now=T0,
                      resolution=resolution(host="a.example.test", country="DE"))
        store.iccam_queue_report(de, at(0), {})
        [step] = store.iccam_claim(owner="test", limit=5, now=at(2), lease_seconds=60)
        assert store.iccam_report_created(step["id"], owner="test", case_id=de, report_id=9,
                                          now=at(2))
        send_notice(store, de, kind="hosting", now=at(5))
        set_case(store, de, state="closed", now=at(51), monitoring={"removed_at": at(50)})
        nl = our_case(store, "http://b.example.test/p", now=T0,
                      resolution=resolution(host="b.example.test", country="NL"))
        send_notice(store, nl, kind="hosting", now=at(1))
        set_case(store, nl, state="closed", now=at(101), monitoring={"removed_at": at(100)})
        our_case(store, "http://c.example.test/p", now=T0,
                 resolution=resolution(host="c.example.test", country="NL"))  # still online
        inhope = compute(store, Period(), min_count=0).summary["inhope"]
    finally:
        store.close()
    germany = inhope["by_country"]["DE"]
    assert germany["cases"] == 1 and germany["reported_to_iccam"] == 1
    assert germany["hours_to_iccam_report"]["p50"] == 2.0
    assert germany["hours_to_notice"]["p50"] == 5.0
    assert germany["hours_to_removal"]["p50"] == 50.0
    assert germany["removed_within_3d"] == 1.0
    home = inhope["by_country"]["NL"]
    assert home["cases"] == 2 and home["reported_to_iccam"] == 0
    assert home["hours_to_iccam_report"]["n"] == 0
    assert home["hours_to_removal"]["p50"] == 100.0
    assert home["removed_within_3d"] == 0.0  # one removed after 4 days, one not at all
    assert inhope["all"]["cases"] == 3


def test_small_countries_fold_into_other(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ntd.db"))
    try:
        for n, country in enumerate(["DE", "DE", "FR"]):
            our_case(store, f"http://h{n}.example.test/p", now=T0,
                     resolution=resolution(host=f"h{n}.example.test", country=country))
        inhope = compute(store, Period(), min_count=2).summary["inhope"]
    finally:
        store.close()
    assert set(inhope["by_country"]) == {"DE", "other"}
    assert inhope["by_country"]["DE"]["hours_to_removal"]["p50"] is None  # nothing measured
