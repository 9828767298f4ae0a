"""ICCAM v3 (entry point ``iccam``): exchange reports with the INHOPE network.

Reports other hotlines assign to our country arrive as cases (channel ``iccam``); a forward to
an INHOPE partner becomes our ICCAM report (the ``iccam`` notice channel); what then happens to
each content item (notice to the hoster, report to police, removal, not illegal, moved abroad)
is recorded in ICCAM as an action, each exactly once, in ICCAM's order. ``docs/iccam.md``.

Modules: ``client`` (mutual TLS, tokens, retries), ``importer``, ``exporter`` (planning and the
outbox), ``sync`` (one import + export), ``channel``, ``mapping`` (ntd ↔ ICCAM values),
``settings`` (``[iccam]``), ``service`` (this plugin inside a run, including the match-stage
rule for a partner's Baseline, registered only when ``accept_partner_baseline`` is on, so the
match stage still parks when no matcher is installed), ``cli`` (``ntd iccam``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine import hookimpl
from engine.config import Option
from plugins.iccam.cli import register
from plugins.iccam.settings import SCHEMA


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {section: dict(options) for section, options in SCHEMA.items()}


@hookimpl
def ntd_startup(ctx: Any) -> None:
    # deferred: pulls in httpx, tldextract, loaded on first use
    from plugins.iccam.service import start_run

    start_run(ctx)


@hookimpl
def ntd_notice_channels(ctx: Any) -> list[Any] | None:
    # deferred: pulls in httpx, tldextract, loaded on first use
    from plugins.iccam.service import notice_channels

    return notice_channels(ctx)


@hookimpl
def ntd_service(ctx: Any, stop: asyncio.Event) -> Any:
    # deferred: pulls in httpx, tldextract, loaded on first use
    from plugins.iccam.service import daemon_service

    return daemon_service(ctx, stop)


@hookimpl
def ntd_shutdown(ctx: Any) -> None:
    # deferred: pulls in httpx, tldextract, loaded on first use
    from plugins.iccam.service import stop_run

    stop_run(ctx)


@hookimpl
def ntd_register_commands(cli: Any) -> None:
    register(cli)
