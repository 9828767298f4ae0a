"""The notice sender: aggregate waiting actions, claim due notices, deliver, record the outcome.

One round (``drain_once``): waiting outbox actions are grouped into notices (per recipient, after
the aggregation window); up to ``batch_size`` due notices are claimed under a lease, which marks
them ``sending`` and counts the attempt *before* anything is sent; each is rendered and handed to
its channel concurrently (the SMTP channel applies per-domain limits); the outcome is recorded
(``sent``, requeued with exponential backoff and jitter, or ``failed``). A crash between the
claim and the record leaves the notice ``sending`` under a dead lease: the next sender (after
releasing dead local owners, or once the lease expires) sends it again with the same idempotency
key, Message-ID and X-ARF report ids, so the recipient can recognise the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine import clock
from engine.context import fetch_policy
from engine.errors import NtdError
from engine.pipeline import dead_local_owners
from engine.plugin_manager import call_all_sync
from engine.store.roles import Gate
from plugins.notify.api_channel import APIChannel
from plugins.notify.channels import Channel, Outcome, registered_channels
from plugins.notify.message import Prepared, dkim_key, email_bytes, prepare, render_notice
from plugins.notify.render import Renderer
from plugins.notify.settings import NoticeSettings, SMTPSettings, notice_settings, smtp_settings
from plugins.notify.smtp_channel import SMTPChannel
from plugins.notify.windows import SendingRules

log = logging.getLogger("ntd.notices")


class DryRunChannel:
    """Writes ``<id>.eml`` (e-mail notices) and ``<id>.json`` (X-ARF reports) to a folder."""

    def __init__(self, name: str, folder: Path, build: Any) -> None:
        self.name = name
        self.folder = folder
        self.build = build

    async def send(self, prepared: Prepared) -> Outcome:
        """Render to files instead of sending."""
        self.folder.mkdir(parents=True, exist_ok=True)
        notice_id = prepared.notice["id"]
        if self.name == "email":
            (self.folder / f"{notice_id}.eml").write_bytes(self.build(prepared))
        body = json.dumps({"notice": notice_id, "recipient": prepared.notice["recipient"],
                           "channel": self.name,
                           "idempotency_key": prepared.notice["idempotency_key"],
                           "subject": prepared.rendered.subject, "xarf": prepared.reports},
                          indent=1, ensure_ascii=False, sort_keys=True)
        (self.folder / f"{notice_id}.json").write_text(body + "\n", encoding="utf-8")
        return Outcome(status="sent", detail=f"dry-run {self.folder / notice_id}")

    async def aclose(self) -> None:
        """Nothing to close."""


def backoff_seconds(attempts: int, settings: NoticeSettings, rng: random.Random) -> float:
    """Exponential backoff with jitter: base·2^(n-1), capped, times 1 ± jitter."""
    delay = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(0, attempts - 1))
    return delay * (1 + rng.uniform(-settings.retry_jitter, settings.retry_jitter))


class NoticeSender:
    """Drains the notice outbox for one process (lease owner ``ctx.owner``)."""

    def __init__(self, ctx: Any, *, settings: NoticeSettings, smtp: SMTPSettings,
                 renderer: Renderer, channels: dict[str, Channel],
                 dkim: bytes | None = None, render_in_pool: bool = False) -> None:
        """``render_in_pool`` renders notices (signed with ``dkim``) in the run's CPU pool with
        the renderer of ``settings.template_dir``; otherwise ``renderer`` renders them on the
        event loop."""
        self.ctx = ctx
        self.dkim = dkim
        self.render_in_pool = render_in_pool
        self.settings = settings
        self.smtp = smtp
        self.renderer = renderer
        self.channels = channels
        self.rng = random.Random()
        self.sent = 0
        self.rules = SendingRules(window=settings.send_window, blocked_days=settings.blocked_days,
                                  public_holidays=settings.public_holidays,
                                  require_approval=settings.require_approval)

    @classmethod
    def from_context(cls, ctx: Any, *, render_in_pool: bool = False) -> NoticeSender:
        """Build the sender from the run's configuration (templates validated here).

        ``render_in_pool``: render in the run's CPU pool (``ntd run``, whose event loop also
        fetches and commits); a standalone ``ntd notices send`` renders on its own loop."""
        settings = notice_settings(ctx.config)
        smtp = smtp_settings(ctx.config)
        renderer = Renderer(settings.template_dir)
        renderer.validate()
        key = dkim_key(smtp)

        def build(prepared: Prepared) -> bytes:
            if prepared.email is not None:  # built in the CPU pool with the rest
                return prepared.email
            return email_bytes(prepared, settings, smtp, key)

        channels: dict[str, Channel] = {}
        # Channels other plugins add (ntd_notice_channels), e.g. ICCAM's.
        hooked = [c for answer, _ in call_all_sync(ctx.pm, "ntd_notice_channels", ctx=ctx)
                  for c in answer]
        if settings.mode == "dry-run":
            folder = Path(settings.dry_run_dir)
            for name in ("email", "api", *registered_channels(), *(c.name for c in hooked)):
                channels[name] = DryRunChannel(name, folder, build)
        else:
            channels["email"] = SMTPChannel(smtp, build)
            # The fetch rules (private addresses only with the [lab] switch, the static host
            # map, TLS verification), with the ports API endpoints may use.
            policy = dataclasses.replace(fetch_policy(ctx.config),
                                         allowed_ports=frozenset(settings.api_allowed_ports))
            channels["api"] = APIChannel(settings.api, timeout=settings.api_timeout,
                                         policy=policy)
            for name, factory in registered_channels().items():
                channels[name] = factory(ctx)
            channels.update((c.name, c) for c in hooked)
        return cls(ctx, settings=settings, smtp=smtp, renderer=renderer, channels=channels,
                   dkim=key, render_in_pool=render_in_pool)

    # -- rounds --------------------------------------------------------------------------------
    async def release_dead(self) -> int:
        """Free notices leased by dead processes on this host (a ``kill -9`` mid-send)."""
        owners = await self.ctx.store.notice_lease_owners()
        dead = dead_local_owners(list(owners), self.ctx.owner)
        return await self.ctx.store.release_notice_owners(dead) if dead else 0

    async def drain_once(self, *, flush: bool = False) -> int:
        """Aggregate, claim one batch and deliver it; returns how many notices were tried."""
        store = self.ctx.store
        now = self.ctx.clock.now_text()
        await store.aggregate_notices(
            now=now, window_seconds=0.0 if flush else self.settings.window_seconds,
            max_urls=self.settings.max_urls_per_notice, sendable=sorted(self.channels))
        claimed = await store.claim_notices(owner=self.ctx.owner,
                                            limit=self.settings.batch_size, now=now,
                                            lease_seconds=self.settings.lease_seconds,
                                            gate=await self._gate(now))
        if claimed:
            await asyncio.gather(*(self._deliver(n) for n in claimed))
        return len(claimed)

    async def _gate(self, now: str) -> Gate | None:
        """This round's sending rules (windows, approvals) as a claim gate, if any apply."""
        rules = self.rules
        if not rules.active:
            return None
        if rules.require_approval:
            rules.approved = await self.ctx.store.approved_addresses()
        moment = clock.parse(now)
        return lambda notice: rules.gate(notice, moment)

    async def drain(self, *, flush: bool = False, until_idle: bool = False) -> int:
        """Rounds until nothing was claimed; ``until_idle`` also waits out due retries."""
        await self.release_dead()
        total = 0
        while True:
            tried = await self.drain_once(flush=flush)
            total += tried
            if tried:
                continue
            if not until_idle:
                return total
            due = await self.ctx.store.notice_work_due(
                now=self.ctx.clock.now_text(),
                window_seconds=0.0 if flush else self.settings.window_seconds)
            if not due:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """The ``ntd run`` service: rounds until ``stop`` is set."""
        with contextlib.suppress(NtdError):
            await self.release_dead()
        while not stop.is_set():
            try:
                tried = await self.drain_once()
            except Exception as exc:  # a store hiccup must not end the whole run
                log.warning("notice sender: %s: %s", type(exc).__name__, exc)
                tried = 0
            if not tried:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.poll_seconds)

    async def aclose(self) -> None:
        """Close every channel."""
        for channel in self.channels.values():
            await channel.aclose()

    # -- one notice ----------------------------------------------------------------------------
    async def _prepare(self, notice: dict[str, Any]) -> Prepared:
        if not self.render_in_pool:
            return prepare(notice, self.renderer, self.settings, self.smtp)
        prepared: Prepared = await self.ctx.run_cpu(
            render_notice, notice, self.settings, self.smtp, self.dkim,
            notice["channel"] == "email")
        return prepared

    async def _deliver(self, notice: dict[str, Any]) -> None:
        store = self.ctx.store
        channel = self.channels.get(notice["channel"])
        try:
            if channel is None:
                outcome = Outcome(status="failed",
                                  detail=f"no sender for channel {notice['channel']!r}")
            else:
                prepared = await self._prepare(notice)
                outcome = await channel.send(prepared)
        except NtdError as exc:  # e.g. a missing secret: our configuration, not the recipient
            outcome = Outcome(status="retry", detail=str(exc))
        except Exception as exc:  # a channel bug must not lose the notice: retry later
            outcome = Outcome(status="retry", detail=f"{type(exc).__name__}: {exc}")
        now_dt = self.ctx.clock.now()
        now = clock.fmt(now_dt)
        owner = self.ctx.owner
        if outcome.status == "sent":
            if await store.notice_sent(notice["id"], owner=owner, now=now,
                                       receipt=outcome.detail):
                self.sent += 1
            return
        if outcome.status == "retry":
            age = now_dt - clock.parse(notice["created_at"])
            if age < timedelta(hours=self.settings.retry_horizon_hours):
                delay = backoff_seconds(notice["attempts"], self.settings, self.rng)
                await store.notice_retry(
                    notice["id"], owner=owner, now=now, error=outcome.detail,
                    next_attempt_at=clock.fmt(now_dt + timedelta(seconds=delay)))
                return
            outcome = Outcome(status="failed", blame_recipient=True,
                              detail=f"gave up after {notice['attempts']} attempts: "
                                     f"{outcome.detail}")
        log.warning("notice %s to %s failed: %s", notice["id"], notice["recipient"],
                    outcome.detail)
        if await store.notice_failed(notice["id"], owner=owner, now=now, error=outcome.detail):
            if outcome.blame_recipient:
                await store.contact_failed(notice["recipient"], outcome.detail, now)
