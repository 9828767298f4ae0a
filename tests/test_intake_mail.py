"""Mailbox intake against a real IMAP server (Debian's Dovecot, started per test on a loopback
port; skipped with the reason where it is not installed) and the loopback SMTP sink."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import retention
from engine.intake_driver import IntakeDriver, collect_sources
from engine.lab.dovecot import Dovecot
from engine.lab.images import jpeg_bytes, make_image
from engine.lab.smtp_sink import SMTPSink
from engine.media.hashing import hash_media
from engine.runtime import Runtime
from tests.conftest import ntd_env
from tests.dovecot import Dovecot as start_dovecot
from tests.intake_mail_lab import SigningKey, compose, overrides

SENDER = "agent.bakker@politie.test"
SENDER_NAME = "Agent Zqbakkername"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_MASTER_KEY", "A" * 43 + "=")
    monkeypatch.setenv("NTD_TEST_IMAP_PASSWORD", "imap-test-secret")


@pytest.fixture
def imap() -> Iterator[Dovecot]:
    server = start_dovecot()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def key() -> SigningKey:
    return SigningKey("politie.test")


async def poll_once(rt: Runtime, dnsfunc: Any) -> Any:
    """One pass of the mailbox source, in process, with DKIM's DNS injected."""
    ctx = rt.context()
    ctx.state["intake_mail"] = {"dnsfunc": dnsfunc}
    try:
        sources = [s for s in await collect_sources(ctx) if s.name == "mail"]
        assert len(sources) == 1
        await IntakeDriver(ctx, sources).drive(sources[0], asyncio.Event(), once=True)
        return sources[0]
    finally:
        await ctx.aclose()


def files_under(*roots: Path) -> bytes:
    out = b""
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                out += path.read_bytes()
    return out


CSV = (b"url,comment\r\n"
       b"http://f.example.test/six,fine\r\n"
       b"not a url at all,bad\r\n"
       b"ftp://g.example.test/seven,bad scheme\r\n"
       b"hxxp://h[.]example[.]test/eight,defanged\r\n")
TEXT = ("Geachte meldpunt,\n\n"
        "Zie http://a.example.test/one.jpg en hxxps://b[.]example[.]test/two.html\n"
        "en ook www.d.example.test/four\n")
HTML = ('<p>Zie <a href="http://e.example.test/five">deze pagina</a> en '
        'http://a.example.test/one.jpg</p>')


async def test_signed_mail_becomes_one_batch_with_line_errors_and_a_receipt(
        imap: Dovecot, key: SigningKey, db_path: Path, tmp_path: Path) -> None:
    raw = compose(sender=SENDER, name=SENDER_NAME, text=TEXT, html=HTML, language="nl",
                  attachments=[("reports.csv", CSV, "text/csv")])
    imap.append(key.sign(raw))
    log_file = tmp_path / "ntd.log"
    async with SMTPSink() as sink:
        rt = Runtime.open(db=str(db_path), overrides={
            **overrides(imap, sink.port),
            "logging": {"level": "DEBUG", "file": str(log_file)}})
        try:
            source = await poll_once(rt, key.dnsfunc)
            batches = rt.store.query("SELECT * FROM batches")
            reports = rt.store.query("SELECT raw_url, channel, line FROM reports ORDER BY id")
            reporters_left = rt.store.query("SELECT count(*) AS n FROM reporters")[0]["n"]
            exports = str([rt.store.get_case(c["id"]) for c in rt.store.list_cases()])
        finally:
            rt.close()
    assert source.refused == 0 and key.lookups
    assert len(batches) == 1
    batch = batches[0]
    assert (batch["channel"], batch["accepted"], batch["rejected"]) == ("police", 6, 2)
    assert batch["source"] == "mail"
    assert sorted(r["raw_url"] for r in reports) == sorted([
        "http://a.example.test/one.jpg", "https://b.example.test/two.html",
        "http://www.d.example.test/four", "http://e.example.test/five",
        "http://f.example.test/six", "http://h.example.test/eight"])
    assert {r["channel"] for r in reports} == {"police"}
    # The receipt: to the sender, in Dutch, with the batch id, the counts and the bad lines.
    assert len(sink.messages) == 1
    receipt = sink.messages[0].parsed()
    assert receipt["To"] == SENDER
    body = receipt.get_content()
    assert batch["id"] in receipt["Subject"] and batch["id"] in body
    assert "Geaccepteerd: 6" in body and "Geweigerd: 2" in body
    assert "reports.csv regel 3:" in body
    assert "reports.csv regel 4: unsupported scheme 'ftp'" in body
    # Handled: moved out of the inbox; the sender's data is purged after the receipt.
    assert imap.count("INBOX") == 0 and imap.count("Processed") == 1
    assert reporters_left == 0
    stored = b"".join(Path(f"{db_path}{s}").read_bytes() for s in ("", "-wal")
                      if Path(f"{db_path}{s}").exists())
    for secret in (SENDER, "zqbakkername", "agent.bakker"):
        assert secret.encode() not in stored.lower()
        assert secret not in exports.lower()
        assert secret.encode() not in log_file.read_bytes().lower()


async def test_spoofed_sender_is_refused_and_logged_without_its_address(
        imap: Dovecot, key: SigningKey, db_path: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    forger = SigningKey("politie.test")  # same domain and selector, not the published key
    imap.append(compose(sender=SENDER, text="http://x.example.test/spoof"))  # unsigned
    imap.append(forger.sign(compose(sender=SENDER, text="http://y.example.test/forged")))
    other = SigningKey("elsewhere.test")  # valid signature of another domain: not aligned
    imap.append(other.sign(compose(sender=SENDER, text="http://z.example.test/other")))
    caplog.set_level(logging.DEBUG)
    async with SMTPSink() as sink:
        rt = Runtime.open(db=str(db_path), overrides=overrides(imap, sink.port))
        try:
            source = await poll_once(rt, lambda name, timeout=5: (
                key.dnsfunc(name) or other.dnsfunc(name)))
            assert rt.store.query("SELECT count(*) AS n FROM reports")[0]["n"] == 0
            assert rt.store.query("SELECT count(*) AS n FROM batches")[0]["n"] == 0
        finally:
            rt.close()
    assert source.refused == 3 and sink.messages == []
    refusals = [r.getMessage() for r in caplog.records if "mail refused" in r.getMessage()]
    assert len(refusals) == 3
    assert any("no dkim signature" in r for r in refusals)
    assert any("dkim fail" in r for r in refusals)
    assert any("does not match From:" in r for r in refusals)
    assert "politie.test" not in caplog.text and "agent.bakker" not in caplog.text


async def test_attached_image_on_a_hash_list_confirms_its_case_and_is_never_stored(
        imap: Dovecot, key: SigningKey, db_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "fetch,route_inhope,recheck,"
                       "iccam,intake_telegram")
    image = jpeg_bytes(make_image(2207))
    raw = compose(sender=SENDER, text="bijgevoegd", attachments=[
        ("evidence.jpg", image, "image/jpeg")])
    imap.append(key.sign(raw))
    log_file = tmp_path / "ntd.log"
    async with SMTPSink() as sink:
        rt = Runtime.open(db=str(db_path), overrides={
            **overrides(imap, sink.port, after="delete"),
            "logging": {"level": "DEBUG", "file": str(log_file)}})
        try:
            h = hash_media(image)
            rt.store.import_hashlist(name="known", source="t", trust="auto", negative=False,
                                     thresholds={}, entries=[("pdq", h["pdq"], "A1", None,
                                                              None)],
                                     now=rt.clock.now_text())
            await poll_once(rt, key.dnsfunc)
            await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
            cases = rt.store.list_cases()
            rt_events = rt.store.get_case(cases[0]["id"])["events"]
            rt.store.vacuum()
        finally:
            rt.close()
    assert len(cases) == 1
    case = cases[0]
    assert case["url"].startswith("media:sha256:")
    # Confirmed by its hash, then with the analyst: a media report has no host to notify.
    assert case["state"] == "awaiting_routing"
    assert [e["action"] for e in rt_events][:3] == ["created", "fetched", "matched"]
    assert case["items"][0]["matches"] and case["items"][0]["hashes"]["pdq"] == h["pdq"]
    assert imap.count("INBOX") == 0  # deleted after handling
    assert len(sink.messages) == 1
    # Its bytes are in no file of ours, no database page, no log; the mail server's copy is
    # expunged too (raw bytes and the attachment's base64 form).
    windows = [image[i:i + 48] for i in range(0, len(image) - 48, len(image) // 8)]
    b64_line = base64.b64encode(image)[:76]
    ours = files_under(tmp_path, db_path.parent) + files_under(imap.root)
    for window in windows:
        assert window not in ours
    assert b64_line not in ours


@pytest.mark.slow
def test_kill_9_mid_mailbox_then_restart_gives_every_report_exactly_once(
        imap: Dovecot, db_path: Path, tmp_path: Path) -> None:
    n = 30
    for i in range(n):
        imap.append(compose(sender=f"desk{i % 3}@partner.test",
                            text=f"http://k{i}.example.test/a\nhttp://k{i}.example.test/b\n",
                            message_id=f"<kill-{i}@partner.test>"))
    sink = SMTPSink(delay=0.1).start_in_thread()  # slow receipts: the kill lands mid-mailbox
    try:
        cfg = overrides(imap, sink.port, require_dkim=False)
        lines = []
        for section, values in cfg.items():
            lines.append(f'[{section}]' if "." not in section or section == "intake.mail"
                         else f'["{section}"]')
            for k, v in values.items():
                key_text = f'"{k}"' if "@" in k or "*" in k else k
                value = repr(v).replace("'", '"').replace("True", "true").replace("False",
                                                                                   "false")
                lines.append(f"{key_text} = {value}")
        toml = "\n".join(lines).replace('["intake.mail.channels"]', "[intake.mail.channels]")
        config = tmp_path / "ntd.toml"
        config.write_text(toml + "\n")
        env = ntd_env(NTD_MASTER_KEY="A" * 43 + "=", NTD_TEST_IMAP_PASSWORD=imap.password)
        cmd = [sys.executable, "-m", "engine.cli", "--db", str(db_path), "--config",
               str(config), "intake", "run", "mail", "--once"]
        subprocess.run([sys.executable, "-m", "engine.cli", "--db", str(db_path), "db",
                        "migrate"], env=env, check=True, capture_output=True)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        seen = 0
        while time.monotonic() < deadline and proc.poll() is None:
            with sqlite3.connect(db_path) as conn:
                seen = conn.execute("SELECT count(*) FROM batches").fetchone()[0]
            if seen >= 5:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        assert 5 <= seen < n, "the kill must land mid-mailbox"
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
    finally:
        sink.stop()
    with sqlite3.connect(db_path) as conn:
        urls = [r[0] for r in conn.execute("SELECT raw_url FROM reports")]
        batches = conn.execute("SELECT count(*) FROM batches").fetchone()[0]
        reporters = conn.execute("SELECT count(*) FROM reporters").fetchone()[0]
    expected = sorted(f"http://k{i}.example.test/{p}" for i in range(n) for p in "ab")
    assert sorted(urls) == expected  # every report exactly once
    assert batches == n and reporters == 0
    assert imap.count("INBOX") == 0 and imap.count("Processed") == n
    receipts = {m.parsed()["X-NTD-Batch"] for m in sink.messages}
    assert len(receipts) == n  # every batch got its receipt (one may have gone twice)
    assert len(sink.messages) <= n + 1


async def test_purge_after_receipt_leaves_no_sender_in_any_store(
        imap: Dovecot, key: SigningKey, db_path: Path, tmp_path: Path) -> None:
    imap.append(key.sign(compose(sender=SENDER, name=SENDER_NAME,
                                 text="http://p.example.test/1")))
    async with SMTPSink() as sink:
        rt = Runtime.open(db=str(db_path), overrides=overrides(imap, sink.port))
        try:
            ctx = rt.context()
            ctx.state["intake_mail"] = {"dnsfunc": key.dnsfunc}
            # Between hand-in and receipt the sender is sealed, never in plain text.
            [source] = await collect_sources(ctx)
            sealed = []

            original = source._receipt

            async def spy(mail: Any, result: Any) -> None:
                sealed.append(rt.store.query("SELECT sealed, app FROM reporters"))
                await original(mail, result)

            source._receipt = spy  # type: ignore[method-assign]
            await IntakeDriver(ctx, [source]).drive(source, asyncio.Event(), once=True)
            await ctx.aclose()
            assert retention.purge(rt)["reporters_purged"] == 0  # already purged at receipt
            audit = rt.store.audit_log()
        finally:
            rt.close()
    assert len(sealed) == 1 and len(sealed[0]) == 1 and sealed[0][0]["app"] == "mail"
    assert SENDER.encode() not in bytes(sealed[0][0]["sealed"])
    assert any(a["action"] == "purge" and a["actor"] == "intake:mail" for a in audit)
    assert len(sink.messages) == 1 and sink.messages[0].rcpt_tos == (SENDER,)
    stored = files_under(db_path.parent)
    for secret in (SENDER.encode(), b"zqbakkername"):
        assert secret not in stored.lower()


async def test_oversized_mail_is_refused_unread(imap: Dovecot, key: SigningKey,
                                               db_path: Path) -> None:
    imap.append(key.sign(compose(sender=SENDER, text="http://big.example.test/1\n"
                                 + "x" * 30_000)))
    imap.append(key.sign(compose(sender=SENDER, text="http://small.example.test/1")))
    async with SMTPSink() as sink:
        rt = Runtime.open(db=str(db_path),
                          overrides=overrides(imap, sink.port, max_message_mb=0.01))
        try:
            source = await poll_once(rt, key.dnsfunc)
            urls = [r["raw_url"] for r in rt.store.query("SELECT raw_url FROM reports")]
        finally:
            rt.close()
    assert source.refused == 1 and urls == ["http://small.example.test/1"]
    assert imap.count("INBOX") == 0 and len(sink.messages) == 1
