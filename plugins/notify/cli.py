"""Commands of the notify plugin: ``ntd notices …`` and ``ntd bench notify``."""

from __future__ import annotations

import asyncio
import getpass
import json
from typing import Any

import click

from engine.errors import InputError
from engine.store.roles import NOTICE_STATES
from engine.takedown import release_case

__all__ = ["contract_row", "register", "release_case", "send_notices"]

CONTRACT_KEYS = ("id", "case_ids", "recipient", "channel", "state", "attempts",
                 "idempotency_key", "sent_at", "error")
EXTRA_KEYS = ("recipient_kind", "language", "url_count", "created_at", "next_attempt_at",
              "receipt", "not_before")


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def contract_row(notice: dict[str, Any]) -> dict[str, Any]:
    """A notice as ``ntd notices --json`` prints it (contract keys first)."""
    return {**{k: notice.get(k) for k in CONTRACT_KEYS}, **{k: notice.get(k) for k in EXTRA_KEYS}}


async def send_notices(rt: Any, *, flush: bool, until_idle: bool) -> dict[str, Any]:
    """Run the sender in this process until nothing is claimable (what ``notices send`` does)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
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
            if n.get("not_before") and n["state"] == "queued":
                when = f"not before {n['not_before']}"
            click.echo(f"{n['id']}  {n['state']:<8} {n['channel']:<6} {n['recipient']}  "
                       f"{len(n['case_ids'])} case(s), {n['url_count']} URL(s), "
                       f"attempts {n['attempts']}  {when}"
                       + (f"\n    error: {n['error']}" if n["error"] else ""))

    @cli.command("release")
    @click.argument("case_id")
    @click.option("--note", default=None, help="Why (kept in the case's trail).")
    @click.option("--decline", is_flag=True,
                  help="Do not release: close the case for takedown (give --note).")
    @click.option("--liaison", default=None, help="Who decides (default: your login name).")
    @click.pass_context
    def release(ctx: click.Context, case_id: str, note: str | None, decline: bool,
                liaison: str | None) -> None:
        """Police liaison: let a held_for_police case's hoster notices go, or decline."""
        rt = ctx.find_root().obj.runtime()
        result = release_case(rt, case_id, actor=f"police:{liaison or getpass.getuser()}",
                              note=note, decline=decline)
        click.echo(f"{case_id}  {result['state']}: {result['notices']} notice action(s) "
                   + ("dropped" if decline else "released"))

    @cli.command("police-first")
    @click.argument("case_id")
    @click.argument("setting", type=click.Choice(["on", "off", "default"]))
    @click.option("--note", default=None, help="Why (kept in the case's trail).")
    @click.pass_context
    def police_first_cmd(ctx: click.Context, case_id: str, setting: str,
                         note: str | None) -> None:
        """Per case: hold hoster notices for the police liaison (on), never (off), or follow
        [routing] police_first (default). Applies when the case is noticed."""
        rt = ctx.find_root().obj.runtime()
        found = rt.store.get_case(case_id, events=False)
        if found is None:
            raise InputError(f"no case {case_id!r}")
        value = {"on": True, "off": False, "default": None}[setting]
        rt.store.transition(case_id, state=found["state"], stage="route",
                            actor=f"analyst:{getpass.getuser()}", action="police_first",
                            now=rt.clock.now_text(), detail={"police_first": setting,
                                                             "note": note},
                            data={"police_first": value}, retry_at=found.get("retry_at"),
                            expect=[found["state"]])
        click.echo(f"{case_id}  police first: {setting}")

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
