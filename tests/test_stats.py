"""``ntd stats``: aggregates, both removal clocks, small-count suppression, CSV, charts, privacy."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine import stats
from engine.clock import Clock, fmt
from engine.errors import InputError
from engine.intake import submit_files
from engine.store import Store, open_store
from tests.conftest import run_ntd

MARKER = "zq81mk"  # appears in every URL, domain and note: must never reach any output
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
T_DEC = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
# Hours from first report to removal of the 15 removed cases (index 0..14 of batch A).
HOURS = [2, 5, 10, 20, 23, 30, 40, 50, 60, 70, 100, 150, 160, 200, 400]
EVENT_ONLY = {0, 5, 14}  # removals known from the trail only (no monitoring record yet)
NOVEMBER = stats.Period(start=datetime(2026, 11, 1).date(), end=datetime(2026, 11, 30).date())


def _submit(store: Store, tmp: Path, name: str, urls: list[str], channel: str,
            at: datetime) -> list[str]:
    src = tmp / f"{name}.txt"
    src.write_text("\n".join(urls) + "\n")
    result = submit_files(store, [str(src)], channel=channel, clock=Clock(fixed=at),
                          keep_case_ids=True)
    return list(result.case_ids)


def _event(store: Store, case_id: str, at: datetime, action: str, stage: str = "test",
           **detail: Any) -> None:
    store.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO events(case_id, at, stage, actor, action, detail) VALUES (?,?,?,?,?,?)",
        (case_id, fmt(at), stage, "test", action, json.dumps(detail)))


def _data(store: Store, case_id: str, key: str, value: Any) -> None:
    store.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO case_data(case_id, key, value) VALUES (?,?,?)"
        " ON CONFLICT(case_id, key) DO UPDATE SET value = excluded.value",
        (case_id, key, json.dumps(value)))


def _state(store: Store, case_id: str, state: str) -> None:
    store.conn.execute("UPDATE cases SET state = ? WHERE id = ?",  # type: ignore[attr-defined]
                       (state, case_id))


def _notice(store: Store, notice_id: str, *, kind: str, state: str, sent_at: datetime | None,
            case_ids: list[str]) -> None:
    at = fmt(T0)
    store.conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO notices(id, recipient, channel, recipient_kind, country, language, state,"
        " attempts, idempotency_key, url_count, created_at, updated_at, sent_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (notice_id, f"abuse@{MARKER}-host.example", "email", kind, "NL", "en", state, 1,
         f"ntd-{notice_id.lower()}", len(case_ids), at, at, fmt(sent_at) if sent_at else None))
    for i, case_id in enumerate(case_ids):
        store.conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO outbox(id, case_id, created_at, payload, notice_id) VALUES (?,?,?,?,?)",
            (f"A{notice_id}{i}", case_id, at,
             json.dumps({"urls": [f"https://{MARKER}.example/"]}), notice_id))


def _network(i: int) -> tuple[str, int, str]:
    """(country, asn, org) of case i of batch A: NL 0–11, DE 12–17, FR 18–19."""
    if i < 9:
        return "nl", 64500, "Example Hosting B.V."
    if i < 12:
        return "NL", 64501, "Tiny Host NL"
    if i < 18:
        return "DE", 64510, "Beispiel Hosting GmbH"
    return "FR", 64520, "Hébergeur Exemple SAS"


def build_store(path: Path, tmp: Path) -> Store:
    """A store with a known history (see the expected figures in the tests)."""
    store = open_store(str(path))
    a = _submit(store, tmp, "a", [f"https://{MARKER}-{i}.example/p/{MARKER}?q={i}"
                                  for i in range(20)], "webform", T0)
    dup_urls = [f"https://{MARKER}-{i}.example/p/{MARKER}?q={i}" for i in range(3)]
    b = _submit(store, tmp, "b", [f"https://{MARKER}-b{i}.example/x" for i in range(3)]
                + dup_urls, "partner", T1)
    _submit(store, tmp, "c", [f"https://{MARKER}-c{i}.example/x" for i in range(2)],
            "analyst", T1)
    dec = _submit(store, tmp, "d", [f"https://{MARKER}-d{i}.example/x" for i in range(5)],
                  "webform", T_DEC)
    for i, case_id in enumerate(a):
        country, asn, org = _network(i)
        if i < 14:
            category = "baseline" if i < 12 else "sexualised"
            _event(store, case_id, T0 + timedelta(minutes=5), "matched", "match",
                   list="demo", category=category)
            _data(store, case_id, "match", {"list": "demo", "category": category,
                                            "hash_type": "phash", "distance": 2})
        else:
            _event(store, case_id, T0 + timedelta(minutes=5), "needs_assessment", "match")
            _event(store, case_id, T0 + timedelta(minutes=30), "verdict", "assessment",
                   verdict="illegal", category="national", note=f"seen {MARKER}")
            _data(store, case_id, "assessment", {"verdict": "illegal", "category": "national",
                                                 "by": f"analyst:{MARKER}", "at": fmt(T0)})
        _data(store, case_id, "resolution", {"country": country, "asn": asn, "org": org,
                                             "host": f"{MARKER}-{i}.example",
                                             "ips": ["192.0.2.1"]})
        _event(store, case_id, T0 + timedelta(hours=1), "noticed", "notify", actions=1)
        if i < 15:
            removed_at = T0 + timedelta(hours=HOURS[i])
            if i in EVENT_ONLY:
                _event(store, case_id, removed_at, "removed", "recheck")
            else:
                _data(store, case_id, "monitoring", {
                    "next_check_at": None, "checks": 3, "removed_at": fmt(removed_at),
                    "seconds_to_removal_from_report": HOURS[i] * 3600,
                    "seconds_to_removal_from_notice": (HOURS[i] - 1) * 3600,
                    "escalation_level": 0})
            _state(store, case_id, "removed")
        elif i == 15:  # still online, escalated twice
            _data(store, case_id, "monitoring", {"checks": 5, "removed_at": None,
                                                 "seconds_to_removal_from_report": None,
                                                 "seconds_to_removal_from_notice": None,
                                                 "escalation_level": 2})
            _event(store, case_id, T0 + timedelta(days=2), "escalated", "recheck", level=1)
            _event(store, case_id, T0 + timedelta(days=3), "escalated", "recheck", level=2)
            _state(store, case_id, "escalated")
        elif i == 16:  # was removed, came back: not removed now
            _event(store, case_id, T0 + timedelta(hours=5), "removed", "recheck")
            _event(store, case_id, T0 + timedelta(hours=50), "reappeared", "recheck")
            _state(store, case_id, "reappeared")
        else:
            _state(store, case_id, "monitoring")
    # Batch B's new cases: one dismissed by an analyst, one by a negative list, one waiting.
    _event(store, b[0], T1, "verdict", "assessment", verdict="not_illegal")
    _data(store, b[0], "assessment", {"verdict": "not_illegal", "category": None})
    _state(store, b[0], "dismissed")
    _event(store, b[1], T1, "suppressed", "match")
    _state(store, b[1], "dismissed")
    _state(store, b[2], "awaiting_assessment")
    # Notices: 3 hosting + 1 registrar sent in November, 1 failed; case 5's first notice (sent
    # 3 h after the report) is known from the notices table only.
    _notice(store, "N1", kind="hosting", state="sent", sent_at=T0 + timedelta(hours=3),
            case_ids=[a[5], a[6]])
    _notice(store, "N2", kind="hosting", state="sent", sent_at=T0 + timedelta(hours=1),
            case_ids=a[7:10])
    _notice(store, "N3", kind="hosting", state="sent", sent_at=T0 + timedelta(hours=1),
            case_ids=[a[10]])
    _notice(store, "N4", kind="registrar", state="sent", sent_at=T0 + timedelta(hours=2),
            case_ids=[a[11]])
    _notice(store, "N5", kind="hosting", state="failed", sent_at=None, case_ids=[a[12]])
    # December: five confirmed cases, removed after 10 h each (outside the November period).
    for case_id in dec:
        _event(store, case_id, T_DEC, "matched", "match", category="baseline")
        _data(store, case_id, "match", {"category": "baseline"})
        _data(store, case_id, "resolution", {"country": "US", "asn": 64999, "org": "Big"})
        _event(store, case_id, T_DEC + timedelta(hours=1), "noticed", "notify")
        _event(store, case_id, T_DEC + timedelta(hours=10), "removed", "recheck")
    return store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Store]]:
    tmp = tmp_path_factory.mktemp("stats")
    store = build_store(tmp / "ntd.db", tmp)
    yield tmp / "ntd.db", store
    store.close()


@pytest.fixture(scope="module")
def november(built: tuple[Path, Store]) -> stats.Stats:
    return stats.compute(built[1], NOVEMBER, min_count=5)


# -- helpers -----------------------------------------------------------------------------------
def test_parse_period_names_the_flag() -> None:
    assert stats.parse_period(None, None) == stats.Period()
    p = stats.parse_period("2026-11-01", "2026-11-30")
    assert p.bounds() == ("2026-11-01", "2026-12-01")
    with pytest.raises(InputError, match="--from"):
        stats.parse_period("2026-02-30", None)
    with pytest.raises(InputError, match="--to"):
        stats.parse_period(None, "yesterday")
    with pytest.raises(InputError, match="--to"):
        stats.parse_period(None, "2026-1-5")
    with pytest.raises(InputError, match="after"):
        stats.parse_period("2026-12-01", "2026-11-01")


def test_suppress_folds_small_cells_into_other() -> None:
    assert stats.suppress({"NL": 12, "DE": 6, "FR": 2, "BE": 1}, 5) == {
        "NL": 12, "DE": 6, "other": 3}
    assert stats.suppress({"a": 9, "b": 8, "c": 7}, 5, limit=2) == {"a": 9, "b": 8, "other": 7}
    assert stats.suppress({"a": 4}, 5) == {"other": 4}
    assert stats.suppress({}, 5) == {}
    assert stats.suppress({"a": 3, "other": 6}, 1) == {"other": 6, "a": 3}


def test_percentile_interpolates() -> None:
    assert stats.percentile([], 50) is None
    assert stats.percentile([7.0], 90) == 7.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert stats.percentile([float(h) for h in HOURS], 90) == pytest.approx(184.0)


# -- aggregates --------------------------------------------------------------------------------
def test_reports_channels_and_duplicates(november: stats.Stats) -> None:
    s = november.summary
    assert s["period"] == {"from": "2026-11-01", "to": "2026-11-30"}
    assert s["reports"] == 28
    assert s["duplicates"] == 3
    assert s["duplicate_share"] == pytest.approx(3 / 28, abs=1e-4)
    # analyst (2) is below 5: folded into other.
    assert s["by_channel"] == {"webform": 20, "partner": 6, "other": 2}
    assert s["reports_by_period"] == {"granularity": "day", "counts": {
        "2026-11-02": {"total": 20, "webform": 20},
        "2026-11-03": {"total": 8, "partner": 6, "other": 2}}}


def test_cases_confirmed_categories_countries_networks(november: stats.Stats) -> None:
    s = november.summary
    assert s["cases"] == 25
    assert s["confirmed"] == 20
    assert s["confirmed_share"] == 0.8
    assert s["dismissed"] == 2
    assert s["by_category"] == {"baseline": 12, "national": 6, "other": 2}
    assert s["by_country"] == {"NL": 12, "DE": 6, "other": 2}
    assert s["top_networks"] == {
        "AS64500": {"org": "Example Hosting B.V.", "country": "NL", "cases": 9},
        "AS64510": {"org": "Beispiel Hosting GmbH", "country": "DE", "cases": 6},
        "other": {"org": None, "country": None, "cases": 5}}


def test_notices_and_escalations(november: stats.Stats) -> None:
    s = november.summary
    assert s["cases_noticed"] == 20
    assert s["notices_sent"] == 4  # the failed one is not counted
    assert s["notices_source"] == "notices"
    assert s["notices_by_recipient_kind"] == {"other": 4}  # hosting 3, registrar 1: both < 5
    assert s["escalated"] == 1
    assert s["escalations"] == 2


def test_time_to_removal_both_clocks(november: stats.Stats) -> None:
    s = november.summary
    assert s["removed"] == 15  # the reappeared case is not removed
    assert s["removed_share"] == 0.75
    assert s["removal_hours"] == {"p50": 50.0, "p90": 184.0, "n": 15, "suppressed": False}
    # "Removed within" is a share of the 20 noticed cases; of the 15 removed ones it is the
    # figure labelled "of removed".
    assert s["removed_within"] == {"24h": 0.25, "72h": 0.5, "7d": 0.65}
    assert s["removed_within_of_removed"] == {"24h": round(5 / 15, 4), "72h": round(10 / 15, 4),
                                              "7d": round(13 / 15, 4)}
    # From notice: one hour less, except case 5 whose first notice went out after 3 h.
    notice = sorted([h - 1 for i, h in enumerate(HOURS) if i != 5] + [27])
    assert s["removal_hours_from_notice"] == {
        "p50": stats.percentile(notice, 50), "p90": round(stats.percentile(notice, 90) or 0, 2),
        "n": 15, "suppressed": False}
    assert s["removed_within_from_notice"] == s["removed_within"]
    assert s["removed_within_from_notice_of_removed"] == s["removed_within_of_removed"]
    assert set(s["clocks"]) == {"removal_hours", "removal_hours_from_notice"}
    assert november.removal_hours["report"] == sorted(float(h) for h in HOURS)


def test_removal_by_country_and_hoster(november: stats.Stats) -> None:
    s = november.summary
    by_country = s["removal_by_country"]
    assert list(by_country) == ["NL", "other"]
    assert (by_country["NL"]["noticed"], by_country["NL"]["removed"]) == (12, 12)
    assert by_country["NL"]["p50_hours"] == 35.0
    assert by_country["NL"]["within"]["24h"] == round(5 / 12, 4)
    # DE has only 3 removals: folded into other (DE 6 + FR 2 noticed), whose removal times
    # are suppressed (< 5 removed); its shares are of its 8 noticed cases.
    assert (by_country["other"]["noticed"], by_country["other"]["removed"]) == (8, 3)
    assert by_country["other"]["p50_hours"] is None
    assert by_country["other"]["within"] == {"24h": 0.0, "72h": 0.0, "7d": 0.125}
    assert by_country["other"]["within_of_removed"] == {"24h": None, "72h": None, "7d": None}
    by_hoster = s["removal_by_hoster"]
    assert list(by_hoster) == ["AS64500", "other"]
    assert by_hoster["AS64500"]["org"] == "Example Hosting B.V."
    assert by_hoster["AS64500"]["removed"] == 9
    assert by_hoster["other"]["removed"] == 6
    assert by_hoster["other"]["p50_hours"] == stats.percentile([70, 100, 150, 160, 200, 400], 50)


def test_period_filter_and_all_time(built: tuple[Path, Store]) -> None:
    all_time = stats.compute(built[1], stats.Period(), min_count=5,
                             today=datetime(2026, 12, 31).date()).summary
    assert all_time["period"] == {"from": "2026-11-02", "to": "2026-12-31"}
    assert all_time["reports"] == 33
    assert all_time["cases"] == 30
    assert all_time["by_country"] == {"NL": 12, "DE": 6, "US": 5, "other": 2}
    assert all_time["removed"] == 20
    assert all_time["reports_by_period"]["granularity"] == "day"
    december = stats.compute(built[1], stats.parse_period("2026-12-01", None),
                             min_count=5).summary
    assert december["reports"] == 5
    assert december["removal_hours"]["p50"] == 10.0
    assert december["removed_within"] == {"24h": 1.0, "72h": 1.0, "7d": 1.0}
    assert december["notices_sent"] == 0
    empty = stats.compute(built[1], stats.parse_period("2027-01-01", "2027-01-31"),
                          min_count=5).summary
    assert (empty["reports"], empty["cases"], empty["removed"]) == (0, 0, 0)
    assert empty["removal_hours"] == {"p50": None, "p90": None, "n": 0, "suppressed": False}


def test_small_counts_suppressed_everywhere(built: tuple[Path, Store]) -> None:
    result = stats.compute(built[1], NOVEMBER, min_count=50)
    s = result.summary
    for key in ("by_channel", "by_category", "by_country", "notices_by_recipient_kind"):
        assert set(s[key]) <= {"other"}, key
    assert set(s["top_networks"]) == {"other"}
    assert s["removal_hours"] == {"p50": None, "p90": None, "n": 15, "suppressed": True}
    assert set(s["removed_within"].values()) == {None}
    assert set(s["removed_within_from_notice"].values()) == {None}
    assert s["confirmed_share"] is None and s["removed_share"] is None
    assert list(s["removal_by_country"]) == ["other"]
    assert s["removal_by_country"]["other"]["p50_hours"] is None
    assert set(s["removal_by_hoster"]) == {"other"}
    for row in s["reports_by_period"]["counts"].values():
        assert set(row) <= {"total", "other"}
    # Below the threshold the individual removal times are not even kept for the charts.
    assert result.removal_hours == {}
    with pytest.raises(InputError):
        stats.compute(built[1], NOVEMBER, min_count=-1)


def test_removal_clocks_from_trail_and_notices(tmp_path: Path) -> None:
    """Without monitoring figures, both clocks come from the trail and the notices table."""
    store = open_store(str(tmp_path / "t.db"))
    ids = _submit(store, tmp_path, "t", [f"https://{MARKER}-t{i}.example/" for i in range(3)],
                  "webform", T0)
    for case_id in ids:
        _event(store, case_id, T0, "matched", "match")
        _event(store, case_id, T0 + timedelta(hours=2), "noticed", "notify")
    # Case 0: notice sent at +4 h (table wins over the 'noticed' event), removed at +10 h.
    _notice(store, "NX", kind="hosting", state="sent", sent_at=T0 + timedelta(hours=4),
            case_ids=[ids[0]])
    _event(store, ids[0], T0 + timedelta(hours=10), "removed", "recheck")
    # Case 1: monitoring has removed_at only: clocks computed from it and the noticed event.
    _data(store, ids[1], "monitoring", {"removed_at": fmt(T0 + timedelta(hours=30))})
    # Case 2: removed before any notice went out: counts as 0 h from notice, not negative.
    _data(store, ids[2], "monitoring", {"removed_at": fmt(T0 + timedelta(hours=1))})
    s = stats.compute(store, stats.Period(), min_count=1).summary
    store.close()
    assert s["removed"] == 3
    assert s["removal_hours"]["n"] == 3
    assert s["removal_hours"]["p50"] == 10.0
    assert s["removal_hours_from_notice"]["p50"] == 6.0  # [0, 6, 28]
    assert s["removal_hours_from_notice"]["p90"] == pytest.approx(23.6)
    assert s["removed_within"] == {"24h": round(2 / 3, 4), "72h": 1.0, "7d": 1.0}


# -- outputs -----------------------------------------------------------------------------------
def _identifiers(store: Store) -> list[str]:
    """Every case id, URL, host and domain in the store, plus the marker."""
    rows = store.conn.execute(  # type: ignore[attr-defined]
        "SELECT id, url, canonical_url, host, domain FROM cases").fetchall()
    return [MARKER, *{str(v) for r in rows for v in r}]


def test_csv_is_flat_and_matches_json(november: stats.Stats) -> None:
    text = stats.to_csv(november.summary)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["metric", "key", "value"]
    assert all(len(r) == 3 for r in rows)
    index = {(m, k): v for m, k, v in rows[1:]}
    assert index[("reports", "")] == "28"
    assert index[("by_country", "NL")] == "12"
    assert index[("removal_hours", "p90")] == "184.0"
    assert index[("removed_within", "72h")] == "0.5"
    assert index[("removed_within_of_removed", "72h")] == str(round(10 / 15, 4))
    assert index[("top_networks", "AS64500/org")] == "Example Hosting B.V."
    assert index[("reports_by_period", "counts/2026-11-03/partner")] == "6"
    assert index[("removal_by_country", "other/p50_hours")] == ""  # suppressed


def test_no_identifier_in_any_output(built: tuple[Path, Store], november: stats.Stats) -> None:
    text = json.dumps(november.summary) + stats.to_csv(november.summary)
    for value in _identifiers(built[1]):
        assert value not in text, value
    assert "@" not in text and "192.0.2.1" not in text


# -- command line ------------------------------------------------------------------------------
def test_cli_json_csv_text(built: tuple[Path, Store]) -> None:
    db = built[0]
    proc = run_ntd("stats", "--from", "2026-11-01", "--to", "2026-11-30", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("period", "reports", "cases", "confirmed", "by_channel", "by_country",
                "by_category", "notices_sent", "removed", "removal_hours", "removed_within"):
        assert key in out, key
    assert out["reports"] == 28 and out["confirmed"] == 20 and out["removed"] == 15
    assert out["removal_hours"]["p50"] == 50.0
    assert set(out["removed_within"]) == {"24h", "72h", "7d"}
    csv_proc = run_ntd("stats", "--to", "2026-11-30", "--csv", db=db)
    assert csv_proc.returncode == 0, csv_proc.stderr
    assert csv_proc.stdout.startswith("metric,key,value\n")
    text_proc = run_ntd("stats", "--from", "2026-11-01", "--to", "2026-11-30", db=db)
    assert text_proc.returncode == 0, text_proc.stderr
    assert "reports: 28 (3 duplicates)" in text_proc.stdout
    everything = proc.stdout + csv_proc.stdout + text_proc.stdout + proc.stderr
    for value in _identifiers(built[1]):
        assert value not in everything, value


def test_cli_bad_input_exits_2(built: tuple[Path, Store]) -> None:
    proc = run_ntd("stats", "--from", "2026-13-01", "--json", db=built[0])
    assert proc.returncode == 2
    assert "--from" in proc.stderr
    proc = run_ntd("stats", "--to", "31-12-2026", db=built[0])
    assert proc.returncode == 2 and "--to" in proc.stderr
    proc = run_ntd("stats", "--json", "--csv", db=built[0])
    assert proc.returncode == 2 and "--csv" in proc.stderr


def test_min_count_from_config(built: tuple[Path, Store], tmp_path: Path) -> None:
    """``[stats] min_count`` is read through the runtime's config; 0 suppresses nothing."""
    from engine.runtime import Runtime

    cfg = tmp_path / "ntd.toml"
    cfg.write_text("[stats]\nmin_count = 13\n")
    rt = Runtime.open(db=str(built[0]), config_path=cfg)
    try:
        s = stats.compute_for_runtime(rt, NOVEMBER).summary
    finally:
        rt.close()
    assert s["min_count"] == 13
    assert s["by_country"] == {"other": 20}  # NL 12 and DE 6 are both below 13
    assert s["by_channel"] == {"webform": 20, "other": 8}
    cfg.write_text("[stats]\nmin_count = 0\n")
    proc = run_ntd("--config", str(cfg), "stats", "--to", "2026-11-30", "--json", db=built[0])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["by_country"] == {"NL": 12, "DE": 6, "FR": 2}
    assert out["by_channel"] == {"webform": 20, "partner": 6, "analyst": 2}
    assert out["removal_by_country"]["DE"]["removed"] == 3


# -- charts ------------------------------------------------------------------------------------
def _check_pngs(paths: list[Path], min_bytes: int) -> None:
    assert [p.name for p in paths] == list(stats.CHART_FILES)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
        assert len(data) > min_bytes, (path, len(data))
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width >= 500 and img.height >= 250
            # Non-trivial: more than a blank canvas (many distinct colours).
            colours = img.convert("RGB").getcolors(maxcolors=1_000_000) or []
            assert len(colours) > 20, path


def test_plot_writes_charts(november: stats.Stats, tmp_path: Path) -> None:
    paths = stats.plot(november, tmp_path / "charts")
    _check_pngs(paths, 15_000)


def test_plot_empty_and_suppressed(built: tuple[Path, Store], tmp_path: Path) -> None:
    empty = stats.compute(built[1], stats.parse_period("2027-01-01", None), min_count=5)
    _check_pngs(stats.plot(empty, tmp_path / "empty"), 5_000)
    hidden = stats.compute(built[1], NOVEMBER, min_count=50)
    _check_pngs(stats.plot(hidden, tmp_path / "hidden"), 5_000)
    nothing = stats.compute(built[1], stats.parse_period("2027-01-01", None), min_count=0)
    assert nothing.summary["removal_hours"]["p50"] is None
    _check_pngs(stats.plot(nothing, tmp_path / "nothing"), 5_000)


def test_cli_plot(built: tuple[Path, Store], tmp_path: Path) -> None:
    out = tmp_path / "plots"
    proc = run_ntd("stats", "--to", "2026-11-30", "--json", "--plot", str(out), db=built[0])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["reports"] == 28
    assert sorted(p.name for p in out.iterdir()) == sorted(stats.CHART_FILES)


def test_networks_are_keyed_by_asn_or_prefix_not_by_name(tmp_path: Path) -> None:
    """Cases on three networks in three countries, all under one company name, are three
    networks; a network without an ASN is keyed by its prefix."""
    store = open_store(str(tmp_path / "nets.db"))
    ids = _submit(store, tmp_path, "n", [f"https://{MARKER}-n{i}.example/x" for i in range(6)],
                  "webform", T0)
    nets = [("NL", 64600, None), ("NL", 64600, None), ("DE", 64601, None),
            ("DE", 64601, None), ("FR", None, "203.0.113.0/24"), ("FR", None, None)]
    for case_id, (country, asn, prefix) in zip(ids, nets, strict=True):
        _event(store, case_id, T0 + timedelta(minutes=5), "matched", "match")
        _data(store, case_id, "match", {"category": "baseline"})
        _data(store, case_id, "resolution", {"country": country, "asn": asn,
                                             "network": prefix, "org": "OneCo Ltd"})
        _event(store, case_id, T0 + timedelta(hours=1), "noticed", "notify")
    _event(store, ids[0], T0 + timedelta(hours=5), "removed", "recheck")
    s = stats.compute(store, NOVEMBER, min_count=0).summary
    assert s["top_networks"] == {
        "AS64600": {"org": "OneCo Ltd", "country": "NL", "cases": 2},
        "AS64601": {"org": "OneCo Ltd", "country": "DE", "cases": 2},
        "203.0.113.0/24": {"org": "OneCo Ltd", "country": "FR", "cases": 1},
        "unknown": {"org": None, "country": None, "cases": 1}}
    hoster = s["removal_by_hoster"]
    assert (hoster["AS64600"]["noticed"], hoster["AS64600"]["removed"]) == (2, 1)
    assert hoster["AS64600"]["within"]["24h"] == 0.5  # of noticed: 1 of 2
    assert hoster["AS64600"]["within_of_removed"]["24h"] == 1.0
    assert s["removed_within"]["24h"] == round(1 / 6, 4)
    store.close()
