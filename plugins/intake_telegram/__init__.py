"""Telegram bot intake (``[intake.telegram]``): reports sent to the hotline's bot.

Hooks only; the source is ``source.py``, update parsing ``updates.py``, the Bot API calls
``botapi.py``, settings ``settings.py``; ``docs/intake.md`` describes the flow.
"""

from __future__ import annotations

from engine.api import (
    ConfigSchema,
    FeedbackOutcome,
    IntakeSource,
    ReporterFields,
    StageContext,
    hookimpl,
)
from plugins.intake_telegram import feedback
from plugins.intake_telegram.settings import SCHEMA, SECTION, telegram_settings
from plugins.intake_telegram.source import TelegramSource


@hookimpl
def ntd_config_schema() -> ConfigSchema:
    """``[intake.telegram]``."""
    return SCHEMA


@hookimpl
def ntd_startup(ctx: StageContext) -> None:
    """Remember the configuration for ``ntd_send_feedback`` (which has no context)."""
    feedback.remember(ctx.config)


@hookimpl
def ntd_intake_sources(ctx: StageContext) -> list[IntakeSource] | None:
    """The bot when ``[intake.telegram] enabled``."""
    if not ctx.config.get(SECTION, "enabled", False):
        return None
    feedback.remember(ctx.config)
    return [TelegramSource(telegram_settings(ctx.config))]


@hookimpl
def ntd_send_feedback(reporter: ReporterFields, app: str | None, case_id: str,
                      outcome: FeedbackOutcome) -> bool | None:
    """Reply in the reporter's chat once their report is processed (then the engine purges
    their fields)."""
    if app != "telegram":
        return None
    return feedback.send(dict(reporter), outcome.get("state"))

