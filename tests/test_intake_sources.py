"""The intake-source hook and the engine's one hand-in call (engine/intake_sources.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import PluginError
from engine.intake_sources import IncomingReport, IntakeDesk
from engine.lab.images import make_image, png_bytes
from engine.runtime import Runtime
from tests.conftest import run_ntd
from tests.pg import pg_url  # noqa: F401  (fixture)
from tests.plugins import dropfolder_source


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_MASTER_KEY", "A" * 43 + "=")
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "fetch,hashmatch,resolve,route_inhope,notify,"
                       "recheck,iccam,intake_mail,intake_telegram")


def open_rt(db: Path | str, folder: Path) -> Runtime:
    return Runtime.open(db=str(db), extra_plugins=[("dropfolder", dropfolder_source)],
                        overrides={"xx.dropfolder": {"folder": str(folder)},
                                   "pipeline": {"poll_seconds": 0.05}})


async def test_ntd_intake_sources_run_beside_the_stages_until_idle(db_path: Path,
                                                                   tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({
        "urls": ["http://one.example.test/x", "javascript:alert(1)",
                 "http://two.example.test/y"], "contact": "desk@partner.test"}))
    dropfolder_source.SOURCES.clear()
    rt = open_rt(db_path, folder)
    try:
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        batches = rt.store.query("SELECT channel, accepted, rejected FROM batches")
        reporters = rt.store.query("SELECT count(*) AS n FROM reporters")[0]["n"]
        audit = [a["action"] for a in rt.store.audit_log()]
    finally:
        rt.close()
    [source] = dropfolder_source.SOURCES
    [result] = source.results
    assert batches == [{"channel": "partner", "accepted": 2, "rejected": 1}]
    assert result["errors"] == [{"line": 2, "input": "javascript:alert(1)", "where": "a.json",
                                 "reason": "unsupported scheme 'javascript'"}]
    assert reporters == 0 and "purge" in audit  # purged at the receipt
    assert not list(folder.iterdir())
    assert b"desk@partner.test" not in db_path.read_bytes()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, db_path: Path) -> str:
    if request.param == "sqlite":
        return str(db_path)
    return str(request.getfixturevalue("pg_url"))


async def test_hand_in_is_idempotent_by_reference_and_checks_its_input(database: str,
                                                                       tmp_path: Path) -> None:
    rt = open_rt(database, tmp_path)
    ctx = rt.context()
    try:
        desk = IntakeDesk(ctx, "unit")
        reports = [IncomingReport(url="http://dup.example.test/1"),
                   IncomingReport(media=b"%PDF-1.4 not an image", content_type="application/pdf",
                                  line=2, where="doc.pdf"),
                   IncomingReport(media=png_bytes(make_image(5, (64, 64))),
                                  content_type="image/png", line=3)]
        first = await desk.hand_in(reports, channel="chat", reference="m-1",
                                   reporter={"username": "zqunit"}, app="telegram")
        again = await desk.hand_in(reports, channel="chat", reference="m-1",
                                   reporter={"username": "zqunit"}, app="telegram")
        other = await desk.hand_in(reports[:1], channel="chat", reference="m-2")
        with pytest.raises(PluginError, match="unknown channel"):
            await desk.hand_in(reports, channel="carrier-pigeon", reference="m-3")
        cases = rt.store.list_cases()
        refs = rt.store.query("SELECT reference FROM intake_refs")
    finally:
        await ctx.aclose()
        rt.close()
    assert (first.known, first.accepted, first.rejected) == (False, 2, 1)
    assert first.errors[0]["reason"] == "unsupported media type application/pdf"
    assert (again.known, again.batch, again.accepted) == (True, first.batch, 2)
    assert (other.known, other.accepted, other.duplicates) == (False, 0, 1)
    media = [c for c in cases if c["url"].startswith("media:sha256:")]
    assert len(media) == 1 and media[0]["state"] == "fetched"
    assert media[0]["items"][0]["hashes"]["phash"]
    assert all(len(r["reference"]) == 64 and "m-1" not in r["reference"] for r in refs)


def test_intake_run_once_exits_1_when_the_source_fails(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "ntd.toml"
    config.write_text(f'[intake.mail]\nenabled = true\nport = {port}\ntls = false\n'
                      f'user = "u"\npassword_env = "NTD_TEST_IMAP_PASSWORD"\n')
    db = tmp_path / "ntd.db"
    assert run_ntd("db", "migrate", db=db).returncode == 0
    env = {"NTD_TEST_IMAP_PASSWORD": "x", "NTD_MASTER_KEY": "A" * 43 + "="}
    listed = run_ntd("--config", str(config), "intake", "list", db=db, env=env)
    assert listed.returncode == 0 and listed.stdout.split() == ["mail"]
    proc = run_ntd("--config", str(config), "intake", "run", "mail", "--once", db=db, env=env)
    assert proc.returncode == 1
    assert "intake source mail: ConnectionRefusedError" in proc.stderr
    unknown = run_ntd("--config", str(config), "intake", "run", "fax", db=db, env=env)
    assert unknown.returncode == 2 and "no intake source 'fax' (known: mail)" in unknown.stderr
