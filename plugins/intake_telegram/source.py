"""The Telegram bot as an intake source: long polling (``getUpdates``) or a webhook.

Per update: parse, download the photo in memory, ``desk.hand_in`` with reference
``update:<update_id>`` (the same update again after a crash stores nothing), then move the
offset past it (``getUpdates`` with ``offset`` confirms what came before). The reporter's
Telegram id, chat id, username and names are sealed; the bot replies only once the report is
processed (``ntd_send_feedback``), after which the engine purges them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.api import IncomingReport, IntakeDesk
from plugins.intake_telegram.botapi import BotApi, BotApiError
from plugins.intake_telegram.settings import TelegramSettings
from plugins.intake_telegram.updates import parse_update

log = logging.getLogger("ntd.intake.telegram")

FEEDBACK = {
    "nl": {"default": "Dank u voor uw melding. Wij hebben die beoordeeld en behandeld.",
           "removed": "Dank u voor uw melding. Het gemelde materiaal is verwijderd.",
           "dismissed": "Dank u voor uw melding. Wij hebben die beoordeeld; er was geen "
                        "actie nodig."},
    "en": {"default": "Thank you for your report. We have assessed it and acted on it.",
           "removed": "Thank you for your report. The material you reported was removed.",
           "dismissed": "Thank you for your report. We assessed it; no action was needed."},
}


def feedback_text(language: str, state: str | None) -> str:
    """The reply a reporter gets when their report is processed."""
    texts = FEEDBACK.get(language, FEEDBACK["en"])
    return texts.get(state or "", texts["default"])


class TelegramSource:
    """``[intake.telegram]`` as an intake source named ``telegram``."""

    name = "telegram"

    def __init__(self, settings: TelegramSettings) -> None:
        self.settings = settings
        self.api = BotApi(settings)
        self.offset = 0
        self.updates = 0

    async def handle(self, desk: IntakeDesk, update: dict[str, Any]) -> None:
        """Hand in one update's reports (the caller advances the offset)."""
        parsed = parse_update(update)
        if parsed is None:
            return
        reports = [IncomingReport(url=url, line=i, where="message")
                   for i, url in enumerate(parsed.urls, start=1)]
        if parsed.photo_file_id:
            try:
                data = await self.api.download(parsed.photo_file_id)
                reports.append(IncomingReport(media=data, content_type=parsed.photo_type,
                                              line=len(reports) + 1, where="photo"))
                del data
            except BotApiError as exc:
                log.warning("telegram update %s: photo not downloaded: %s",
                            parsed.update_id, exc.message)
        if not reports:
            return
        result = await desk.hand_in(reports, channel="chat",
                                    reference=f"update:{parsed.update_id}",
                                    reporter=parsed.reporter, app="telegram")
        log.info("telegram update %s: batch %s, %d accepted, %d rejected", parsed.update_id,
                 result.batch, result.accepted + result.duplicates, result.rejected)

    async def _batch(self, desk: IntakeDesk, timeout: int) -> int:
        params: dict[str, Any] = {"timeout": timeout, "allowed_updates": ["message"]}
        if self.offset:
            params["offset"] = self.offset
        updates = await self.api.call("getUpdates", **params)
        for update in updates:
            await self.handle(desk, update)
            self.offset = int(update["update_id"]) + 1
            self.updates += 1
        return len(updates)

    async def poll(self, desk: IntakeDesk) -> int:
        """Hand in every update waiting now (no long wait) and confirm them."""
        if self.settings.mode == "webhook":
            return 0
        total = 0
        while True:
            n = await self._batch(desk, 0)
            total += n
            if n == 0:
                break
        if total:  # confirm the last batch so a restart does not see it again
            await self.api.call("getUpdates", offset=self.offset, timeout=0, limit=1)
        return total

    async def run(self, desk: IntakeDesk, stop: asyncio.Event) -> None:
        """Long-poll until ``stop`` (webhook mode: nothing to do; ``ntd serve`` receives)."""
        if self.settings.mode == "webhook":
            await stop.wait()
            return
        while not stop.is_set():
            poll = asyncio.ensure_future(self._batch(desk, self.settings.poll_timeout))
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if poll not in done:
                poll.cancel()  # the long poll holds no unconfirmed work: updates are re-sent
                await asyncio.gather(poll, return_exceptions=True)
                break
            stopped.cancel()
            try:
                poll.result()
            except (BotApiError, OSError, httpx.HTTPError) as exc:
                log.warning("telegram getUpdates failed: %s", type(exc).__name__)
                await asyncio.sleep(min(30, self.settings.poll_timeout))

    def web_routes(self, desk: IntakeDesk) -> list[Route]:
        """The webhook under ``ntd serve``: ``POST /intake/telegram/<secret>``."""
        secret = self.settings.webhook_secret or ""

        async def receive(request: Request) -> JSONResponse:
            given = request.path_params.get("secret", "")
            header = request.headers.get("x-telegram-bot-api-secret-token", "")
            if (not secret or not hmac.compare_digest(given, secret)
                    or not hmac.compare_digest(header, secret)):
                return JSONResponse({"ok": False}, status_code=404)
            update = await request.json()
            await self.handle(desk, update)
            return JSONResponse({"ok": True})

        return [Route("/intake/telegram/{secret}", receive, methods=["POST"])]

    async def aclose(self) -> None:
        """Close the Bot API client."""
        await self.api.aclose()
