"""Mailbox intake (``[intake.mail]``): reports mailed by allowed, DKIM-verified senders.

Hooks only; the source is ``source.py``, the IMAP side ``imap.py``, parsing ``message.py``,
DKIM ``dkim_check.py``, the receipt ``receipt.py``, settings ``settings.py``. ``docs/intake.md``
describes the whole flow.
"""

from __future__ import annotations

from typing import Any

from engine.api import ConfigSchema, IntakeSource, StageContext, hookimpl
from plugins.intake_mail.settings import SCHEMA, SECTION, mail_settings
from plugins.intake_mail.source import MailSource


@hookimpl
def ntd_config_schema() -> ConfigSchema:
    """``[intake.mail]`` and ``[intake.mail.channels]``."""
    return SCHEMA


@hookimpl
def ntd_intake_sources(ctx: StageContext) -> list[IntakeSource] | None:
    """The mailbox source when ``[intake.mail] enabled``; tests may put a DNS function for
    DKIM in ``ctx.state["intake_mail"]["dnsfunc"]``."""
    if not ctx.config.get(SECTION, "enabled", False):
        return None
    state: dict[str, Any] = ctx.state.get("intake_mail", {})
    smtp = dict(ctx.config.section("smtp"))
    return [MailSource(mail_settings(ctx.config), smtp, dnsfunc=state.get("dnsfunc"))]
