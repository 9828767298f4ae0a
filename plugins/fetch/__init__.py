"""Fetch stage (entry point fetch): the hook implementations; the logic is in fetcher, the
browser mode in browser, ``ntd fetch`` in cli.

Every request goes through ctx.fetcher (the SSRF-safe fetcher); bytes live only in memory.
"""

from __future__ import annotations

from typing import Any

from engine import hookimpl
from engine.api import Case, StageContext
from engine.config import Option, header_value, port_list, positive
from engine.models import StageResult
from plugins.fetch.browser import BROWSER_OPTIONS
from plugins.fetch.cli import register
from plugins.fetch.fetcher import (
    HOSTILE_INPUT_OPTIONS,
    close_browser_pool,
    configure_cpu_pool,
    fetch_case,
)


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {"fetch": {
        "max_bytes": Option(type=int, default=20 * 1024 * 1024, check=positive,
                            help="body cap per response, counted while streaming"),
        "max_video_bytes": Option(type=int, default=200 * 1024 * 1024, check=positive,
                                  help="body cap of a video (sniffed: MP4, QuickTime, WebM, "
                                       "Matroska), counted while streaming"),
        "total_timeout": Option(type=float, default=30.0, check=positive,
                                help="deadline for a whole request, redirects included"),
        "connect_timeout": Option(type=float, default=10.0, check=positive),
        "max_redirects": Option(type=int, default=5, check=lambda v: None if v >= 0 else
                                "must be 0 or more"),
        "user_agent": Option(type=str, default="ntd/0.1 (+hotline notice-and-takedown)",
                             check=header_value),
        "allowed_ports": Option(type=list, default=[80, 443, 8080, 8443], check=port_list),
        "max_media_per_page": Option(type=int, default=50, check=positive),
        "media_concurrency": Option(type=int, default=8, check=positive,
                                    help="media fetched at once per page"),
        "retry_minutes": Option(type=float, default=60.0, check=positive,
                                help="first retry delay of an unreachable URL (doubles)"),
        "max_attempts": Option(type=int, default=5, check=positive,
                               help="fetch attempts before a case is marked failed"),
        "hash_cache_entries": Option(
            type=int, default=50_000, check=lambda v: None if v >= 0 else "must be 0 or more",
            help="perceptual hashes remembered by SHA-256 (the same file at many URLs is "
                 "decoded once); 0 disables"),
        **HOSTILE_INPUT_OPTIONS,
    }, "fetch.browser": dict(BROWSER_OPTIONS)}


@hookimpl
def ntd_startup(ctx: StageContext) -> None:
    configure_cpu_pool(ctx)


@hookimpl
async def ntd_shutdown(ctx: StageContext) -> None:
    await close_browser_pool(ctx)


@hookimpl
def ntd_register_commands(cli: Any) -> None:
    register(cli)


@hookimpl
async def ntd_fetch(case: Case, ctx: StageContext) -> StageResult:
    return await fetch_case(case, ctx)
