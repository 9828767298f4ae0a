"""Commands of the notify plugin: ``ntd notices …`` and ``ntd bench notify``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from engine.errors import InputError
from engine.store.roles import NOTICE_STATES

CONTRACT_KEYS = ("id", "case_ids", "recipient", "channel", "state", "attempts",
                 "idempotency_key", "sent_at", "error")
EXTRA_KEYS = ("recipient_kind", "language", "url_count", "created_at", "next_attempt_at",
              "receipt")


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def contract_row(notice: dict[str, Any]) -> dict[str, Any]:
    """A notice as ``ntd notices --json`` prints it (contract keys first)."""
    return {**{k: notice.get(k) for k in CONTRACT_KEYS}, **{k: notice.get(k) for k in EXTRA_KEYS}}


async def send_notices(rt: Any, *, flush: bool, until_idle: bool) -> dict[str, Any]:
    """Run the sender in this process until nothing is claimable (what ``notices send`` does)."""
    from plugins.notify.sender import NoticeSender

    ctx = rt.context()
    try:
        sender = NoticeSender.from_context(ctx)
        try:
            tried = await sender.drain(flush=flush, until_idle=until_idle)
        finally:
            await sender.aclose()
        counts = await ctx.store.notice_counts()
    finally:
        await ctx.aclose()
    return {"tried": tried, "sent": sender.sent, "notices": counts}


def register(cli: click.Group) -> None:
    """Add ``notices`` and ``bench notify`` to ``cli``."""
    if "notices" in cli.commands:
        return  # already registered (the group is module-global)

    @cli.group("notices", invoke_without_command=True)
    @click.option("--state", type=click.Choice(NOTICE_STATES), default=None,
                  help="Only notices in this state.")
    @click.option("--limit", type=click.IntRange(min=1), default=None)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def notices(ctx: click.Context, state: str | None, limit: int | None,
                as_json: bool) -> None:
        """Notices to hosting providers, registrars, hotlines, police (oldest first)."""
        if ctx.invoked_subcommand is not None:
            return
        rt = ctx.find_root().obj.runtime()
        rows = [contract_row(n) for n in rt.store.list_notices(state=state, limit=limit)]
        if as_json:
            _emit(rows)
            return
        if not rows:
            click.echo("no notices")
        for n in rows:
            when = n["sent_at"] or n["next_attempt_at"] or ""
            click.echo(f"{n['id']}  {n['state']:<8} {n['channel']:<6} {n['recipient']}  "
                       f"{len(n['case_ids'])} case(s), {n['url_count']} URL(s), "
                       f"attempts {n['attempts']}  {when}"
                       + (f"\n    error: {n['error']}" if n["error"] else ""))

    @notices.command("show")
    @click.argument("notice_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def notices_show(ctx: click.Context, notice_id: str, as_json: bool) -> None:
        """One notice with its actions (URLs, hashes, classification per case)."""
        rt = ctx.find_root().obj.runtime()
        notice = rt.store.get_notice(notice_id)
        if notice is None:
            raise InputError(f"no notice {notice_id!r}")
        if as_json:
            _emit({**contract_row(notice), "actions": notice["actions"]})
            return
        row = contract_row(notice)
        for key, value in row.items():
            click.echo(f"{key:<16} {value}")
        for action in notice["actions"]:
            click.echo(f"- case {action.get('case_id')} ({action.get('reference')}), "
                       f"{action.get('action')} to {action.get('recipient_kind')}, "
                       f"decided by {action.get('decided_by')}")
            for entry in action.get("entries") or []:
                click.echo(f"    {entry['url']}  [{entry.get('classification')}, "
                           f"{entry.get('detection_method')}]")

    @notices.command("retry")
    @click.argument("notice_id")
    @click.pass_context
    def notices_retry(ctx: click.Context, notice_id: str) -> None:
        """Queue a failed notice for sending again now."""
        rt = ctx.find_root().obj.runtime()
        if not rt.store.retry_notice(notice_id, now=rt.clock.now_text()):
            notice = rt.store.get_notice(notice_id)
            if notice is None:
                raise InputError(f"no notice {notice_id!r}")
            raise InputError(f"notice {notice_id} is {notice['state']}; only failed or queued "
                             "notices can be retried")
        click.echo(f"notice {notice_id} queued")

    @notices.command("send")
    @click.option("--until-idle", is_flag=True,
                  help="Keep going while anything is due (retries that fall due included).")
    @click.option("--flush", is_flag=True, help="Ignore the aggregation window.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def notices_send(ctx: click.Context, until_idle: bool, flush: bool, as_json: bool) -> None:
        """Deliver due notices now (the sender that `ntd run` runs as a service)."""
        rt = ctx.find_root().obj.runtime()
        result = asyncio.run(send_notices(rt, flush=flush, until_idle=until_idle))
        if as_json:
            _emit(result)
            return
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result["notices"].items())) or "none"
        click.echo(f"tried {result['tried']}, sent {result['sent']}; notices: {counts}")
