"""Import from ICCAM over mutual TLS: cases opened once, linked, the partner's assessment kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import iccam_v3 as v3
from engine.clock import Clock
from engine.intake import submit_files
from plugins.iccam.cli import run_sync
from plugins.iccam.service import partner_baseline
from tests.iccam_lab import (
    PKI,
    page_report,
    running,
    runtime,
)

pytestmark = pytest.mark.usefixtures("iccam_password")


async def test_a_report_with_a_page_and_three_media_opens_one_case(tmp_path: Path,
                                                                   pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            report_id, ids = fake.add_partner_report(urls=page_report(), hotline_id=32,
                                                     analyst="de-analyst")
            result = await run_sync(rt, do_import=True, do_export=False)
            assert result == {"imported": 1, "linked": 0, "reports_created": 0, "actions_sent": 0,
                              "retrying": 0, "errors": []}
            [case] = rt.store.list_cases()
            assert case["url"] == "http://site.example.test/gallery/1"
            [report] = case["reports"]
            assert report["channel"] == "iccam"
            assert report["metadata"]["reference"] == f"iccam:{report_id}#{ids[0]}"
            assert report["metadata"]["partner_hotline"] == 32
            assert report["metadata"]["partner_analyst"] == "de-analyst"
            assert report["metadata"]["partner_received"]
            assert sorted((i["kind"], i["url"]) for i in case["items"]) == [
                ("media", f"http://site.example.test/media/{n}.jpg") for n in range(3)] + [
                ("url", "http://site.example.test/gallery/1")]
            # The partner's assessment is carried over: the most serious one (Baseline).
            assert case["iccam"]["partner_assessment"]["classification"] == v3.BASELINE
            assert case["iccam"]["partner_assessment"]["category"] == "baseline"
            assert case["iccam"]["partner_baseline"] is True
            # Our hotline reference is on every item in ICCAM, so they left the work list.
            assert {fake.contents[c]["hotlineReference"] for c in ids} == {f"NTD-{case['id']}"}
            puts = fake.successful("PUT", r"rest/Content/\d+/hotline-reference")
            assert len(puts) == 4 and all(p.query["reference"] == f"NTD-{case['id']}"
                                          for p in puts)
            links = rt.store.iccam_case(case["id"])["items"]
            assert sorted(i["content_id"] for i in links) == ids
            assert {i["origin"] for i in links} == {"import"}


async def test_reimport_makes_no_second_case(tmp_path: Path, pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            _, ids = fake.add_partner_report(urls=page_report())
            assert (await run_sync(rt, do_import=True, do_export=False))["imported"] == 1
            again = await run_sync(rt, do_import=True, do_export=False)
            assert (again["imported"], again["linked"]) == (0, 0)
            # ICCAM lists an item again (its reference was cleared): still the same case; the
            # reference is set once more and the report is not stored twice.
            fake.contents[ids[2]]["hotlineReference"] = None
            rt.store.iccam_set_cursor("2000-01-01T00:00:00.000000Z")
            third = await run_sync(rt, do_import=True, do_export=False)
            assert (third["imported"], third["linked"]) == (0, 0)
            [case] = rt.store.list_cases()
            assert len(case["reports"]) == 1
            assert fake.contents[ids[2]]["hotlineReference"] == f"NTD-{case['id']}"
            assert len(rt.store.iccam_case(case["id"])["items"]) == 4


async def test_a_url_that_is_an_open_case_is_linked_not_duplicated(tmp_path: Path,
                                                                   pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            src = tmp_path / "urls.txt"
            src.write_text("http://site.example.test/gallery/1\n")
            submit_files(rt.store, [str(src)], clock=rt.clock)
            fake.add_partner_report(urls=page_report(n_media=1))
            result = await run_sync(rt, do_import=True, do_export=False)
            assert (result["imported"], result["linked"]) == (0, 1)
            [case] = rt.store.list_cases()
            assert [r["channel"] for r in case["reports"]] == ["analyst", "iccam"]
            assert case["reports"][1]["duplicate"] is True


async def test_the_work_list_is_windowed_and_paged(tmp_path: Path, pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            for n in range(205):  # more than one page of 200
                fake.add_partner_report(urls=[{"url": f"http://h{n}.example.test/p",
                                               "source": True}])
            result = await run_sync(rt, do_import=True, do_export=False)
            assert result["imported"] == 205
            listings = [r for r in fake.requests if r.path == "rest/Content/no-reference"]
            assert len(listings) >= 2
            assert all(r.query["maxResults"] == "200" for r in listings)
            assert all(r.query["countryAssignmentStartDate"] for r in listings)
            assert rt.store.iccam_cursor() is not None


async def test_a_report_without_a_source_url_is_an_import_error(tmp_path: Path,
                                                                pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            report_id, _ = fake.add_partner_report(urls=[{"url": "http://x.example.test/a.jpg"}])
            result = await run_sync(rt, do_import=True, do_export=False)
            assert result["imported"] == 0
            assert result["errors"][0]["report_id"] == report_id
            [problem] = rt.store.iccam_problems()
            assert problem["kind"] == "import" and "no source URL" in problem["error"]


async def test_partner_baseline_confirms_only_when_accepted(tmp_path: Path, pki: PKI) -> None:
    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            fake.add_partner_report(urls=page_report(page_class=1, media_class=None))
            await run_sync(rt, do_import=True, do_export=False)
            [case] = rt.store.list_cases()
            loaded = rt.store.load_case(case["id"])
            assert partner_baseline(loaded, rt.context()) is None  # default: the workbench
        with runtime(tmp_path, fake, pki, accept_partner_baseline=True) as accepting:
            result = partner_baseline(loaded, accepting.context())
            assert result is not None and result.state == "confirmed"
            assert result.data["assessment"]["category"] == "baseline"
            assert result.data["assessment"]["by"] == "iccam:partner-hotline-32"


def test_partner_baseline_needs_a_baseline(tmp_path: Path) -> None:
    from engine.testing import make_case, make_context
    from plugins import iccam

    ctx = make_context(("iccam", iccam), config={"iccam": {"accept_partner_baseline": True}},
                       clock=Clock())
    national = make_case(data={"iccam": {"partner_baseline": False,
                                         "partner_assessment": {"classification": 2}}})
    assert partner_baseline(national, ctx) is None


async def test_the_queue_marks_a_partners_assessment(tmp_path: Path, pki: PKI) -> None:
    from tests.conftest import run_ntd
    from tests.iccam_lab import set_case

    async with running(pki) as fake:
        with runtime(tmp_path, fake, pki) as rt:
            fake.add_partner_report(urls=page_report(page_class=1, n_media=0))
            await run_sync(rt, do_import=True, do_export=False)
            [case] = rt.store.list_cases()
            set_case(rt.store, case["id"], state="awaiting_assessment", now=case["created_at"])
    proc = run_ntd("queue", db=tmp_path / "ntd.db", env={"COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    assert "ICCAM partner: baseline" in proc.stdout


def test_the_baseline_rule_joins_the_match_stage_only_when_accepted() -> None:
    from engine.plugin_manager import implementations
    from engine.testing import make_context
    from plugins import iccam
    from plugins.iccam.service import start_run, stop_run

    off = make_context(("iccam", iccam))
    start_run(off)
    assert implementations(off.pm, "ntd_match") == []  # no matcher: the stage still parks
    on = make_context(("iccam", iccam), config={"iccam": {"accept_partner_baseline": True}})
    start_run(on)
    assert [i.plugin_name for i in implementations(on.pm, "ntd_match")] == [
        "iccam_partner_baseline"]
    stop_run(on)
    assert implementations(on.pm, "ntd_match") == []
