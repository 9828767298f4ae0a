"""Privacy commands: ``ntd feedback``, ``ntd purge``, ``ntd dsr``, ``ntd audit``."""

from __future__ import annotations

import click

from engine import retention
from engine.cli.common import JSON_OPT, Obj, emit_json
from engine.cli.root import cli
from engine.errors import InputError

ANALYST_OPT = click.option("--analyst", default=None, envvar="NTD_ANALYST",
                           help="Who acts (default: $NTD_ANALYST or the OS user).")


@cli.command()
@click.argument("case_id", required=False)
@click.option("--due", is_flag=True, help="List reports whose reporter awaits feedback.")
@click.option("--sent", is_flag=True, help="Confirm feedback was given for CASE_ID.")
@ANALYST_OPT
@JSON_OPT
@click.pass_obj
def feedback(obj: Obj, case_id: str | None, due: bool, sent: bool, analyst: str | None,
             as_json: bool) -> None:
    """Feedback to chat reporters: list what is due, or confirm it was given."""
    rt = obj.runtime()
    if sent:
        if not case_id:
            raise InputError("feedback --sent needs a CASE_ID")
        n = rt.store.feedback_sent(case_id, rt.clock.now_text())
        rt.store.audit(actor=retention.actor_name(analyst), action="feedback_sent",
                       obj=f"case:{case_id}", now=rt.clock.now_text(), detail={"records": n})
        emit_json({"case": case_id, "marked": n}) if as_json else click.echo(
            f"{case_id}: feedback recorded for {n} reporter(s)")
        return
    if not due:
        raise InputError("use --due to list, or CASE_ID --sent to confirm")
    rows = [{"case": r["case_id"], "app": r["app"], "reported_at": r["created_at"],
             "processed_at": r["processed_at"], "state": r["state"]}
            for r in rt.store.feedback_due()]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['case']}  {r['app'] or '-':<9} processed {r['processed_at']}  "
                   f"{r['state']}")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
@JSON_OPT
@click.pass_obj
def purge(obj: Obj, dry_run: bool, as_json: bool) -> None:
    """Delete reporter data and anonymise cases whose retention period has passed."""
    rt = obj.runtime()
    retention.send_feedback(rt)
    result = retention.purge(rt, dry_run=dry_run)
    if as_json:
        emit_json(result)
    else:
        verb = "would purge" if dry_run else "purged"
        click.echo(f"{verb} {result['reporters_purged']} reporter record(s); "
                   f"{'would anonymise' if dry_run else 'anonymised'} "
                   f"{result['cases_anonymised']} case(s)")


@cli.group()
def dsr() -> None:
    """Data-subject requests of chat reporters (access, erasure, restriction)."""


def _subject(f):  # type: ignore[no-untyped-def]
    f = click.option("--phone", default=None, help="The reporter's phone number.")(f)
    f = click.option("--username", default=None, help="The reporter's chat username.")(f)
    return f


@dsr.command("export")
@_subject
@ANALYST_OPT
@JSON_OPT
@click.pass_obj
def dsr_export(obj: Obj, phone: str | None, username: str | None, analyst: str | None,
               as_json: bool) -> None:
    """Everything held about a reporter (access / portability)."""
    rows = retention.dsr_export(obj.runtime(), phone=phone, username=username,
                                actor=retention.actor_name(analyst))
    if as_json:
        emit_json(rows)
        return
    click.echo(f"{len(rows)} record(s)")
    for r in rows:
        click.echo(f"- {r['reported_at']} via {r['app']}: {r['reporter']} → case "
                   f"{r['report']['case']}")


@dsr.command("erase")
@_subject
@ANALYST_OPT
@JSON_OPT
@click.pass_obj
def dsr_erase(obj: Obj, phone: str | None, username: str | None, analyst: str | None,
              as_json: bool) -> None:
    """Erase everything held about a reporter."""
    n = retention.dsr_erase(obj.runtime(), phone=phone, username=username,
                            actor=retention.actor_name(analyst))
    emit_json({"erased": n}) if as_json else click.echo(f"erased {n} record(s)")


@dsr.command("restrict")
@_subject
@click.option("--lift", is_flag=True, help="Lift an earlier restriction.")
@ANALYST_OPT
@JSON_OPT
@click.pass_obj
def dsr_restrict(obj: Obj, phone: str | None, username: str | None, lift: bool,
                 analyst: str | None, as_json: bool) -> None:
    """Freeze processing (and purging) of a reporter's records until lifted."""
    n = retention.dsr_restrict(obj.runtime(), phone=phone, username=username,
                               actor=retention.actor_name(analyst), lift=lift)
    emit_json({"restricted" if not lift else "lifted": n}) if as_json else click.echo(
        f"{'lifted restriction on' if lift else 'restricted'} {n} record(s)")


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), default=None)
@JSON_OPT
@click.pass_obj
def audit(obj: Obj, limit: int | None, as_json: bool) -> None:
    """The audit log: who viewed, exported, changed or erased what."""
    rows = obj.runtime().store.audit_log(limit=limit)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['at']}  {r['actor']:<20} {r['action']:<16} {r['object']}")
