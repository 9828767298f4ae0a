"""The Telegram bot source against a loopback fake of the Bot API (engine.lab.telegram_fake):
updates with offsets, getFile and the download, sendMessage, 429 with retry_after."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import retention
from engine.intake_driver import IntakeDriver, collect_sources
from engine.intake_sources import IntakeDesk
from engine.lab.images import jpeg_bytes, make_image
from engine.lab.telegram_fake import TelegramFake
from engine.lab.webserver import LabWebServer
from engine.media.hashing import hash_media
from engine.runtime import Runtime
from engine.web import WebSettings, create_app

TOKEN = "987654:lab-token"
SENDER = TelegramFake.user(user_id=778899, username="zqtguser", first_name="Zqtgfirst",
                           last_name="Zqtglast")
MARKERS = ("zqtguser", "zqtgfirst", "zqtglast", "778899")


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_MASTER_KEY", "A" * 43 + "=")
    monkeypatch.setenv("NTD_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("NTD_TELEGRAM_WEBHOOK_SECRET", "hook-secret-123")


@pytest.fixture
def fake() -> Iterator[TelegramFake]:
    server = TelegramFake(TOKEN).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


def bot_overrides(fake: TelegramFake, **extra: Any) -> dict[str, dict[str, Any]]:
    return {"intake.telegram": {"enabled": True, "api_url": fake.url, "poll_timeout": 1,
                                "language": "en", **extra},
            "pipeline": {"poll_seconds": 0.05, "cpu_workers": 1}}


async def drive_once(rt: Runtime) -> Any:
    ctx = rt.context()
    try:
        [source] = [s for s in await collect_sources(ctx) if s.name == "telegram"]
        await IntakeDriver(ctx, [source]).drive(source, asyncio.Event(), once=True)
        return source
    finally:
        await ctx.aclose()


def db_bytes(db: Path) -> bytes:
    return b"".join(Path(f"{db}{s}").read_bytes() for s in ("", "-wal")
                    if Path(f"{db}{s}").exists())


async def test_message_with_two_urls_and_a_photo_becomes_reports_then_feedback_and_purge(
        fake: TelegramFake, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "resolve,route_inhope,recheck,iccam,intake_mail")
    page_a, page_b, photo = (jpeg_bytes(make_image(seed)) for seed in (31, 32, 33))
    web = LabWebServer({("tg-host.example.test", "/a.jpg"): (page_a, "image/jpeg"),
                        ("tg-host.example.test", "/b.jpg"): (page_b, "image/jpeg")})
    await web.start()
    try:
        url_a = web.url("/a.jpg", host="tg-host.example.test")
        url_b = web.url("/b.jpg", host="tg-host.example.test").replace("http://", "hxxp://")
        caption = f"Look: {url_a} and {url_b}"
        start = caption.index(url_a)
        fake.add_message(caption, sender=SENDER, photo=photo,
                         entities=[{"type": "url", "offset": start, "length": len(url_a)}],
                         forward_origin={"type": "user", "sender_user": TelegramFake.user(
                             user_id=5, username="original_author")})
        fake.throttle(1, retry_after=1)  # the first call is rate-limited: the bot waits it out
        rt = Runtime.open(db=str(db_path), overrides={
            **bot_overrides(fake),
            "lab": {"allow_private_networks": True},
            "resolve.hosts": {"tg-host.example.test": "127.0.0.1"},
            "fetch": {"allowed_ports": [web.port]}})
        try:
            for image in (page_a, page_b, photo):
                h = hash_media(image)
                rt.store.import_hashlist(
                    name=f"l{h['sha256'][:6]}", source="t", trust="auto", negative=False,
                    thresholds={}, entries=[("pdq", h["pdq"], "A1", None, None)],
                    now=rt.clock.now_text())
            source = await drive_once(rt)
            reports = rt.store.query("SELECT raw_url, channel FROM reports ORDER BY id")
            sealed = rt.store.query("SELECT app, sealed, username_mac FROM reporters")
            assert source.api.waited >= 1 and fake.throttled == ["getUpdates"]
            assert fake.updates == []  # confirmed by the next offset
            assert "getFile" in fake.calls
            await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
            states = {c["state"] for c in rt.store.list_cases()}
            feedback = retention.send_feedback(rt)
            purged = retention.purge(rt)
            left = rt.store.query("SELECT count(*) AS n FROM reporters")[0]["n"]
            exports = json.dumps([rt.store.get_case(c["id"]) for c in rt.store.list_cases()])
        finally:
            rt.close()
    finally:
        await web.close()
    assert sorted(r["raw_url"] for r in reports) == sorted(
        [url_a, url_b.replace("hxxp://", "http://"), "media:sha256:" + hash_media(photo)[
            "sha256"]])
    assert {r["channel"] for r in reports} == {"chat"}
    assert len(sealed) == 3 and {s["app"] for s in sealed} == {"telegram"}
    assert all(m.encode() not in bytes(s["sealed"]).lower() for s in sealed for m in MARKERS)
    assert states == {"confirmed"}
    assert feedback == {"due": 3, "sent": 3}
    assert len(fake.sent) == 3 and {str(m["chat_id"]) for m in fake.sent} == {"778899"}
    assert purged["reporters_purged"] == 3 and left == 0
    stored = db_bytes(db_path).lower()
    for marker in MARKERS[:3] + ("original_author",):
        assert marker.encode() not in stored
        assert marker not in exports.lower()


async def test_restart_after_a_crash_hands_an_update_in_once(fake: TelegramFake,
                                                              db_path: Path) -> None:
    fake.add_message("http://once.example.test/x", sender=SENDER)
    rt = Runtime.open(db=str(db_path), overrides=bot_overrides(fake))
    try:
        ctx = rt.context()
        [source] = await collect_sources(ctx)
        update = fake.updates[0]
        # The bot handed the update in but died before its offset was confirmed ...
        await source.handle(IntakeDesk(ctx, "telegram"), update)
        await source.aclose()
        await ctx.aclose()
        # ... so the restarted bot sees it again.
        await drive_once(rt)
        n = rt.store.query("SELECT count(*) AS n FROM reports")[0]["n"]
        batches = rt.store.query("SELECT count(*) AS n FROM batches")[0]["n"]
    finally:
        rt.close()
    assert (n, batches) == (1, 1)


async def test_webhook_under_serve_needs_the_secret_path(fake: TelegramFake,
                                                        db_path: Path) -> None:
    rt = Runtime.open(db=str(db_path), overrides=bot_overrides(fake, mode="webhook"))
    try:
        app = create_app(rt, WebSettings(secret=b"s" * 32))
        update = {"update_id": 9001, "message": {
            "message_id": 1, "date": 1, "from": SENDER, "chat": {"id": 778899},
            "text": "see http://hook.example.test/1"}}
        secret = {"X-Telegram-Bot-Api-Secret-Token": "hook-secret-123"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://ntd.test") as client:
            assert (await client.post("/intake/telegram/wrong", json=update,
                                      headers=secret)).status_code == 404
            assert (await client.post("/intake/telegram/hook-secret-123",
                                      json=update)).status_code == 404  # header missing
            for _ in range(2):  # Telegram re-posts an update it saw no answer to
                ok = await client.post("/intake/telegram/hook-secret-123", json=update,
                                       headers=secret)
                assert ok.status_code == 200
        reports = rt.store.query("SELECT raw_url FROM reports")
    finally:
        rt.close()
    assert [r["raw_url"] for r in reports] == ["http://hook.example.test/1"]


async def test_long_polling_run_hands_in_until_stopped(fake: TelegramFake, db_path: Path) -> None:
    rt = Runtime.open(db=str(db_path), overrides=bot_overrides(fake))
    ctx = rt.context()
    try:
        [source] = await collect_sources(ctx)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(IntakeDesk(ctx, "telegram"), stop))
        fake.add_message("first http://lp.example.test/1", sender=SENDER)
        fake.add_message("second http://lp.example.test/2", sender=SENDER)

        async def count() -> int:
            return int((await ctx.store.query("SELECT count(*) AS n FROM reports"))[0]["n"])

        deadline = asyncio.get_running_loop().time() + 30
        while await count() < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)  # a long poll in flight is cancelled at stop
        await source.aclose()
        assert await count() == 2
        assert source.offset == 3  # both updates confirmed by the next getUpdates
    finally:
        await ctx.aclose()
        rt.close()
