"""The storage layer on both backends: every test runs on SQLite and on PostgreSQL.

PostgreSQL runs are skipped with the reason when no server is reachable (``tests/pg.py``), and
fail instead when ``NTD_REQUIRE_POSTGRES=1``. Each PostgreSQL test gets a fresh schema.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import clock
from engine.errors import InputError, StorageError
from engine.models import Item, StageResult
from engine.store import Commit, IntakeRow, Store, open_store
from engine.store.copy import copy_database
from engine.store.migrations import MIGRATIONS
from engine.workers import beat, list_workers, register_worker, unregister_worker
from tests.conftest import ntd_json, run_ntd
from tests.pg import pg_url  # noqa: F401  (fixture)

T0 = "2026-03-01T10:00:00.000000Z"


def at(seconds: float) -> str:
    """T0 plus ``seconds``."""
    return clock.fmt(clock.parse(T0) + timedelta(seconds=seconds))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL of each backend (a fresh file, or a fresh PostgreSQL schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ntd.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An opened, migrated store of each backend."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


def rows(n: int, prefix: str = "http://h.example/") -> list[IntakeRow]:
    return [IntakeRow(raw_url=f"{prefix}{i}", canonical_url=f"{prefix}{i}", host="h.example",
                      domain="h.example", line=i + 1) for i in range(n)]


def intake(store: Store, batch_rows: list[IntakeRow], when: str = T0,
           channel: str = "analyst") -> tuple[str, ...]:
    batch = store.create_batch(channel=channel, source="test", at=when)
    out = store.add_reports(batch, channel, when, batch_rows)
    store.finish_batch(batch, accepted=out.accepted, duplicates=out.duplicates, rejected=0)
    return out.case_ids


def commit(case_id: str, owner: str, result: StageResult, stage: str = "fetch") -> Commit:
    return Commit(case_id=case_id, owner=owner, stage=stage, actor="test", result=result)


def raw_execute(store: Store, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run SQL with ``?`` placeholders in one store transaction (either backend)."""
    with store.transaction() as tx:
        tx(sql, params)


# -- schema ---------------------------------------------------------------------------------------
def test_migrate_reaches_newest_version_and_is_idempotent(store: Store) -> None:
    newest = max(MIGRATIONS)
    assert newest >= 6 and store.schema_version() == newest
    assert store.migrate() == newest
    assert store.schema_version() == newest


@pytest.mark.postgres
def test_concurrent_migrations_apply_each_version_once(pg_url: str) -> None:  # noqa: F811
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            open_store(pg_url).close()
        except BaseException as exc:  # noqa: BLE001  (collected and asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = open_store(pg_url)
    try:
        assert s.schema_version() == max(MIGRATIONS)
        versions = [r["version"] for r in s.query(
            "SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, max(MIGRATIONS) + 1))
    finally:
        s.close()


# -- intake ---------------------------------------------------------------------------------------
def test_intake_opens_one_case_per_url_and_links_duplicates(store: Store) -> None:
    first = intake(store, rows(3) + rows(1))
    assert len(set(first)) == 3 and first[3] == first[0]
    again = intake(store, rows(2), when=at(5))
    assert again == first[:2]
    case = store.get_case(first[0])
    assert case is not None
    assert [r["duplicate"] for r in case["reports"]] == [False, True, True]
    assert case["events"][0]["action"] == "created"
    assert store.count_by_state() == {"new": 3}
    assert [c["id"] for c in store.list_cases(limit=2, offset=1)] == sorted(first[:3])[1:3]
    # A closed case no longer absorbs re-reports: the URL opens a new case.
    store.transition(first[0], state="dismissed", stage="assessment", actor="a",
                     action="verdict", now=at(6), expect=["new"])
    reopened = intake(store, rows(1), when=at(7))
    assert reopened[0] != first[0]
    with pytest.raises(InputError, match="needs one of"):
        store.transition(first[1], state="closed", stage="x", actor="a", action="x",
                         now=at(8), expect=["awaiting_assessment"])
    with pytest.raises(InputError):
        store.load_case("C-missing")
    assert store.get_case("C-missing") is None


# -- claims, leases, apply -----------------------------------------------------------------------
def test_claim_apply_and_lost_lease(store: Store) -> None:
    ids = intake(store, rows(5))
    got = store.claim(["new"], limit=3, owner="w1", lease_seconds=60, now=at(1))
    assert len(got) == 3
    taken = store.claim(["new"], limit=5, owner="w2", lease_seconds=60, now=at(2))
    assert sorted(taken) == [i for i in sorted(ids) if i not in got]
    assert store.due_count(["new"], at(3)) == 0
    assert store.lease_owners() == {"w1": 3, "w2": 2}
    # w1's lease expires; w3 takes the case over and commits; w1's late commit is dropped.
    case = min(got)  # the oldest (all share updated_at: lowest id)
    assert store.claim(["new"], limit=1, owner="w3", lease_seconds=60, now=at(62)) == [case]
    fetched = StageResult(state="fetched", action="fetched",
                          items=[Item(url="http://h.example/0", status=200, size=3,
                                      hashes={"md5": "a"})], data={"k": {"v": 1}})
    assert store.apply([commit(case, "w1", fetched)], at(63)) == [case]
    assert store.apply([commit(case, "w3", fetched)], at(64)) == []
    loaded = store.load_case(case)
    assert loaded.state == "fetched" and loaded.data == {"k": {"v": 1}}
    assert [i.url for i in loaded.items] == ["http://h.example/0"]
    assert [e.action for e in store.events(case)].count("fetched") == 1
    # Release and release_owners give leases back without changing state.
    rest = sorted(got)[1]
    assert store.release([rest], "w1") == 1
    assert store.release([rest], "w1") == 0
    assert store.release_owners(["w2"]) == 2
    assert store.lease_owners() == {"w1": 1}  # its third lease, expired at 61 s
    assert store.due_count(["new"], at(65)) == 4


def test_load_cases_reads_many_cases_as_load_case_reads_each(store: Store) -> None:
    ids = intake(store, rows(130))  # more than one statement's worth of ids
    [case] = store.claim(["new"], limit=1, owner="w1", lease_seconds=60, now=at(1))
    fetched = StageResult(state="fetched", action="fetched", data={"k": {"v": 2}},
                          items=[Item(url=f"http://h.example/{n}", status=200, size=n,
                                      hashes={"md5": str(n)}) for n in (2, 1)])
    assert store.apply([commit(case, "w1", fetched)], at(2)) == []
    wanted = [*ids, case, "C-missing"]
    loaded = store.load_cases(wanted)
    assert sorted(loaded) == sorted(set(ids))  # the unknown id is left out, the repeat once
    for case_id in (case, ids[0], ids[-1]):
        assert loaded[case_id] == store.load_case(case_id)
    assert [i.size for i in loaded[case].items] == [2, 1]  # in item order, as load_case
    assert store.load_cases([]) == {}


def test_an_analyst_transition_wins_over_a_worker_holding_the_case(store: Store) -> None:
    [case] = intake(store, rows(1))
    assert store.claim(["new"], limit=1, owner="w1", lease_seconds=60, now=at(1)) == [case]
    store.transition(case, state="resolved", stage="route", actor="analyst:a",
                     action="origin_known", now=at(2), expect=["new"])
    assert store.lease_owners() == {}
    late = StageResult(state="fetched", action="fetched")
    assert store.apply([commit(case, "w1", late)], at(3)) == [case]  # lost: not applied
    assert store.load_case(case).state == "resolved"


def test_retry_at_delays_and_attempts_count(store: Store) -> None:
    (case,) = intake(store, rows(1))
    assert store.claim(["new"], limit=1, owner="w", lease_seconds=60, now=at(1)) == [case]
    later = clock.parse(at(100))
    store.apply([commit(case, "w", StageResult(state="unreachable", action="unreachable",
                                               retry_at=later))], at(2))
    assert store.load_case(case).attempts == 1
    assert store.claim(["unreachable"], limit=1, owner="w", lease_seconds=60, now=at(50)) == []
    assert store.due_count(["unreachable"], at(100)) == 1
    assert store.claim(["unreachable"], limit=1, owner="w", lease_seconds=60,
                       now=at(101)) == [case]
    store.apply([commit(case, "w", StageResult(state="fetched", action="fetched"))], at(102))
    assert store.load_case(case).attempts == 0


def test_park_and_unpark_once(store: Store) -> None:
    ids = intake(store, rows(3))
    assert store.park(["new"], "fetch", at(1)) == 3
    assert store.park(["new"], "fetch", at(2)) == 0
    case = store.get_case(ids[0])
    assert case is not None and "fetch stage" in case["state_reason"]
    assert store.unpark("fetch", at(3)) == 3
    assert store.unpark("fetch", at(4)) == 0
    actions = [e.action for e in store.events(ids[0])]
    assert actions == ["created", "parked", "unparked"]


def test_events_and_audit_are_append_only(store: Store) -> None:
    (case,) = intake(store, rows(1))
    store.audit(actor="analyst:x", action="view", obj=f"case:{case}", now=at(1),
                detail={"n": 1})
    assert store.audit_log() == [{"at": at(1), "actor": "analyst:x", "action": "view",
                                  "object": f"case:{case}", "detail": {"n": 1}}]
    for table, message in (("events", "events are append-only"),
                           ("audit", "the audit log is append-only")):
        with pytest.raises((sqlite3.Error, StorageError), match=message):
            raw_execute(store, f"UPDATE {table} SET actor = 'forged'")
    assert store.events(case)[0].actor == "analyst"


# -- known-hash lists, cache, contacts -----------------------------------------------------------
def test_hashlists(store: Store) -> None:
    gen = store.hashlist_generation()
    entries = [("md5", f"{i:032x}", "A1", None, "src") for i in range(1000)]
    assert store.import_hashlist(name="l1", source="s", trust="auto", negative=False,
                                 thresholds={"phash": 6}, entries=iter(entries), now=at(0)) == 1000
    assert store.hashlist_generation() == gen + 1
    assert store.add_hashlist_entries("l1", entries[:10] + [("md5", "f" * 32, "B", "x", None)],
                                      now=at(1)) == 1
    assert store.add_hashlist_entries("l2", [("phash", "0" * 16, "A1", None, None)], now=at(2),
                                      negative=True) == 1
    lists = store.hashlists()
    assert [(h["name"], h["entries"], h["negative"]) for h in lists] == [
        ("l1", 1001, False), ("l2", 1, True)]
    assert lists[0]["thresholds"] == {"phash": 6}
    streamed = list(store.hashlist_entries())
    assert len(streamed) == 1002 and streamed[0][1:] == ("l1", "md5", "0" * 32, "A1")
    assert [e[0] for e in streamed] == sorted(e[0] for e in streamed)
    assert store.remove_hashlist("l2") and not store.remove_hashlist("l2")
    assert store.hashlist_generation() == gen + 4


def test_cache_and_contacts(store: Store) -> None:
    store.cache_put("rdap", "1.2.3.4", {"asn": 64500}, at(10))
    store.cache_put("rdap", "1.2.3.4", {"asn": 64501}, at(20))
    store.cache_put("rdap", "5.6.7.8", [1, 2], at(5))
    assert store.cache_get("rdap", "1.2.3.4", at(0)) == {"asn": 64501}
    assert store.cache_get("rdap", "1.2.3.4", at(20)) is None
    assert sorted(store.cache_items("rdap", at(1))) == [("1.2.3.4", {"asn": 64501}),
                                                         ("5.6.7.8", [1, 2])]
    first = store.contacts_add(match_kind="domain", match_value="Example.COM", scope="hoster",
                               channel="email", address="abuse@example.com", now=at(0))
    second = store.contacts_add(match_kind="asn", match_value="64500", scope="hoster",
                                channel="email", address="noc@example.net", priority=5,
                                note="n", now=at(1))
    listed = store.contacts_list()
    assert [c["id"] for c in listed] == [first, second]
    assert listed[0]["match_value"] == "example.com" and listed[1]["priority"] == 5
    assert store.contacts_remove(first) and not store.contacts_remove(first)
    store.contact_failed("Abuse@Example.com", "550", at(2))
    store.contact_failed("abuse@example.com", "551", at(3))
    assert store.contact_failures(["abuse@example.com", "x@y"]) == {"abuse@example.com": 2}


# -- reporters, retention ------------------------------------------------------------------------
def chat_row(i: int, reporter_id: str) -> IntakeRow:
    return IntakeRow(raw_url=f"http://chat.example/{i}", canonical_url=f"http://chat.example/{i}",
                     host="chat.example", domain="chat.example", line=1,
                     reporter=(reporter_id, "signal", f"phone{i}", f"user{i}", b"\x00sealed\xff",
                               b"wrapped", i == 0))


def test_reporters_feedback_purge_and_anonymise(store: Store) -> None:
    c0, c1 = intake(store, [chat_row(0, "R0"), chat_row(1, "R1")], channel="chat")
    rec = store.reporters(phone_mac="phone0")
    assert len(rec) == 1 and rec[0]["sealed"] == b"\x00sealed\xff"
    assert rec[0]["wrapped_key"] == b"wrapped" and rec[0]["contact_police"] == 1
    assert store.reporters() == []
    assert store.feedback_due() == []
    for case in (c0, c1):
        store.transition(case, state="closed", stage="assessment", actor="a", action="verdict",
                         now=at(10), detail={"verdict": "not_illegal", "note": "secret"})
    due = store.feedback_due()
    assert [(d["case_id"], d["state"]) for d in due] == sorted(
        [(c0, "closed"), (c1, "closed")], key=lambda d: d[0]) or len(due) == 2
    assert store.restrict_reporters(["R1"], True) == 1
    assert [d["case_id"] for d in store.feedback_due()] == [c0]
    assert store.feedback_sent(c0, at(11)) == 1
    assert store.purge_reporters(now=at(12), max_hours=1, dry_run=True) == 1
    assert store.purge_reporters(now=at(12), max_hours=1) == 1
    assert store.reporters(case_id=c0) == []
    assert len(store.reporters(case_id=c1)) == 1  # restricted: frozen, not purged
    assert store.anonymise_cases(now=at(86400 * 40), closed_days=30, max_days=365,
                                 dry_run=True) == 2
    assert store.anonymise_cases(now=at(86400 * 40), closed_days=30, max_days=365) == 2
    case = store.get_case(c1)
    assert case is not None and case["state"] == "anonymised"
    assert case["canonical_url"] == "http://chat.example/"
    assert all("note" not in e["detail"] for e in case["events"])
    assert case["events"][-1]["action"] == "anonymised"
    assert store.reporters(case_id=c1) == []
    assert store.erase_reporters(["nope"]) == 0
    store.vacuum()


# -- notices --------------------------------------------------------------------------------------
def notice_action(case_id: str | None, recipient: str = "abuse@hoster.example") -> dict[str, Any]:
    return {"kind": "notice", "channel": "email", "recipient": recipient,
            "recipient_kind": "hoster", "language": "en", "country": "NL", "url_count": 1,
            "case_id": case_id}


def test_notice_aggregation_claims_and_outcomes(store: Store, store_url: str) -> None:
    ids = intake(store, rows(3))
    assert store.queue_notice_actions([notice_action(i) for i in ids] +
                                      [notice_action(None, "other@x.example")], now=at(0)) == 4
    assert store.notice_work_due(now=at(1), window_seconds=60) == 0
    assert store.aggregate_notices(now=at(1), window_seconds=60, max_urls=10,
                                   sendable=["email"]) == []
    assert store.notice_work_due(now=at(61), window_seconds=60) == 4
    created = store.aggregate_notices(now=at(61), window_seconds=60, max_urls=2,
                                      sendable=["email"])
    assert len(created) == 3 and store.notice_counts() == {"queued": 3}
    # Two senders claim at once (separate connections): each notice goes to exactly one.
    other = open_store(store_url)
    try:
        a = store.claim_notices(owner="s1", limit=2, now=at(62), lease_seconds=30)
        b = other.claim_notices(owner="s2", limit=5, now=at(62), lease_seconds=30)
    finally:
        other.close()
    assert len(a) == 2 and len(b) == 1
    assert not {n["id"] for n in a} & {n["id"] for n in b}
    assert all(n["state"] == "sending" and n["attempts"] == 1 for n in a + b)
    assert sum(len(n["actions"]) for n in a + b) == 4
    assert sorted(store.notice_lease_owners()) == ["s1", "s2"]
    owner = {n["id"]: "s1" for n in a} | {n["id"]: "s2" for n in b}
    claimed = sorted(a + b, key=lambda n: not any(x["case_id"] for x in n["actions"]))
    n1, n2, n3 = (n["id"] for n in claimed)  # n1 carries case actions
    assert store.notice_sent(n1, owner=owner[n1], now=at(63), receipt="250 ok")
    assert not store.notice_sent(n1, owner=owner[n1], now=at(63), receipt="again")
    assert not store.notice_sent(n2, owner="s9", now=at(63), receipt="not mine")
    assert store.notice_retry(n2, owner=owner[n2], now=at(63), next_attempt_at=at(120),
                              error="421")
    assert store.notice_failed(n3, owner=owner[n3], now=at(63), error="550")
    assert store.notice_counts() == {"failed": 1, "queued": 1, "sent": 1}
    assert store.claim_notices(owner="s1", limit=5, now=at(100), lease_seconds=30) == []
    assert store.retry_notice(n3, now=at(64))
    assert not store.retry_notice(n1, now=at(64))
    listed = store.list_notices()
    assert len(listed) == 3 and all("actions" not in n for n in listed)
    assert sorted(c for n in listed for c in n["case_ids"]) == sorted(ids)
    assert store.list_notices(state="sent", limit=1)[0]["id"] == n1
    got = store.get_notice(n1)
    assert got is not None and got["case_ids"] == sorted(x["case_id"] for x in got["actions"]
                                                         if x["case_id"])
    sent_case = got["case_ids"][0]
    assert "notice_sent" in [e.action for e in store.events(sent_case)]
    assert store.get_notice("nope") is None
    # A dead sender's lease is dropped: its notice is claimable at once.
    again = store.claim_notices(owner="s3", limit=5, now=at(130), lease_seconds=30)
    assert {n["id"] for n in again} == {n2, n3}
    assert store.release_notice_owners(["s3"]) == 2
    assert len(store.claim_notices(owner="s4", limit=5, now=at(131), lease_seconds=30)) == 2


# -- statistics -----------------------------------------------------------------------------------
def test_stats_queries(store: Store) -> None:
    ids = intake(store, rows(3))
    intake(store, rows(1), when=at(5))
    store.transition(ids[0], state="confirmed", stage="match", actor="m", action="matched",
                     now=at(10), data={"match": {"category": "A1"},
                                       "resolution": {"country": "NL", "asn": 64500,
                                                      "org": "Hoster"}})
    store.transition(ids[1], state="escalated", stage="recheck", actor="r",
                     action="escalated", now=at(11))
    assert store.stats_notices_available()
    by_day = [dict(r) for r in store.stats_reports_by_day("0000", "9999")]
    assert by_day == [{"day": "2026-03-01", "channel": "analyst", "duplicate": 0, "n": 3},
                      {"day": "2026-03-01", "channel": "analyst", "duplicate": 1, "n": 1}]
    facts = sorted((dict(r) for r in store.stats_case_facts("0000", "9999")),
                   key=lambda r: (r["matched"], r["escalations"]))
    assert len(facts) == 3
    top = facts[-1]
    assert (top["matched"], top["has_match"], top["match_category"], top["asn"],
            top["country"]) == (1, 1, "A1", 64500, "NL")
    assert facts[1]["escalations"] == 1 and facts[0]["has_match"] == 0
    assert store.stats_escalation_events("0000", "9999") == 1
    assert store.stats_notices_sent("0000", "9999") == {}
    assert store.stats_first_activity() == T0


def test_engine_stats_compute_runs_on_the_backend(store: Store) -> None:
    from engine import stats

    intake(store, rows(2))
    result = stats.compute(store, stats.parse_period(None, None), min_count=0)
    assert result is not None


# -- worker registry ------------------------------------------------------------------------------
def test_worker_heartbeat_extends_leases_and_reclaims_dead_workers(store: Store) -> None:
    intake(store, rows(4))
    w1 = register_worker(store, "w1", now=at(0), lease_seconds=30, interval=10)
    w2 = register_worker(store, "w2", now=at(0), lease_seconds=30, interval=10)
    assert len(store.claim(["new"], limit=2, owner="w1", lease_seconds=30, now=at(1))) == 2
    assert len(store.claim(["new"], limit=2, owner="w2", lease_seconds=30, now=at(1))) == 2
    # w1 beats and keeps its leases past their original expiry; w2 stopped beating.
    assert beat(store, w1, now=at(20))["extended"] == 2
    assert store.due_count(["new"], at(40)) == 2  # w2's expired, w1's extended to 50 s
    found, others = list_workers(store, now=at(25))
    assert [(w.id, w.live, w.leases) for w in found] == [("w1", True, 2), ("w2", True, 2)]
    assert others == {}
    result = beat(store, w1, now=at(45))  # w2's last beat at 0 s is older than 3 × 10 s
    assert result["dead"] == 1 and result["reclaimed"] == 2
    assert store.lease_owners() == {"w1": 2}
    found, _ = list_workers(store, now=at(46))
    assert [w.id for w in found] == ["w1"]
    unregister_worker(store, w1)
    found, others = list_workers(store, now=at(47))
    assert found == [] and others == {"w1": 2}
    del w2


def test_restarted_worker_does_not_keep_its_dead_incarnations_leases(store: Store) -> None:
    intake(store, rows(2))
    old = register_worker(store, "w1", now=at(0), lease_seconds=30, interval=10)
    store.claim(["new"], limit=1, owner="w1", lease_seconds=30, now=at(1))
    beat(store, old, now=at(5))  # lease now ends at 35 s; then the process is killed
    new = register_worker(store, "w1", now=at(8), lease_seconds=30, interval=10)
    store.claim(["new"], limit=1, owner="w1", lease_seconds=30, now=at(9))
    assert beat(store, new, now=at(20))["extended"] == 1  # only the lease it took itself
    assert store.due_count(["new"], at(36)) == 1
    # Registering with release_previous drops every lease of the id at once.
    again = register_worker(store, "w1", now=at(37), lease_seconds=30, release_previous=True)
    assert again.released == 2 and store.lease_owners() == {}


# -- db copy and commands -------------------------------------------------------------------------
def populate(url: str) -> dict[str, Any]:
    s = open_store(url)
    try:
        intake(s, rows(20) + [chat_row(0, "R0")], channel="chat")
        first, *_ = s.claim(["new"], limit=5, owner="w1", lease_seconds=60, now=at(1))
        assert s.apply([commit(first, "w1", StageResult(
            state="fetched", action="fetched", items=[Item(url="http://x/1", status=200)],
            data={"d": 1}, outbox=[notice_action(first)]))], at(2)) == []
        s.import_hashlist(name="l", source=None, trust="auto", negative=False,
                          thresholds={}, entries=[("md5", "0" * 32, "A1", None, None)],
                          now=at(3))
        s.cache_put("dns", "h", ["1.2.3.4"], at(999))
        s.contacts_add(match_kind="domain", match_value="h", scope="hoster", channel="email",
                       address="a@h", now=at(3))
        s.contact_failed("a@h", "550", at(3))
        s.aggregate_notices(now=at(999), window_seconds=1, max_urls=5, sendable=["email"])
        s.audit(actor="x", action="view", obj="case", now=at(4))
        s.transition(first, state="confirmed", stage="match", actor="m", action="matched",
                     now=at(5), data={"match": {"category": "A1"},
                                      "resolution": {"country": "NL", "asn": 64500}})
        return {"cases": s.count_by_state(), "case": s.get_case(first),
                "reporter": s.reporters(phone_mac="phone0")}
    finally:
        s.close()


@pytest.mark.parametrize("source_backend", ["sqlite", "same"])
def test_db_copy_preserves_everything(store_url: str, tmp_path: Path,
                                      source_backend: str) -> None:
    source = f"sqlite:///{tmp_path / 'src.db'}" if source_backend == "sqlite" else store_url
    target = store_url if source_backend == "sqlite" else f"sqlite:///{tmp_path / 'dst.db'}"
    before = populate(source)
    report = copy_database(source, target)
    assert report.ok
    counts = {t.table: t.source_rows for t in report.tables}
    assert counts["cases"] == 21 and counts["reporters"] == 1 and counts["notices"] == 1
    assert all(t.source_checksum == t.target_checksum for t in report.tables)
    # The same data gives the same statistics on both backends (query parity).
    from engine import stats

    period = stats.parse_period(None, None)
    a, b = open_store(source), open_store(target)
    try:
        key = lambda r: json.dumps(dict(r), sort_keys=True)  # noqa: E731
        assert sorted(map(key, a.stats_case_facts("0000", "9999"))) == \
            sorted(map(key, b.stats_case_facts("0000", "9999")))
        assert stats.compute(a, period, min_count=0).summary == \
            stats.compute(b, period, min_count=0).summary
    finally:
        a.close()
        b.close()
    copied = open_store(target)
    try:
        assert copied.count_by_state() == before["cases"]
        assert copied.get_case(before["case"]["id"]) == before["case"]
        reporter = copied.reporters(phone_mac="phone0")
        assert reporter == before["reporter"]
        # Identity columns continue after the copied ids.
        (new_case,) = intake(copied, rows(1, "http://fresh.example/"))
        report_ids = [r["id"] for r in copied.get_case(new_case)["reports"]]  # type: ignore[index]
        assert report_ids[0] > max(r["id"] for r in before["case"]["reports"])
    finally:
        copied.close()
    with pytest.raises(InputError, match="not empty"):
        copy_database(source, target)


def test_db_copy_refuses_missing_source(tmp_path: Path, store_url: str) -> None:
    with pytest.raises(InputError, match="no database file"):
        copy_database(str(tmp_path / "missing.db"), store_url)


def test_db_and_workers_commands(store_url: str, tmp_path: Path) -> None:
    migrated = ntd_json("--db", store_url, "db", "migrate")
    assert migrated["version"] == max(MIGRATIONS)  # type: ignore[index]
    s = open_store(store_url)
    try:
        intake(s, rows(3))
        s.claim(["new"], limit=2, owner="loner", lease_seconds=3600,
                now=clock.Clock().now_text())
        register_worker(s, "w-live", now=clock.Clock().now_text(), lease_seconds=30)
    finally:
        s.close()
    listed = ntd_json("--db", store_url, "workers")
    assert [w["id"] for w in listed["workers"]] == ["w-live"]  # type: ignore[index]
    assert listed["unregistered_lease_owners"] == {"loner": 2}  # type: ignore[index]
    target = tmp_path / "copy.db"
    copied = ntd_json("db", "copy", "--from", store_url, "--to", f"sqlite:///{target}")
    assert copied["ok"] and copied["rows"] > 0  # type: ignore[index]
    assert "password" not in json.dumps(copied)
    refused = run_ntd("db", "copy", "--from", store_url, "--to", f"sqlite:///{target}")
    assert refused.returncode == 2 and "not empty" in refused.stderr
