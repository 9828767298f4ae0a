"""``[intake.telegram]``: the hotline's Telegram bot. The token comes from the environment
(``token_env``); ``mode`` is ``polling`` (``getUpdates`` long polling during ``ntd run``) or
``webhook`` (Telegram posts updates to ``ntd serve`` under ``/intake/telegram/<secret>``, the
secret read from ``webhook_secret_env``)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.api import Config, Option, one_of, positive, secret_from_env

SECTION = "intake.telegram"

SCHEMA: dict[str, dict[str, Option]] = {
    SECTION: {
        "enabled": Option(type=bool, default=False, help="run the bot during `ntd run`"),
        "token_env": Option(type=str, default="NTD_TELEGRAM_TOKEN",
                            help="env var holding the bot token"),
        "api_url": Option(type=str, default="https://api.telegram.org",
                          help="Bot API server (a local Bot API server, or a lab fake)"),
        "mode": Option(type=str, default="polling", check=one_of("polling", "webhook")),
        "webhook_secret_env": Option(type=str, default="NTD_TELEGRAM_WEBHOOK_SECRET",
                                     help="env var holding the webhook path secret"),
        "poll_timeout": Option(type=int, default=30, check=positive,
                               help="getUpdates long-polling timeout (seconds)"),
        "request_timeout": Option(type=float, default=60.0, check=positive),
        "max_retries": Option(type=int, default=5, check=positive,
                              help="attempts of one call after 429 retry_after answers"),
        "language": Option(type=str, default="nl", check=one_of("nl", "en"),
                           help="language of the bot's replies"),
    },
}


@dataclass(frozen=True, kw_only=True)
class TelegramSettings:
    """The bot's settings (token read from the environment)."""

    token: str
    api_url: str
    mode: str
    webhook_secret: str | None
    poll_timeout: int
    request_timeout: float
    max_retries: int
    language: str


def telegram_settings(config: Config) -> TelegramSettings:
    """Read ``[intake.telegram]`` and its secrets."""
    s = config.section(SECTION)
    token = secret_from_env(SECTION, "token_env", s["token_env"]) or ""
    secret = (secret_from_env(SECTION, "webhook_secret_env", s["webhook_secret_env"])
              if s["mode"] == "webhook" else None)
    return TelegramSettings(token=token, api_url=s["api_url"].rstrip("/"), mode=s["mode"],
                            webhook_secret=secret, poll_timeout=s["poll_timeout"],
                            request_timeout=s["request_timeout"],
                            max_retries=s["max_retries"], language=s["language"])
