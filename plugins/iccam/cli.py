"""Commands of the ICCAM plugin: ``ntd iccam sync|status|errors|resolve`` (``ntd bench iccam``
is ``engine/bench/iccam.py``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from engine.errors import ConfigError, InputError
from engine.plugin_manager import call_all


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _runtime() -> Any:
    return click.get_current_context().find_root().obj.runtime()


async def run_sync(rt: Any, *, do_import: bool, do_export: bool) -> dict[str, Any]:
    """One sync in this process, with every plugin started (the hosting re-check resolves
    through the resolve stage); returns ``ntd iccam sync --json``'s object."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.iccam.settings import iccam_settings

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.iccam.sync import ICCAMSync

    settings = iccam_settings(rt.config)
    if not settings.enabled:
        raise ConfigError("[iccam] base_url is not set: no ICCAM account is configured "
                          "(docs/iccam.md)")
    ctx = rt.context()
    try:
        await call_all(rt.pm, "ntd_startup", ctx=ctx)
        sync = ICCAMSync(ctx, settings)
        try:
            result = await sync.run(do_import=do_import, do_export=do_export)
        finally:
            await sync.aclose()
            await call_all(rt.pm, "ntd_shutdown", ctx=ctx)
    finally:
        await ctx.aclose()
    return result.to_dict()


def _status(rt: Any, case_id: str) -> dict[str, Any]:
    if rt.store.get_case(case_id, events=False) is None:
        raise InputError(f"no case {case_id!r}")
    found = rt.store.iccam_case(case_id)
    items = [{"content_id": i["content_id"], "report_id": i["report_id"],
              "origin": i["origin"], "source": i["is_source"], "url": i["url"],
              "assigned_country": i["assigned_country"],
              "hosting_country": i["hosting_country"], "hosting_ip": i["hosting_ip"],
              "partner_assessment": (i["partner"] or {}).get("assessment")}
             for i in found["items"]]
    by_item = {i["id"]: i for i in found["items"]}
    steps = [{"step": s["step"], "action": s["action"], "state": s["state"],
              "content_id": (by_item.get(s["item_id"]) or {}).get("content_id"),
              "attempts": s["attempts"], "fact_at": s["fact_at"], "sent_at": s["sent_at"],
              "error": s["error"], "idempotency_key": s["idempotency_key"]}
             for s in found["steps"]]
    return {"case_id": case_id, "items": items, "steps": steps}


def register(cli: click.Group) -> None:
    """Add ``ntd iccam``."""
    if "iccam" in cli.commands:
        return

    @cli.group()
    def iccam() -> None:
        """ICCAM v3: exchange reports with INHOPE partner hotlines (docs/iccam.md)."""

    @iccam.command("sync")
    @click.option("--import", "do_import", is_flag=True, help="Only import (both if neither).")
    @click.option("--export", "do_export", is_flag=True, help="Only export (both if neither).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def sync_cmd(do_import: bool, do_export: bool, as_json: bool) -> None:
        """Import reports assigned to us, then send our reports and actions."""
        both = not (do_import or do_export)
        result = asyncio.run(run_sync(_runtime(), do_import=do_import or both,
                                      do_export=do_export or both))
        if as_json:
            _emit(result)
            return
        click.echo(f"imported {result['imported']}, linked {result['linked']}, reports "
                   f"created {result['reports_created']}, actions sent "
                   f"{result['actions_sent']}, retrying {result['retrying']}")
        for error in result["errors"]:
            click.echo(f"error: {error.get('case_id') or error.get('report_id') or ''} "
                       f"{error.get('step') or error['kind']}: {error['error']}")

    @iccam.command("status")
    @click.argument("case_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def status_cmd(case_id: str, as_json: bool) -> None:
        """A case's ICCAM links (report and content ids) and every export step."""
        result = _status(_runtime(), case_id)
        if as_json:
            _emit(result)
            return
        if not result["items"] and not result["steps"]:
            click.echo(f"{case_id}: not linked to ICCAM")
            return
        for i in result["items"]:
            click.echo(f"content {i['content_id'] or '?'} of report {i['report_id'] or '?'} "
                       f"({i['origin']}{', page' if i['source'] else ''}): assigned to "
                       f"{i['assigned_country'] or '?'}, hosted in "
                       f"{i['hosting_country'] or '?'}")
        for s in result["steps"]:
            what = s["action"] or s["step"]
            click.echo(f"  {what:<14} content {s['content_id'] or '-':<8} {s['state']:<9} "
                       f"attempts {s['attempts']}  {s['sent_at'] or ''} {s['error'] or ''}")

    @iccam.command("errors")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def errors_cmd(as_json: bool) -> None:
        """Permanent ICCAM refusals (with ICCAM's text), reports in doubt, import problems."""
        problems = _runtime().store.iccam_problems()
        if as_json:
            _emit(problems)
            return
        if not problems:
            click.echo("no ICCAM errors")
        for p in problems:
            where = p["case_id"] or f"report {p['report_id']}"
            click.echo(f"{p['at']}  {where}  {p['action'] or p['step']}  {p['state']}: "
                       f"{p['error']}")

    @iccam.command("resolve")
    @click.argument("case_id")
    @click.option("--report-id", type=click.IntRange(min=1), default=None,
                  help="The report ICCAM holds for the case (the lost answer).")
    @click.option("--resend", is_flag=True, help="ICCAM has no such report: send it again.")
    def resolve_cmd(case_id: str, report_id: int | None, resend: bool) -> None:
        """Settle a report left in doubt (or failed) by a crash mid-request."""
        if (report_id is None) == (not resend):
            raise click.UsageError("give exactly one of --report-id N and --resend")
        rt = _runtime()
        if not rt.store.iccam_resolve(case_id, now=rt.clock.now_text(),
                                      report_id=report_id):
            raise InputError(f"case {case_id} has no ICCAM report in doubt or failed")
        click.echo(f"{case_id}: " + (f"report {report_id} recorded" if report_id
                                     else "report queued to be sent again"))
