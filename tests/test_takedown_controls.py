"""Takedown controls (issue 21): police first, sending windows, approved contacts, manual routing.

Every test runs the real notify stage and sender against the loopback SMTP sink, with a fixed,
advanceable clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import plugins.notify as notify
from engine.cli import cli
from engine.clock import Clock
from engine.lab.smtp_sink import SMTPSink
from engine.models import StageResult
from engine.runtime import Runtime
from engine.store import Commit
from plugins.notify.cli import release_case
from plugins.notify.sender import NoticeSender
from plugins.notify.windows import SendingRules, parse_window
from tests.test_notify import route, routed_case

POLICE = "police@politie.test"
HOSTER = "abuse@hoster.test"


@pytest.fixture(autouse=True)
def _stages_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # Route and resolve stay on for their settings and commands; no case waits for them.
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "fetch,hashmatch,recheck")


def runtime(tmp_path: Path, port: int, at: datetime, *, routing: dict[str, Any] | None = None,
            **notices: Any) -> Runtime:
    return Runtime.open(
        db=str(tmp_path / "ntd.db"), extra_plugins=[("notify", notify)], clock=Clock(fixed=at),
        overrides={"smtp": {"host": "127.0.0.1", "port": port,
                            "from_address": "notices@hotline.test"},
                   "notices": {"aggregate_minutes": 0.0, "poll_seconds": 0.02, **notices},
                   "routing": routing or {}, "pipeline": {"poll_seconds": 0.02}})


async def drain(rt: Runtime) -> None:
    ctx = rt.context()
    sender = NoticeSender.from_context(ctx)
    try:
        await sender.drain(flush=True)
    finally:
        await sender.aclose()
        await ctx.aclose()


def recipients(sink: SMTPSink) -> list[str]:
    return sorted(r for m in sink.messages for r in m.rcpt_tos)


def two_routes() -> list[dict[str, Any]]:
    return [route(POLICE, kind="police", hours=None), route(HOSTER)]


# -- police first --------------------------------------------------------------------------------
async def test_police_first_holds_hoster_notices_until_release(tmp_path: Path) -> None:
    async with SMTPSink() as sink:
        rt = runtime(tmp_path, sink.port, datetime(2026, 3, 3, 10, tzinfo=UTC),
                     routing={"police_first": "always"})
        case_id = routed_case(rt, tmp_path, "http://held.test/p/1.html", two_routes())
        summary = await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        assert summary.processed["notify"] == 1
        await drain(rt)
        case = rt.store.get_case(case_id)
        assert case["state"] == "held_for_police" and case["retry_at"] is None
        assert recipients(sink) == [POLICE]  # nothing to the hoster before release
        rt.clock.advance(3600)
        await drain(rt)
        assert recipients(sink) == [POLICE]
        out = release_case(rt, case_id, actor="police:liaison", note="seized", decline=False)
        assert out == {"state": "noticed", "notices": 1}
        await drain(rt)
        assert recipients(sink) == [HOSTER, POLICE]
        case = rt.store.get_case(case_id)
        assert case["state"] == "noticed" and case["retry_at"]  # the takedown clock runs
        released = [e for e in case["events"] if e["action"] == "police_released"]
        assert released and released[0]["actor"] == "police:liaison"
        rt.close()


async def test_police_declines_and_the_case_closes_without_hoster_notice(tmp_path: Path) -> None:
    async with SMTPSink() as sink:
        rt = runtime(tmp_path, sink.port, datetime(2026, 3, 3, 10, tzinfo=UTC))
        case_id = routed_case(rt, tmp_path, "http://declined.test/p/1.html", two_routes())
        result = CliRunner().invoke(cli, ["--db", rt.store.url.removeprefix("sqlite:///"),
                                          "police-first", case_id, "on", "--note", "ongoing"])
        assert result.exit_code == 0, result.output
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        await drain(rt)
        assert rt.store.get_case(case_id)["state"] == "held_for_police"
        with pytest.raises(Exception, match="--note"):
            release_case(rt, case_id, actor="police:x", note=None, decline=True)
        assert release_case(rt, case_id, actor="police:x", note="investigation",
                            decline=True) == {"state": "closed", "notices": 1}
        await drain(rt)
        case = rt.store.get_case(case_id)
        assert case["state"] == "closed" and "investigation" in case["state_reason"]
        assert recipients(sink) == [POLICE]
        rt.close()


async def test_police_first_national_applies_to_home_country_only(tmp_path: Path) -> None:
    async with SMTPSink() as sink:
        rt = runtime(tmp_path, sink.port, datetime(2026, 3, 3, 10, tzinfo=UTC),
                     routing={"police_first": "national", "home_country": "DE"})
        case_id = routed_case(rt, tmp_path, "http://abroad.test/p/1.html", two_routes())
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        await drain(rt)  # resolution says NL, home is DE: not national, nothing held
        assert rt.store.get_case(case_id)["state"] == "noticed"
        assert recipients(sink) == [HOSTER, POLICE]
        rt.close()


# -- sending windows -----------------------------------------------------------------------------
def test_window_parsing_and_next_opening() -> None:
    assert parse_window("Mon-Fri 09:00-17:00")[0].days == frozenset(range(5))
    assert parse_window("Sat-Mon 10:00-24:00")[0].days == frozenset({5, 6, 0})
    for bad in ("weekdays", "Mon-Fri 17:00-09:00", "Xyz 09:00-10:00", "Mon 25:00-26:00"):
        with pytest.raises(Exception, match="send_window"):
            parse_window(bad)
    rules = SendingRules(window="Mon-Fri 09:00-17:00")
    # Saturday noon in Amsterdam; Monday 27 April 2026 is King's Day: Tuesday 09:00 CEST.
    saturday = datetime(2026, 4, 25, 10, tzinfo=UTC)
    assert rules.next_open(saturday, "NL") == datetime(2026, 4, 28, 7, tzinfo=UTC)
    # Without public holidays it is Monday 09:00.
    plain = SendingRules(window="Mon-Fri 09:00-17:00", public_holidays=False)
    assert plain.next_open(saturday, "NL") == datetime(2026, 4, 27, 7, tzinfo=UTC)
    # 03:00 in Amsterdam on a working day: the same day at 09:00; inside the window: now.
    night = datetime(2026, 4, 29, 1, tzinfo=UTC)
    assert rules.next_open(night, "NL") == datetime(2026, 4, 29, 7, tzinfo=UTC)
    noon = datetime(2026, 4, 29, 10, tzinfo=UTC)
    assert rules.next_open(noon, "NL") == noon
    blocked = SendingRules(window="Mon-Fri 09:00-17:00", blocked_days=["2026-04-29"])
    assert blocked.next_open(noon, "NL") == datetime(2026, 4, 30, 7, tzinfo=UTC)


@pytest.mark.parametrize("at, opens", [
    (datetime(2026, 4, 25, 10, tzinfo=UTC), "2026-04-28T07:00:00.000000Z"),  # Sat, King's Day
    (datetime(2026, 4, 27, 10, tzinfo=UTC), "2026-04-28T07:00:00.000000Z"),  # King's Day
    (datetime(2026, 4, 29, 1, tzinfo=UTC), "2026-04-29T07:00:00.000000Z"),  # 03:00 local
])
async def test_notice_waits_for_its_window_but_police_does_not(
        tmp_path: Path, at: datetime, opens: str) -> None:
    async with SMTPSink() as sink:
        rt = runtime(tmp_path, sink.port, at, send_window="Mon-Fri 09:00-17:00")
        routed_case(rt, tmp_path, "http://window.test/p/1.html", two_routes())
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        await drain(rt)
        assert recipients(sink) == [POLICE]
        (waiting,) = rt.store.list_notices(state="queued")
        assert waiting["recipient"] == HOSTER and waiting["not_before"] == opens
        assert waiting["attempts"] == 0
        listed = CliRunner().invoke(cli, ["--db", rt.store.url.removeprefix("sqlite:///"),
                                          "notices", "--state", "queued", "--json"])
        assert json.loads(listed.output)[0]["not_before"] == opens
        rt.clock.advance((datetime.fromisoformat(opens.replace("Z", "+00:00")) - at)
                         .total_seconds() - 60)
        await drain(rt)
        assert recipients(sink) == [POLICE]  # a minute early
        rt.clock.advance(61)
        await drain(rt)
        assert recipients(sink) == [HOSTER, POLICE]
        rt.close()


# -- approved contacts ---------------------------------------------------------------------------
async def test_unapproved_contact_gets_mail_only_after_approval(tmp_path: Path) -> None:
    async with SMTPSink() as sink:
        rt = runtime(tmp_path, sink.port, datetime(2026, 3, 3, 10, tzinfo=UTC),
                     require_approval=True)
        book = "abuse@booked.test"
        rt.store.contacts_add(match_kind="domain", match_value="booked.test", scope="hosting",
                              channel="email", address=book, now=rt.clock.now_text())
        routed_case(rt, tmp_path, "http://approve.test/p/1.html",
                    [*two_routes(), route(book)])
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        await drain(rt)
        assert recipients(sink) == [book, POLICE]  # the book's address is approved already
        assert rt.store.awaiting_approval()[0]["address"] == HOSTER
        db = rt.store.url.removeprefix("sqlite:///")
        pending = CliRunner().invoke(cli, ["--db", db, "contacts", "pending", "--json"])
        assert [r["address"] for r in json.loads(pending.output)] == [HOSTER]
        approve = CliRunner().invoke(cli, ["--db", db, "contacts", "approve", HOSTER.upper()],
                                     env={"NTD_FAKE_NOW": rt.clock.now_text()})
        assert approve.exit_code == 0 and "1 waiting notice" in approve.output
        await drain(rt)
        assert recipients(sink) == [book, HOSTER, POLICE]
        assert rt.store.awaiting_approval() == []
        rt.close()


# -- manual routing ------------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["unresolved", "failed", "resolved"])
def test_manual_routing_from_states_the_machine_stopped_in(tmp_path: Path, state: str) -> None:
    db = tmp_path / "ntd.db"
    rt = Runtime.open(db=str(db))
    src = tmp_path / "in.txt"
    src.write_text("http://manual.test/p/1.html\n")
    from engine.intake import submit_files

    submit_files(rt.store, [str(src)], channel="analyst", clock=rt.clock)
    (case,) = rt.store.list_cases()
    rt.store.claim(["new"], limit=1, owner="t", lease_seconds=60, now=rt.clock.now_text())
    rt.store.apply([Commit(case_id=case["id"], owner="t", stage="resolve", actor="t",
                           result=StageResult(state=state, action=state, reason="test"))],
                   rt.clock.now_text())
    rt.close()
    out = CliRunner().invoke(cli, ["--db", str(db), "route", case["id"], "--to",
                                   "hosting:abuse@manual.test", "--reason", "found by hand",
                                   "--analyst", "ana", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["target"] == "abuse@manual.test"
    rt = Runtime.open(db=str(db))
    found = rt.store.get_case(case["id"])
    assert found["state"] == "routed"
    routed = [e for e in found["events"] if e["action"] == "routed"][-1]
    assert routed["actor"] == "analyst:ana"
    assert found["routes"][0]["reason"] == "found by hand"
    rt.close()


# -- operations without traps --------------------------------------------------------------------
def test_commands_never_create_a_database_by_accident(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NTD_DISABLE_PLUGINS",
                                                           "NTD_DATABASE_URL")}

    def ntd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    db = tmp_path / "typo.db"
    for args in (["recheck", "--due", "--json"], ["cases"], ["notices"], ["stats", "--json"]):
        out = ntd("--db", str(db), *args)
        assert out.returncode == 2 and f"no database at {db}" in out.stderr, out.stderr
        assert not db.exists()
    assert ntd("--db", str(db), "db", "migrate").returncode == 0
    assert ntd("--db", str(db), "cases").returncode == 0
    fresh = tmp_path / "fresh.db"
    src = tmp_path / "urls.txt"
    src.write_text("http://first.test/a.html\n")
    assert ntd("--db", str(fresh), "submit", str(src)).returncode == 0
    assert fresh.exists()
