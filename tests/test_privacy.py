"""Privacy promises: chat-reporter data encrypted apart, purged after feedback, never leaked."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from engine import retention
from engine.intake import submit_files
from engine.lab.images import jpeg_bytes, make_image
from engine.lab.webserver import LabWebServer
from engine.logs import redact, register_sensitive
from engine.media.hashing import hash_media
from engine.runtime import Runtime
from tests.conftest import run_ntd

MARKERS = {"username": "zqcanaryuser", "first_name": "Zqcanaryfirst",
           "last_name": "Zqcanarylast", "phone": "+31 6 9876 5432"}
PHONE_DIGITS = "31698765432"


@pytest.fixture(autouse=True)
def _master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_MASTER_KEY", "A" * 43 + "=")


def chat_file(tmp_path: Path, url: str, **extra: str) -> str:
    path = tmp_path / "chat.ndjson"
    path.write_text(json.dumps({"url": url, "app": "whatsapp", **MARKERS, **extra}) + "\n")
    return str(path)


def leaks(blob: bytes) -> list[str]:
    low = blob.lower()
    found = [m for m in MARKERS.values() if m.lower().encode() in low]
    if PHONE_DIGITS.encode() in blob.replace(b" ", b""):
        found.append("phone digits")
    return found


def db_bytes(db: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-journal"):
        p = Path(f"{db}{suffix}")
        if p.exists():
            out += p.read_bytes()
    return out


def test_chat_reporter_is_encrypted_and_findable_by_mac(db_path: Path, tmp_path: Path) -> None:
    rt = Runtime.open(db=str(db_path))
    submit_files(rt.store, [chat_file(tmp_path, "http://a.example.test/x.jpg")], channel="chat")
    assert leaks(db_bytes(db_path)) == []  # sealed: not even in the WAL
    case = rt.store.list_cases()[0]
    assert case["reports"][0]["metadata"] == {}  # nothing personal in case data
    export = retention.dsr_export(rt, phone="0031 6 98765432", username=None, actor="t")
    assert export[0]["reporter"]["username"] == MARKERS["username"]
    assert retention.dsr_export(rt, phone=None, username="@ZQCANARYUSER", actor="t")
    assert [a["action"] for a in rt.store.audit_log()] == ["dsr_export", "dsr_export"]
    assert leaks(json.dumps(rt.store.audit_log()).encode()) == []
    rt.close()


def test_unknown_chat_app_is_rejected(db_path: Path, tmp_path: Path) -> None:
    rt = Runtime.open(db=str(db_path))
    result = submit_files(rt.store, [chat_file(tmp_path, "http://a.example.test/x.jpg",
                                               app="myspace")], channel="chat")
    assert result.accepted == 0 and "unknown chat app" in result.rejected[0]["reason"]
    rt.close()


def test_erasure_shreds_and_restriction_freezes(db_path: Path, tmp_path: Path) -> None:
    rt = Runtime.open(db=str(db_path))
    submit_files(rt.store, [chat_file(tmp_path, "http://a.example.test/x.jpg")], channel="chat")
    case_id = rt.store.list_cases()[0]["id"]
    rt.store.transition(case_id, state="confirmed", stage="t", actor="t", action="verdict",
                        now=rt.clock.now_text())
    assert retention.dsr_restrict(rt, phone=MARKERS["phone"], username=None, actor="t") == 1
    rt.store.feedback_sent(case_id, rt.clock.now_text())
    assert retention.purge(rt)["reporters_purged"] == 0  # restricted: frozen, kept
    assert retention.dsr_erase(rt, phone=MARKERS["phone"], username=None, actor="t") == 1
    assert rt.store.reporters(case_id=case_id) == []
    assert leaks(db_bytes(db_path)) == []
    rt.close()


def test_key_shredding_makes_a_surviving_copy_unreadable(db_path: Path, tmp_path: Path) -> None:
    from cryptography.exceptions import InvalidTag

    rt = Runtime.open(db=str(db_path))
    submit_files(rt.store, [chat_file(tmp_path, "http://a.example.test/x.jpg")], channel="chat")
    submit_files(rt.store, [chat_file(tmp_path, "http://a.example.test/y.jpg")], channel="chat")
    first, second = (rt.store.reporters(case_id=c["id"])[0] for c in rt.store.list_cases())
    vault = retention.vault_for(rt)
    assert vault.open(first["sealed"], first["wrapped_key"], first["id"])["phone"]
    rt.store.erase_reporters([first["id"]])
    assert rt.store.reporters(case_id=first["case_id"]) == []
    # A backup that kept the ciphertext is useless once the record's own key is gone: no
    # other key (not even another record's, under the same master key) opens it.
    with pytest.raises(InvalidTag):
        vault.open(first["sealed"], second["wrapped_key"], first["id"])
    rt.close()


def test_log_redaction() -> None:
    register_sensitive("zqsecretname")
    line = redact("mail a@b.example, call +31 6 1234 5678, user ZQSECRETNAME, case C1, port 8080")
    assert "a@b.example" not in line and "1234" not in line and "zqsecret" not in line.lower()
    assert "case C1" in line and "8080" in line


async def test_canary_through_pipeline_purge_and_logs(db_path: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    image = jpeg_bytes(make_image(11))
    server = LabWebServer({("chat-host.example.test", "/p.jpg"): (image, "image/jpeg")})
    await server.start()
    log_file = tmp_path / "ntd.log"
    try:
        rt = Runtime.open(db=str(db_path), overrides={
            "lab": {"allow_private_networks": True},
            "resolve.hosts": {"chat-host.example.test": "127.0.0.1"},
            "fetch": {"allowed_ports": [server.port]},
            "pipeline": {"poll_seconds": 0.05, "cpu_workers": 1},
            "logging": {"level": "DEBUG", "file": str(log_file)},
        })
        h = hash_media(image)
        rt.store.import_hashlist(name="l", source="t", trust="auto", negative=False,
                                 thresholds={}, entries=[("phash", h["phash"], "baseline",
                                                          None, None)],
                                 now=rt.clock.now_text())
        url = server.url("/p.jpg", host="chat-host.example.test")
        submit_files(rt.store, [chat_file(tmp_path, url)], channel="chat")
        logging.getLogger("ntd.test").warning("reporter %s phoned from %s", MARKERS["username"],
                                              MARKERS["phone"])
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        case = rt.store.list_cases()[0]
        assert case["state"] not in ("new", "fetched")
        due = rt.store.feedback_due()
        assert [d["case_id"] for d in due] == [case["id"]]
        rt.store.feedback_sent(case["id"], rt.clock.now_text())
        assert retention.purge(rt) == {"reporters_purged": 1, "cases_anonymised": 0}
        exports = json.dumps([rt.store.get_case(c["id"]) for c in rt.store.list_cases()])
        rt.close()
    finally:
        await server.close()
    assert leaks(db_bytes(db_path)) == []
    assert leaks(exports.encode()) == []
    logged = log_file.read_bytes()
    assert b"reporter [redacted] phoned" in logged
    assert leaks(logged) == []
    proc = run_ntd("--db", str(db_path), "dsr", "export", "--phone", MARKERS["phone"], "--json",
                   env={"NTD_MASTER_KEY": os.environ["NTD_MASTER_KEY"]})
    assert proc.returncode == 0 and json.loads(proc.stdout) == []


@pytest.mark.slow
async def test_canary_through_the_whole_chain(db_path: Path, tmp_path: Path) -> None:
    """Chat reports with unique markers go through fetch, match, resolve, route, notices (sent
    to a loopback SMTP sink AND rendered to a dry-run folder), a re-check, statistics, exports
    and purge: no marker may appear anywhere afterwards."""
    from datetime import UTC, datetime

    from engine.clock import Clock
    from engine.lab.images import build_demo_hashlist
    from engine.lab.world import FullLab, bind_urls, build_world
    from engine.media.hashlist_format import parse_hashlist
    from engine.stats import compute_for_runtime, parse_period, to_csv
    from plugins.recheck.cli import run_sweep

    world = build_world(urls=12, hosters=4, planted=3, image_pool=3, faulty_share=0.0,
                        image_share=1.0)
    lab = await FullLab(world).start()
    log_file = tmp_path / "chain.log"
    dry = tmp_path / "dry-run"
    try:
        overrides = lab.config_overrides()
        overrides["pipeline"] = {"poll_seconds": 0.05, "cpu_workers": 1}
        overrides["logging"] = {"level": "DEBUG", "file": str(log_file)}
        # Notices rendered to a folder (what an operator inspects); SMTP delivery of the same
        # messages is covered by tests/test_notify.py.
        overrides["notices"].update({"mode": "dry-run", "dry_run_dir": str(dry)})
        rt = Runtime.open(db=str(db_path), overrides=overrides,
                          clock=Clock(fixed=datetime.now(UTC)))
        build_demo_hashlist(tmp_path / "list.csv", n=3)
        rt.store.import_hashlist(
            name="l", source="t", trust="auto", negative=False, thresholds={},
            now=rt.clock.now_text(),
            entries=((e.hash_type, e.hash, e.category, e.label, e.source)
                     for e in parse_hashlist(tmp_path / "list.csv")))
        chat = tmp_path / "chat.ndjson"
        chat.write_text("".join(json.dumps({"url": u, "app": "signal", **MARKERS,
                                            "contact_police": False}) + "\n"
                                for u in bind_urls(world)))
        submit_files(rt.store, [str(chat)], channel="chat", clock=rt.clock)
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        assert rt.store.count_by_state().get("noticed", 0) > 0
        rt.clock.advance(80 * 3600)
        await run_sweep(rt, install_signal_handlers=False)
        stats = compute_for_runtime(rt, parse_period(None, None))
        outputs = [json.dumps(stats.summary), to_csv(stats.summary),
                   json.dumps(rt.store.list_cases()),
                   json.dumps([rt.store.get_case(c["id"]) for c in rt.store.list_cases()]),
                   json.dumps(rt.store.list_notices()), json.dumps(rt.store.audit_log())]
        # Analysts decide the rest; every reporter gets feedback; then nothing may remain.
        for case in rt.store.list_cases(state="awaiting_assessment"):
            rt.store.transition(case["id"], state="dismissed", stage="assessment",
                                actor="analyst:t", action="verdict", now=rt.clock.now_text(),
                                detail={"verdict": "not_illegal"})
        for case in rt.store.list_cases():
            rt.store.feedback_sent(case["id"], rt.clock.now_text())
        assert retention.purge(rt)["reporters_purged"] == len(world.urls)
        rt.close()
    finally:
        await lab.close()
    assert leaks(db_bytes(db_path)) == []
    assert leaks(log_file.read_bytes()) == []
    for out in outputs:
        assert leaks(out.encode()) == []
    for message in lab.sink.messages:
        assert leaks(message.data if isinstance(message.data, bytes)
                     else str(message.data).encode()) == []
    rendered = list(dry.rglob("*")) if dry.exists() else []
    assert any(p.suffix == ".eml" for p in rendered), "dry-run notices must have been written"
    for path in rendered:
        if path.is_file():
            assert leaks(path.read_bytes()) == []
