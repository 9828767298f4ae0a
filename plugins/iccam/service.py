"""The ICCAM plugin inside a run: its state, the notice channel, the daemon's sync loop and the
partner-Baseline rule of the match stage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from engine import hookimpl
from engine.errors import NtdError
from engine.models import StageResult
from plugins.iccam.channel import ICCAMChannel
from plugins.iccam.settings import IccamSettings, iccam_settings
from plugins.iccam.sync import ICCAMSync

log = logging.getLogger("ntd.iccam")
STATE_KEY = "iccam"
BASELINE_PLUGIN = "iccam_partner_baseline"


def settings_of(ctx: Any) -> IccamSettings:
    """This run's ``[iccam]`` settings (read once per run)."""
    state = ctx.state.setdefault(STATE_KEY, {})
    if "settings" not in state:
        state["settings"] = iccam_settings(ctx.config)
    settings: IccamSettings = state["settings"]
    return settings


class PartnerBaseline:
    """The match-stage rule for a partner's Baseline (registered by ``start_run`` only when
    ``accept_partner_baseline`` is on; tried before the built-in matcher)."""

    @hookimpl(tryfirst=True)
    def ntd_match(self, case: Any, ctx: Any) -> StageResult | None:
        """Confirm a case a partner assessed as Baseline in ICCAM; else let others decide."""
        return partner_baseline(case, ctx)


def start_run(ctx: Any) -> None:
    """``ntd_startup``: settings, and the event the channel wakes the exporter with. With
    ``--daemon`` a configured account is checked now, so a typo stops the start."""
    settings = settings_of(ctx)
    ctx.state[STATE_KEY]["wake"] = asyncio.Event()
    if settings.accept_partner_baseline and not ctx.pm.has_plugin(BASELINE_PLUGIN):
        ctx.pm.register(PartnerBaseline(), name=BASELINE_PLUGIN)
    if settings.enabled and getattr(ctx, "daemon", False):
        settings.check_account()
        settings.password()  # the secret is there (ConfigError names the variable otherwise)


def stop_run(ctx: Any) -> None:
    """``ntd_shutdown``: take the match-stage rule out again."""
    plugin = ctx.pm.get_plugin(BASELINE_PLUGIN)
    if plugin is not None:
        ctx.pm.unregister(plugin, name=BASELINE_PLUGIN)


def notice_channels(ctx: Any) -> list[ICCAMChannel] | None:
    """``ntd_notice_channels``: the ``iccam`` channel, when an ICCAM account is configured."""
    return [ICCAMChannel(ctx)] if settings_of(ctx).enabled else None


def daemon_service(ctx: Any, stop: asyncio.Event) -> Any:
    """``ntd_service``: with ``--daemon`` and an account, sync every ``poll_minutes``."""
    settings = settings_of(ctx)
    if not settings.enabled or not getattr(ctx, "daemon", False):
        return None
    return _sync_loop(ctx, settings, stop)


async def _sync_loop(ctx: Any, settings: IccamSettings, stop: asyncio.Event) -> None:
    wake: asyncio.Event = ctx.state[STATE_KEY].setdefault("wake", asyncio.Event())
    interval = settings.poll_minutes * 60
    last_import = float("-inf")
    sync: ICCAMSync | None = None
    try:
        while not stop.is_set():
            full = time.monotonic() - last_import >= interval
            wake.clear()
            try:
                if sync is None:
                    sync = ICCAMSync(ctx, settings)
                result = await sync.run(do_import=full, do_export=True)
                if full:
                    last_import = time.monotonic()
                if result.errors:
                    log.warning("iccam sync: %d error(s), first: %s", len(result.errors),
                                result.errors[0].get("error"))
            except NtdError as exc:
                log.warning("iccam sync: %s", exc)
                last_import = time.monotonic()
            except Exception:  # a bug must not end the run; the next round tries again
                log.exception("iccam sync failed")
                last_import = time.monotonic()
            left = max(0.05, interval - (time.monotonic() - last_import))
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
    finally:
        if sync is not None:
            await sync.aclose()


def partner_baseline(case: Any, ctx: Any) -> StageResult | None:
    """``ntd_match`` (tried first): with ``accept_partner_baseline``, a partner's Baseline
    assessment in ICCAM confirms the case without a second human look. Otherwise ``None``: the
    match stage decides, and the case shows the partner's assessment in the queue."""
    settings = settings_of(ctx)
    data = case.data.get("iccam") or {}
    if not settings.accept_partner_baseline or not data.get("partner_baseline"):
        return None
    report = (data.get("reports") or [{}])[0]
    partner = report.get("partner_hotline")
    return StageResult(
        state="confirmed", action="confirmed", actor="iccam",
        detail={"by": "partner_baseline", "partner_hotline": partner,
                "report": report.get("report_id")},
        data={"assessment": {"verdict": "illegal", "category": "baseline",
                             "by": f"iccam:partner-hotline-{partner}",
                             "at": ctx.clock.now_text()}})
