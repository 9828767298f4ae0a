"""Hash sources (HMA, EOKM HashDB-style, NCMEC XML, VIC JSON) and match-quality controls
(disabled entries, the flood guard): each source against its loopback fake, re-syncs that
transfer only what changed, credentials never in logs, the store on both backends."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError
from engine.lab.eokm_fake import FakeEOKM
from engine.lab.hash_exchange_files import ncmec_xml, random_hex, synthetic_vic, vic_json
from engine.lab.hma_fake import FakeHMA
from engine.models import Item
from engine.store import Store, open_store
from engine.testing import make_case, make_context
from plugins.match import ntd_match, ntd_service
from plugins.match.sources import close_sources, remote_matches, sync_source
from tests.conftest import run_ntd
from tests.pg import pg_url  # noqa: F401  (fixture)

T0 = "2026-03-01T10:00:00.000000Z"
TOKEN = "hma-s3cret-token-value"
EOKM_KEY = "eokm-s3cret-key-value"
RNG = random.Random(24)


def pdq() -> str:
    return random_hex(RNG, 64)


def md5() -> str:
    return random_hex(RNG, 32)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An opened, migrated store of each backend."""
    url = (f"sqlite:///{tmp_path / 'ntd.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()


class _Capture(logging.Handler):
    """Every record of the ``ntd`` loggers, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs() -> Iterator[_Capture]:
    """All log output at DEBUG, captured on the ``ntd`` logger itself (``engine.logs`` may
    have stopped it propagating to the root logger caplog listens on) and on the root."""
    capture = _Capture()
    loggers = [logging.getLogger("ntd"), logging.getLogger()]  # ntd's, and everyone else's
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(capture)
            logger.setLevel(level)


@pytest.fixture
def db(db_path: Path) -> Path:
    """A migrated SQLite database file (the CLI tests' --db)."""
    open_store(f"sqlite:///{db_path}").close()
    return db_path


def lab_config(port: int, **sections: dict[str, Any]) -> dict[str, Any]:
    return {"lab": {"allow_private_networks": True},
            "fetch": {"allowed_ports": [port]}, **sections}


def context(store: Store | None = None, **config: Any) -> Any:
    return make_context(builtins=["fetch", "hashmatch", "hashsources"], config=config, store=store)


# -- the store, both backends ----------------------------------------------------------------


def test_sync_hashlist_is_a_diff_keyed_by_the_sources_ids(store: Store) -> None:
    a, b, c = md5(), pdq(), md5()
    rows = [("1", "md5", a, "baseline", None), ("1", "pdq", b, "baseline", None),
            ("2", "md5", c, "national", None)]
    first = store.sync_hashlist("hma-X", source="hma", trust="auto", entries=rows,
                                cursor="t1", state_source="hma", now=T0)
    assert first == {"added": 3, "updated": 0, "removed": 0, "unchanged": 0}
    ids = {e[3]: e[0] for e in store.hashlist_entries()}
    generation = store.hashlist_generation()
    again = store.sync_hashlist("hma-X", source="hma", trust="auto", entries=rows,
                                cursor="t2", state_source="hma", now=T0)
    assert again == {"added": 0, "updated": 0, "removed": 0, "unchanged": 3}
    assert store.hashlist_generation() == generation  # nothing changed: no matcher reload
    assert store.hashsource_states()[0]["cursor"] == "t2"
    # content 1 lost its PDQ and changed category; content 2 was deleted at the source
    third = store.sync_hashlist("hma-X", source="hma", trust="auto",
                                entries=[("1", "md5", a, "national", None)], removed=["2"],
                                now=T0)
    assert third == {"added": 0, "updated": 1, "removed": 2, "unchanged": 0}
    assert [(e[0], e[4]) for e in store.hashlist_entries()] == [(ids[a], "national")]
    assert store.hashlists()[0]["entries"] == 1
    assert store.hashlist_generation() > generation


def test_disabled_entry_leaves_the_matcher_and_stays_off_across_resyncs(store: Store) -> None:
    a, b = md5(), md5()
    rows = [("1", "md5", a, "baseline", None), ("2", "md5", b, "baseline", None)]
    store.sync_hashlist("l", source="s", trust="auto", entries=rows, now=T0)
    assert store.set_hash_disabled("l", a.upper(), True) == 1
    assert store.set_hash_disabled("l", a, True) == 0  # already off
    assert [e[3] for e in store.hashlist_entries()] == [b]
    store.sync_hashlist("l", source="s", trust="auto", entries=rows, now=T0)
    assert [e[3] for e in store.hashlist_entries()] == [b]
    assert store.disabled_count("l") == 1
    assert store.set_hash_disabled("l", a, False) == 1
    assert sorted(e[3] for e in store.hashlist_entries()) == sorted([a, b])


def test_flood_guard_counts_distinct_urls_within_the_window(store: Store) -> None:
    store.sync_hashlist("l", source="s", trust="auto",
                        entries=[("1", "md5", md5(), "baseline", None)], now=T0)
    (entry_id, *_), = store.hashlist_entries()
    since = "2026-03-01T09:00:00.000000Z"
    for n in range(3):
        assert store.record_entry_hits([entry_id], f"https://h.test/{n}", now=T0,
                                       since=since, limit=3) == {}
    # the same URL again is not a new one
    assert store.record_entry_hits([entry_id], "https://h.test/0", now=T0, since=since,
                                   limit=3) == {}
    assert store.record_entry_hits([entry_id], "https://h.test/3", now=T0, since=since,
                                   limit=3) == {entry_id: 4}
    # hits older than the window drop out
    later = "2026-03-01T12:00:00.000000Z"
    assert store.record_entry_hits([entry_id], "https://h.test/4", now=later,
                                   since="2026-03-01T11:00:00.000000Z", limit=3) == {}
    assert store.hold_entries({entry_id: 4}, now=T0) == 1
    assert store.hold_entries({entry_id: 4}, now=T0) == 0
    held = store.held_entries()
    assert held == [{"entry_id": entry_id, "list": "l", "hash_type": "md5",
                     "category": "baseline", "urls": 4, "held_at": T0}]
    assert "hash" not in held[0]
    assert store.held_entry_ids() == {entry_id}
    assert store.release_entry(entry_id) and not store.release_entry(entry_id)
    assert store.held_entries() == []


# -- HMA -------------------------------------------------------------------------------------


@pytest.fixture
async def hma(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NTD_HMA_TOKEN", TOKEN)
    fake = await FakeHMA(banks=("TEST_BANK", "OTHER_BANK"), credential=f"Bearer {TOKEN}").start()
    yield fake
    await fake.close()


def hma_section(fake: FakeHMA, **extra: Any) -> dict[str, Any]:
    return {"base_url": fake.base_url, "banks": ["TEST_BANK"], "token_env": "NTD_HMA_TOKEN",
            "page_size": 10, **extra}


async def test_hma_sync_transfers_only_what_changed(hma: FakeHMA,
                                                    logs: _Capture) -> None:
    ids = [hma.add("TEST_BANK", {"pdq": pdq(), "video_md5": md5()}) for _ in range(25)]
    hma.add("TEST_BANK", {"vpdq": "frames-as-HMA-sends-them", "tmk_pdqf": "x"})
    hma.add("OTHER_BANK", {"pdq": pdq()})  # not configured: never asked for
    ctx = context(**lab_config(hma.port, **{"hashsource.hma": hma_section(hma)}))
    try:
        first = await sync_source(ctx, "hma")
        pages = hma.count("/c/bank/TEST_BANK/content")
        assert pages == 3 and first["requests"] == 3  # 26 contents, pages of 10
        (report,) = first["lists"]
        assert report["list"] == "hma-TEST_BANK" and report["transferred"] == 26
        assert report["added"] == 51  # 25 PDQ + 25 MD5 + 1 vPDQ stored as it came
        assert report["notes"] == ["1 tmk_pdqf signal(s) skipped (no ntd hash type)"]
        generation = await ctx.store.hashlist_generation()

        second = await sync_source(ctx, "hma")
        assert hma.count("/c/bank/TEST_BANK/content") - pages == 1 == second["requests"]
        assert second["lists"][0]["transferred"] == 0
        assert await ctx.store.hashlist_generation() == generation

        new_pdq = pdq()
        hma.update(ids[0], {"pdq": new_pdq})
        hma.delete(ids[1])
        hma.disable(ids[2])
        hma.add("TEST_BANK", {"md5": md5()})
        third = await sync_source(ctx, "hma")
        assert third["requests"] == 1
        row = third["lists"][0]
        assert (row["transferred"], row["added"], row["removed"]) == (4, 2, 6)
        assert sorted(hma.requests[-1].query) == ["include_signals", "page_size", "page_token"]
        lists = {r["name"]: r for r in await ctx.store.hashlists()}
        assert lists["hma-TEST_BANK"]["entries"] == 51 - 6 + 2
        assert "hma-OTHER_BANK" not in lists
        # --full reads the whole bank again and agrees with the incremental result
        full = await sync_source(ctx, "hma", full=True)
        assert full["requests"] == 3 and full["lists"][0]["added"] == 0
        assert full["lists"][0]["removed"] == 0
    finally:
        await close_sources(ctx)
        await ctx.aclose()
    assert all(r.credential == f"Bearer {TOKEN}" for r in hma.requests)
    assert TOKEN not in logs.text
    assert "hma-TEST_BANK" in logs.text  # the sync did log (counts only)


async def test_hma_wrong_token_fails_without_showing_it(hma: FakeHMA,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        logs: _Capture,
                                                        ) -> None:
    monkeypatch.setenv("NTD_HMA_TOKEN", "wrong-" + TOKEN)
    ctx = context(**lab_config(hma.port, **{"hashsource.hma": hma_section(hma)}))
    try:
        with pytest.raises(Exception, match="refused \\(HTTP 401\\)") as info:
            await sync_source(ctx, "hma")
        assert TOKEN not in str(info.value)
    finally:
        await close_sources(ctx)
        await ctx.aclose()
    monkeypatch.delenv("NTD_HMA_TOKEN")
    ctx = context(**lab_config(hma.port, **{"hashsource.hma": hma_section(hma)}))
    with pytest.raises(ConfigError, match="NTD_HMA_TOKEN is not set"):
        await sync_source(ctx, "hma")
    await ctx.aclose()
    assert TOKEN not in logs.text


async def test_hma_remote_lookup_confirms_at_match_time(hma: FakeHMA) -> None:
    listed = pdq()
    hma.add("TEST_BANK", {"pdq": listed})
    near = f"{int(listed, 16) ^ 0b111:064x}"  # 3 bits away
    section = hma_section(hma, remote_lookup=True, trust="auto", lookup_types=["pdq"])
    ctx = context(**lab_config(hma.port, **{"hashsource.hma": section}))
    try:
        item = Item(url="https://img.test/a.jpg", kind="media",
                    hashes={"pdq": near, "pdq_quality": 100})
        result = await ntd_match(make_case("https://site.test/p", state="fetched",
                                           items=[item]), ctx)
        assert result.state == "confirmed"
        assert result.detail["list"] == "hma-TEST_BANK" and result.detail["distance"] == 3
        other = Item(url="https://img.test/b.jpg", kind="media",
                     hashes={"pdq": pdq(), "pdq_quality": 100})
        assert await remote_matches(ctx, [other]) == {}
    finally:
        await close_sources(ctx)
        await ctx.aclose()
    lookups = [r for r in hma.requests if r.path == "/m/lookup"]
    assert lookups[0].query == {"signal_type": "pdq", "signal": near, "banks": "TEST_BANK"}


async def test_daemon_syncs_hash_sources_on_schedule(hma: FakeHMA) -> None:
    hma.add("TEST_BANK", {"pdq": pdq()})
    ctx = context(**lab_config(hma.port, **{"hashsource.hma": hma_section(hma)}))
    stop = asyncio.Event()
    assert ntd_service(ctx, stop) is None  # not a daemon run: nothing scheduled
    ctx.daemon = True
    task = asyncio.ensure_future(ntd_service(ctx, stop))
    try:
        async with asyncio.timeout(30):
            while not await ctx.store.hashlists():
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
        await ctx.aclose()
    assert hma.count("/c/bank/TEST_BANK/content") == 1


# -- EOKM HashDB-style lookups ---------------------------------------------------------------


async def test_eokm_lookup_caches_answers(monkeypatch: pytest.MonkeyPatch,
                                          logs: _Capture) -> None:
    monkeypatch.setenv("NTD_EOKM_API_KEY", EOKM_KEY)
    fake = await FakeEOKM(api_key=EOKM_KEY).start()
    known, unknown = md5(), md5()
    fake.known[known] = "national"
    ctx = context(lab={"allow_private_networks": True}, **{"hashsource.eokm": {
        "base_url": fake.base_url, "trust": "auto", "allowed_ports": [fake.port]}})
    try:
        items = [Item(url="https://img.test/k.jpg", kind="media", hashes={"md5": known}),
                 Item(url="https://img.test/u.jpg", kind="media", hashes={"md5": unknown})]
        first = await remote_matches(ctx, items)
        assert first == {"https://img.test/k.jpg": [{
            "list": "eokm", "hash_type": "md5", "distance": 0, "category": "national",
            "trust": "auto"}]}
        assert fake.count("/v1/check") == 2
        assert await remote_matches(ctx, items) == first  # both answers come from the cache
        assert fake.count("/v1/check") == 2
        result = await ntd_match(make_case("https://site.test/p", state="fetched",
                                           items=items), ctx)
        assert result.state == "confirmed" and result.detail["list"] == "eokm"
        assert fake.count("/v1/check") == 2
        cached = dict(await ctx.store.cache_items("eokm", ctx.clock.now_text()))
        assert cached == {known: {"known": True, "category": "national"},
                          unknown: {"known": False, "category": None}}
    finally:
        await close_sources(ctx)
        await ctx.aclose()
        await fake.close()
    assert {r.credential for r in fake.requests} == {EOKM_KEY}
    assert EOKM_KEY not in logs.text


async def test_eokm_failure_leaves_the_case_to_the_analyst(
        monkeypatch: pytest.MonkeyPatch, logs: _Capture) -> None:
    monkeypatch.setenv("NTD_EOKM_API_KEY", "not-the-key")
    fake = await FakeEOKM(api_key=EOKM_KEY).start()
    ctx = context(**lab_config(fake.port, **{"hashsource.eokm": {"base_url": fake.base_url}}))
    try:
        items = [Item(url="https://img.test/k.jpg", kind="media", hashes={"md5": md5()})]
        result = await ntd_match(make_case("https://site.test/p", state="fetched",
                                           items=items), ctx)
        assert result.state == "awaiting_assessment"
        assert "eokm: POST /v1/check: refused (HTTP 401)" in logs.text
        assert "not-the-key" not in logs.text
    finally:
        await close_sources(ctx)
        await ctx.aclose()
        await fake.close()


# -- files -----------------------------------------------------------------------------------


def test_ncmec_xml_import_maps_categories_and_is_idempotent(tmp_path: Path,
                                                            db: Path) -> None:
    images = [{"id": f"image{i}", "classification": c, "md5": md5(), "sha1": random_hex(RNG, 40),
               "pdna": "a1" * 20}
              for i, c in enumerate(["A1", "A2", "B1", "B2", "C9"])]
    images.append({"id": "image9", "md5": md5()})  # no classification: default category
    path = tmp_path / "ncmec.xml"
    path.write_text(ncmec_xml(images, videos=[{"id": "video1", "md5": md5()}]))
    first = run_ntd("hashlist", "import", str(path), "--format", "ncmec-xml", "--json",
                    db=db)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["list"] == "ncmec" and report["added"] == 4 * 2 + 1 + 1
    assert "1 skipped: classification C9" in report["notes"]
    again = json.loads(run_ntd("hashlist", "import", str(path), "--format", "ncmec-xml",
                               "--json", db=db).stdout)
    assert (again["added"], again["removed"], again["unchanged"]) == (0, 0, 10)
    store = open_store(f"sqlite:///{db}")
    try:
        categories = sorted({e[4] for e in store.hashlist_entries()})
        assert categories == ["baseline", "national"]
        # a later window deletes one image
        path.write_text(ncmec_xml([], deleted=["image0"]))
        run_ntd("hashlist", "import", str(path), "--format", "ncmec-xml", db=db)
        assert store.hashlists()[0]["entries"] == 8
    finally:
        store.close()


def test_xml_with_a_doctype_is_refused(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "bomb.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "aaaa">]>'
                    '<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">'
                    "&a;</queryResult>")
    result = run_ntd("hashlist", "import", str(path), "--format", "ncmec-xml", db=db)
    assert result.returncode == 2 and "document type declaration" in result.stderr


def test_vic_json_import_maps_categories_and_reimports_only_changes(tmp_path: Path,
                                                                    db: Path) -> None:
    records = synthetic_vic(20)
    records[0]["Category"] = 2
    records[1]["Category"] = 0  # uncategorised: not imported
    path = tmp_path / "vic.json"
    path.write_text(vic_json(records))
    out = run_ntd("hashlist", "import", str(path), "--format", "vic-json", "--name", "caid",
                  "--trust", "auto", db=db)
    assert out.returncode == 0, out.stderr
    assert "list 'caid' from vic-json: 38 added" in out.stdout
    assert "1 skipped: category 0" in out.stdout
    records[2]["Category"] = 2
    del records[3]
    path.write_text(vic_json(records))
    out = run_ntd("hashlist", "import", str(path), "--format", "vic-json", "--name", "caid",
                  "--trust", "auto", db=db)
    assert "0 added, 2 updated, 2 removed, 34 unchanged" in out.stdout
    bad = run_ntd("hashlist", "import", str(path), "--format", "stix", db=db)
    assert bad.returncode == 2 and "ncmec-xml, vic-json" in bad.stderr


# -- disable, enable, flood guard ------------------------------------------------------------


def test_disable_and_enable_commands(tmp_path: Path, db: Path) -> None:
    listed = md5()
    path = tmp_path / "l.csv"
    path.write_text(f"hash_type,hash,category\nmd5,{listed},baseline\n")
    assert run_ntd("hashlist", "import", str(path), "--name", "mine", "--trust", "auto",
                   db=db).returncode == 0
    out = run_ntd("hashlist", "disable", "mine", listed, "--admin", "ops", db=db)
    assert out.returncode == 0 and "disabled 1 entry of list 'mine'" in out.stdout
    assert listed not in out.stdout
    again = run_ntd("hashlist", "disable", "mine", listed, db=db)
    assert again.returncode == 2 and "no enabled entry" in again.stderr
    assert run_ntd("hashlist", "disable", "nope", listed, db=db).returncode == 2
    assert "enabled 1 entry" in run_ntd("hashlist", "enable", "mine", listed,
                                        db=db).stdout
    audit = run_ntd("audit", "--json", db=db).stdout
    assert "hash_disabled" in audit and listed not in audit


async def test_flood_guard_holds_an_entry_matching_too_many_urls(tmp_path: Path) -> None:
    listed = md5()
    ctx = context(match={"flood_guard_per_hour": 2})
    try:
        await ctx.store.sync_hashlist("mine", source="test", trust="auto",
                                      entries=[("1", "md5", listed, "baseline", None)], now=T0)

        async def case(n: int) -> Any:
            item = Item(url=f"https://img{n}.test/x.jpg", kind="media", hashes={"md5": listed})
            return await ntd_match(make_case(f"https://site{n}.test/p", state="fetched",
                                             items=[item]), ctx)

        assert [(await case(n)).state for n in range(2)] == ["confirmed"] * 2
        tipping = await case(2)
        assert tipping.state == "awaiting_assessment"
        assert tipping.detail["flood_guard_held"] == 1 and tipping.detail["held_matches"] == 1
        assert tipping.items[0].matches[0]["list"] == "mine"
        (held,) = await ctx.store.held_entries()
        assert held["urls"] == 3
        later = await case(3)
        assert later.state == "awaiting_assessment" and later.detail["held_matches"] == 1
        assert await ctx.store.release_entry(held["entry_id"])
        assert (await case(4)).state == "confirmed"
    finally:
        await ctx.aclose()


def test_held_and_release_commands(db: Path) -> None:
    store = open_store(f"sqlite:///{db}")
    try:
        store.sync_hashlist("mine", source="t", trust="auto",
                            entries=[("1", "md5", md5(), "baseline", None)], now=T0)
        (entry_id, *_), = store.hashlist_entries()
        store.hold_entries({entry_id: 150}, now=T0)
    finally:
        store.close()
    listing = run_ntd("hashlist", "held", db=db)
    assert f"#{entry_id}" in listing.stdout and "150 URLs/h" in listing.stdout
    out = run_ntd("hashlist", "release", str(entry_id), "--admin", "ops", db=db)
    assert out.returncode == 0 and f"released entry #{entry_id}" in out.stdout
    assert run_ntd("hashlist", "release", str(entry_id), db=db).returncode == 2
    assert "no held entries" in run_ntd("hashlist", "held", db=db).stdout


def test_source_sections_are_validated_by_their_schema() -> None:
    with pytest.raises(ConfigError, match=r"\[hashsource.hma\] bnaks: unknown key"):
        context(**{"hashsource.hma": {"bnaks": ["A"]}})
    with pytest.raises(ConfigError, match="CAPS_AND_UNDERSCORE"):
        context(**{"hashsource.hma": {"banks": ["lower"]}})
    with pytest.raises(ConfigError, match="not an ntd category"):
        context(**{"hashsource.vic": {"categories": {"1": "Category A"}}})


def test_sync_names_unknown_and_unconfigured_sources(db: Path) -> None:
    out = run_ntd("hashlist", "sync", "nope", db=db)
    assert out.returncode == 2 and "no hash source 'nope'" in out.stderr
    out = run_ntd("hashlist", "sync", "hma", db=db)
    assert out.returncode == 2 and "does not sync" in out.stderr


def test_sync_command_against_the_fake(tmp_path: Path, db: Path) -> None:
    fake = FakeHMA(credential=f"Bearer {TOKEN}").start_in_thread()
    try:
        for _ in range(3):
            fake.add("TEST_BANK", {"pdq": pdq()})
        config = tmp_path / "ntd.toml"
        config.write_text(f"""
[lab]
allow_private_networks = true

[hashsource.hma]
base_url = "{fake.base_url}"
banks = ["TEST_BANK"]
token_env = "NTD_HMA_TOKEN"
allowed_ports = [{fake.port}]
""")
        env = {"NTD_HMA_TOKEN": TOKEN}
        first = run_ntd("--config", str(config), "hashlist", "sync", "hma", db=db, env=env)
        assert first.returncode == 0, first.stderr
        assert "hma-TEST_BANK: 3 transferred, 3 added" in first.stdout
        assert "1 request(s) to hma" in first.stdout
        second = run_ntd("--config", str(config), "hashlist", "sync", "hma", "--json", db=db,
                         env=env)
        report = json.loads(second.stdout)
        assert report["requests"] == 1 and report["lists"][0]["transferred"] == 0
        assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr
        assert fake.count("/c/bank/TEST_BANK/content") == 2
        assert "page_token" in fake.requests[-1].query  # the second sync resumed
    finally:
        fake.stop()


async def test_hma_sync_cut_at_max_pages_resumes_and_drops_nothing(hma: FakeHMA) -> None:
    for _ in range(25):
        hma.add("TEST_BANK", {"pdq": pdq()})
    section = hma_section(hma, max_pages=1)
    ctx = context(**lab_config(hma.port, **{"hashsource.hma": section}))
    try:
        added = [(await sync_source(ctx, "hma"))["lists"][0]["added"] for _ in range(4)]
        assert added == [10, 10, 5, 0]
        assert hma.count("/c/bank/TEST_BANK/content") == 4  # one page per sync
        full = (await sync_source(ctx, "hma", full=True))["lists"][0]
        assert (full["transferred"], full["removed"]) == (10, 0)  # not the end: no replace
        assert (await ctx.store.hashlists())[0]["entries"] == 25
    finally:
        await close_sources(ctx)
        await ctx.aclose()


async def test_lookups_skip_a_pages_own_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_EOKM_API_KEY", EOKM_KEY)
    fake = await FakeEOKM(api_key=EOKM_KEY).start()
    ctx = context(lab={"allow_private_networks": True}, **{"hashsource.eokm": {
        "base_url": fake.base_url, "allowed_ports": [fake.port]}})
    try:
        page = Item(url="https://site.test/p", kind="url", hashes={"md5": md5()})
        assert await remote_matches(ctx, [page]) == {}
        assert fake.requests == []
    finally:
        await close_sources(ctx)
        await ctx.aclose()
        await fake.close()
