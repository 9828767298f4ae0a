"""The bot's reply when a report is processed (``ntd_send_feedback`` has no run context, so
the configuration is remembered at ``ntd_startup``; ``ntd run --daemon`` sends feedback
automatically on its purge schedule). Without a remembered configuration (``ntd purge`` alone)
nothing is sent: the feedback stays listed by ``ntd feedback --due``."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from engine.api import Config
from plugins.intake_telegram.botapi import BotApiError, send_message_sync
from plugins.intake_telegram.settings import SECTION, TelegramSettings, telegram_settings
from plugins.intake_telegram.source import feedback_text

log = logging.getLogger("ntd.intake.telegram")
_SETTINGS: dict[str, TelegramSettings] = {}


def remember(config: Config) -> None:
    """Keep the bot's settings for feedback (when the bot is enabled)."""
    if config.get(SECTION, "enabled", False):
        _SETTINGS["bot"] = telegram_settings(config)


def send(reporter: dict[str, Any], state: str | None) -> bool | None:
    """Reply in the reporter's chat; True when Telegram accepted the message."""
    settings = _SETTINGS.get("bot")
    chat = reporter.get("chat_id") or reporter.get("telegram_id")
    if settings is None or not chat:
        return None
    language = reporter.get("language") if reporter.get("language") in ("nl", "en") else None
    try:
        return send_message_sync(settings, str(chat),
                                 feedback_text(language or settings.language, state))
    # the reporter's chat id never goes in the log
    except (BotApiError, OSError, httpx.HTTPError) as exc:
        log.warning("telegram feedback not sent: %s", type(exc).__name__)
        return False
