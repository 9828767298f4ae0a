"""The pipeline: stages in order, parking, failures, backpressure, crash-resume, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine import hookimpl
from engine.intake import submit_files
from engine.models import StageResult
from engine.runtime import Runtime
from tests.conftest import PLUGIN_PKG, ntd_env, wait_for
from tests.plugins import stage_stubs

BUILTINS = "fetch,hashmatch,resolve,route_inhope,notify,recheck"


@pytest.fixture(autouse=True)
def _only_fixture_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests exercise the engine with fixture stages, not the built-in ones."""
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", BUILTINS)


def make_runtime(db: Path, *plugins: tuple[str, object], **overrides: dict) -> Runtime:
    rt = Runtime.open(db=str(db), extra_plugins=plugins,
                      overrides={"pipeline": {"poll_seconds": 0.05}, **overrides})
    return rt


def submit_urls(rt: Runtime, tmp_path: Path, urls: list[str]) -> None:
    src = tmp_path / "urls.txt"
    src.write_text("\n".join(urls) + "\n")
    submit_files(rt.store, [str(src)])


def stage_events(db: Path) -> Counter[tuple[str, str]]:
    """(case, action) counts of stage results in the trail."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT case_id, action FROM events "
                            "WHERE action IN ('fetched', 'no_match')").fetchall()
    finally:
        conn.close()
    return Counter(rows)


async def test_cases_flow_through_stages_in_order(db_path: Path, tmp_path: Path) -> None:
    rt = make_runtime(db_path, ("stubs", stage_stubs))
    submit_urls(rt, tmp_path, [f"http://h{i}.example/{i}.png" for i in range(40)])
    summary = await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert summary.processed == {"fetch": 40, "match": 40}
    assert rt.store.count_by_state() == {"awaiting_assessment": 40}
    case = rt.store.list_cases(limit=1)[0]
    full = rt.store.get_case(case["id"])
    assert [e["action"] for e in full["events"]] == ["created", "fetched", "no_match"]
    assert [e["actor"] for e in full["events"][1:]] == ["stubs", "stubs"]
    assert full["items"][0]["hashes"] == {"md5": "0" * 32}
    # Later stages have no plugin: nothing was parked because no case reached them.
    assert summary.parked == {}
    rt.close()


async def test_unimplemented_stage_parks_then_resumes(db_path: Path, tmp_path: Path) -> None:
    rt = make_runtime(db_path)  # no stage plugins at all
    submit_urls(rt, tmp_path, ["http://a.example/1", "http://a.example/2"])
    summary = await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert summary.parked == {"fetch": 2}
    assert rt.store.count_by_state() == {"new": 2}
    case = rt.store.list_cases()[0]
    assert "fetch stage" in case["state_reason"]
    rt.close()
    # Installing a plugin for the stage resumes the parked cases where they were.
    rt = make_runtime(db_path, ("stubs", stage_stubs))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert rt.store.count_by_state() == {"awaiting_assessment": 2}
    actions = [e["action"] for e in rt.store.get_case(case["id"])["events"]]
    assert actions == ["created", "parked", "unparked", "fetched", "no_match"]
    rt.close()


async def test_failing_hook_is_retried_later_not_crashed(db_path: Path, tmp_path: Path) -> None:
    rt = make_runtime(db_path, ("stubs", stage_stubs))
    submit_urls(rt, tmp_path, ["http://a.example/boom", "http://a.example/ok",
                               "http://a.example/unreachable"])
    summary = await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert summary.errors == {"match": 1}
    by_url = {c["canonical_url"]: c for c in rt.store.list_cases()}
    boom = by_url["http://a.example/boom"]
    assert boom["state"] == "fetched" and "synthetic failure" in boom["state_reason"]
    assert boom["retry_at"] is not None
    trail = rt.store.get_case(boom["id"])["events"]
    assert trail[-1]["action"] == "error" and trail[-1]["detail"]["attempts"] == 1
    assert "stubs" in trail[-1]["detail"]["where"]
    assert by_url["http://a.example/unreachable"]["state"] == "unreachable"
    assert by_url["http://a.example/ok"]["state"] == "awaiting_assessment"
    rt.close()


async def test_queues_are_bounded(db_path: Path, tmp_path: Path) -> None:
    seen_queue_sizes: list[int] = []

    class Probe:
        @hookimpl
        async def ntd_fetch(self, case, ctx):
            leased = sum((await ctx.store.lease_owners()).values())
            seen_queue_sizes.append(leased)
            await asyncio.sleep(0)
            return StageResult(state="fetched", action="fetched")

    rt = make_runtime(db_path, ("probe", Probe()),
                      pipeline={"poll_seconds": 0.05, "queue_size": 5, "workers": 2})
    submit_urls(rt, tmp_path, [f"http://a.example/{i}" for i in range(60)])
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    # Never more cases leased than queue + workers: backpressure against the store.
    assert max(seen_queue_sizes) <= 5 + 2
    assert rt.store.count_by_state() == {"fetched": 60}  # match has no plugin here
    rt.close()


def _start_run(db: Path, delay: str, *extra: str) -> subprocess.Popen[str]:
    env = ntd_env(PLUGIN_PKG, NTD_TEST_STAGE_DELAY=delay, NTD_DISABLE_PLUGINS=BUILTINS)
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--db", str(db), "run", "--workers", "4", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _submit(db: Path, tmp_path: Path, n: int) -> None:
    src = tmp_path / "urls.txt"
    src.write_text("".join(f"http://h{i % 7}.example/{i}.png\n" for i in range(n)))
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "--db", str(db), "submit",
                           str(src)], env=ntd_env(PLUGIN_PKG, NTD_DISABLE_PLUGINS=BUILTINS),
                          capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def _done(db: Path) -> int:
    return sum(stage_events(db).values())


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_processes_each_case_once(db_path: Path,
                                                             tmp_path: Path) -> None:
    n = 150
    _submit(db_path, tmp_path, n)
    proc = _start_run(db_path, "0.01", "--until-idle")
    try:
        wait_for(lambda: _done(db_path) >= 40)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)  # reap it and close its pipes
    partial = _done(db_path)
    assert 40 <= partial < 2 * n
    # A new run releases the dead process's leases and finishes the work.
    resumed = _start_run(db_path, "0", "--until-idle")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    events = stage_events(db_path)
    per_case: dict[str, Counter[str]] = {}
    for (case_id, action), count in events.items():
        per_case.setdefault(case_id, Counter())[action] += count
    assert len(per_case) == n
    assert all(c == Counter({"fetched": 1, "no_match": 1}) for c in per_case.values())
    conn = sqlite3.connect(db_path)
    try:
        states = dict(conn.execute("SELECT state, count(*) FROM cases GROUP BY state"))
        leases = conn.execute("SELECT count(*) FROM cases WHERE lease_owner IS NOT NULL")
        assert states == {"awaiting_assessment": n}
        assert leases.fetchone()[0] == 0
    finally:
        conn.close()


@pytest.mark.slow
def test_sigterm_finishes_in_flight_work_and_requeues_the_rest(db_path: Path,
                                                               tmp_path: Path) -> None:
    n = 200
    _submit(db_path, tmp_path, n)
    proc = _start_run(db_path, "0.05")  # daemon mode: runs until signalled
    try:
        wait_for(lambda: _done(db_path) >= 20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped by signal" in out
    conn = sqlite3.connect(db_path)
    try:
        leases = conn.execute("SELECT count(*) FROM cases WHERE lease_owner IS NOT NULL")
        assert leases.fetchone()[0] == 0  # in-flight finished, queued released
        states = dict(conn.execute("SELECT state, count(*) FROM cases GROUP BY state"))
    finally:
        conn.close()
    assert sum(states.values()) == n and states.get("new", 0) > 0
    # Every committed stage ran once; the rest completes on the next run.
    resumed = _start_run(db_path, "0", "--until-idle")
    resumed.communicate(timeout=120)
    events = stage_events(db_path)
    assert len(events) == 2 * n and set(events.values()) == {1}
