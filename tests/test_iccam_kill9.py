"""kill -9 of ``ntd run --daemon`` in the middle of an ICCAM export, then a restart: ICCAM
receives every action exactly once (the fake counts), and none is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine import clock
from engine import iccam_v3 as v3
from engine.lab.iccam_fake import FakeICCAM, Hold
from engine.runtime import Runtime
from engine.store import open_store
from engine.testing import resolution
from plugins.iccam.cli import run_sync
from tests.conftest import ROOT, ntd_env, wait_for
from tests.iccam_lab import (
    PASSWORD,
    PASSWORD_ENV,
    PKI,
    iccam_section,
    make_pki,
    page_report,
    send_notice,
    set_case,
)

# Recent: ``ntd run --daemon`` anonymises cases finished long ago (and then exports nothing).
T0 = clock.fmt(datetime.now(UTC) - timedelta(hours=40))
# Only the ICCAM plugin runs in the child: no stage touches the prepared cases.
OTHERS = "fetch,hashmatch,resolve,route_inhope,notify,recheck"
REPORTS = 3
MEDIA = 3


def at(hours: float) -> str:
    return clock.fmt(clock.parse(T0) + timedelta(hours=hours))


def _toml(section: dict[str, object]) -> str:
    lines = ["[iccam]"]
    for key, value in section.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _prepare(tmp_path: Path, fake: FakeICCAM, pki: PKI) -> list[int]:
    """Partner reports imported, then noticed, reported to police and removed: every content
    item owes ICCAM three actions (the pages an assessment first)."""
    db = tmp_path / "ntd.db"
    ids: list[int] = []
    for n in range(REPORTS):
        _, content = fake.add_partner_report(urls=page_report(f"h{n}.example.test",
                                                              n_media=MEDIA, page_class=2,
                                                              media_class=1))
        ids += content
    os.environ[PASSWORD_ENV] = PASSWORD
    try:
        rt = Runtime.open(db=str(db), overrides={"iccam": iccam_section(fake, pki)})
        try:
            assert asyncio.run(run_sync(rt, do_import=True, do_export=False))["imported"] \
                == REPORTS
            for case in rt.store.list_cases():
                send_notice(rt.store, case["id"], kind="hosting", now=at(1))
                send_notice(rt.store, case["id"], kind="police", now=at(2))
                set_case(rt.store, case["id"], state="closed", now=at(30),
                         resolution=resolution(host=case["host"], country="NL"),
                         assessment={"verdict": "illegal", "category": "baseline",
                                     "by": "analyst:a", "at": at(0.5)},
                         monitoring={"removed_at": at(29)})
        finally:
            rt.close()
    finally:
        del os.environ[PASSWORD_ENV]
    return ids


def _daemon(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--db", str(tmp_path / "ntd.db"), "--config",
         str(tmp_path / "ntd.toml"), "run", "--daemon"], cwd=ROOT,
        env=ntd_env(NTD_DISABLE_PLUGINS=OTHERS, **{PASSWORD_ENV: PASSWORD}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _sync_again(tmp_path: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--db", str(tmp_path / "ntd.db"), "--config",
         str(tmp_path / "ntd.toml"), "iccam", "sync", "--export", "--json"], cwd=ROOT,
        env=ntd_env(NTD_DISABLE_PLUGINS=OTHERS, **{PASSWORD_ENV: PASSWORD}),
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _kill_mid_export(tmp_path: Path, fake: FakeICCAM, hold: Hold) -> None:
    proc = _daemon(tmp_path)
    try:
        wait_for(hold.reached.is_set, timeout=90)
        assert proc.poll() is None, proc.communicate()[1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("after", [True, False], ids=["answer-lost", "request-cut"])
def test_kill_9_mid_export_then_restart_sends_each_action_once(tmp_path: Path,
                                                               after: bool) -> None:
    pki = make_pki(tmp_path / "pki")
    fake = FakeICCAM(pki.server).start_in_thread()
    try:
        ids = _prepare(tmp_path, fake, pki)
        (tmp_path / "ntd.toml").write_text(_toml(iccam_section(fake, pki,
                                                               poll_minutes=0.005)))
        # The daemon dies while ICCAM holds its 7th action: taken in (``after``: the answer
        # never reaches the engine) or not yet.
        hold = fake.hold("POST", r"rest/content/\d+/actions", after=after, skip=6)
        _kill_mid_export(tmp_path, fake, hold)
        hold.release(drop=not after)
        partial = fake.received_actions()
        assert 6 <= len(partial) < 3 * len(ids)
        result = _sync_again(tmp_path)
        assert result["errors"] == []
    finally:
        fake.stop()
    received = Counter(fake.received_actions())
    expected = {(c, t) for c in ids for t in (v3.REPORTED_TO_ISP, v3.REPORTED_TO_LEA,
                                              v3.REMOVED)}
    assert set(received) == expected  # nothing lost
    assert set(received.values()) == {1}  # nothing twice
    pages = ids[::MEDIA + 1]
    assessed = Counter(int(r.path.split("/")[2])
                       for r in fake.successful("PUT", r"rest/content/\d+/assessment"))
    assert assessed == Counter(pages)
    store = open_store(str(tmp_path / "ntd.db"))
    try:
        counts = store.iccam_counts()
    finally:
        store.close()
    assert set(counts) == {"sent"}  # every step settled
    for content_id in ids:  # ICCAM's order held across the crash
        types = [a["actionType"] for a in fake.contents[content_id]["actions"]]
        assert types.index(v3.REMOVED) == 2


@pytest.mark.slow
def test_kill_9_while_creating_a_report_never_creates_it_twice(tmp_path: Path) -> None:
    from engine.models import Item
    from tests.conftest import run_ntd
    from tests.iccam_lab import our_case

    pki = make_pki(tmp_path / "pki")
    fake = FakeICCAM(pki.server).start_in_thread()
    try:
        store = open_store(str(tmp_path / "ntd.db"))
        page = "http://hoster-nl.example.test/page/1.html"
        case_id = our_case(store, page, now=at(0),
                           items=[Item(url=page, kind="url", status=200,
                                       content_type="text/html")],
                           resolution=resolution(host="hoster-nl.example.test", country="NL"),
                           assessment={"verdict": "illegal", "category": "baseline",
                                       "by": "analyst:a", "at": at(0)})
        store.iccam_queue_report(case_id, at(0), {"target": "iccam:NL"})  # what the channel does
        store.close()
        (tmp_path / "ntd.toml").write_text(_toml(iccam_section(fake, pki,
                                                               poll_minutes=0.005)))
        hold = fake.hold("POST", "rest/reports", after=True)  # created, answer lost
        _kill_mid_export(tmp_path, fake, hold)
        hold.release()
        result = _sync_again(tmp_path)
        [error] = result["errors"]  # type: ignore[misc]
        assert error["step"] == "report" and "may hold this report" in error["error"]
        assert len(fake.reports) == 1  # not sent again
        [report_id] = fake.reports
        env = {PASSWORD_ENV: PASSWORD}
        done = run_ntd("--config", str(tmp_path / "ntd.toml"), "iccam", "resolve", case_id,
                       "--report-id", str(report_id), db=tmp_path / "ntd.db", env=env)
        assert done.returncode == 0, done.stderr
        assert _sync_again(tmp_path)["errors"] == []
    finally:
        fake.stop()
    assert len(fake.successful("POST", "rest/reports")) == 1
    store = open_store(str(tmp_path / "ntd.db"))
    try:
        [link] = store.iccam_case(case_id)["items"]
    finally:
        store.close()
    assert (link["report_id"], link["content_id"]) == (
        report_id, fake.reports[report_id]["reportContents"][0]["contentId"])
