"""Core commands: intake, running the pipeline, cases, the analyst queue and verdicts, plugins,
configuration, the demo."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import click

from engine.cli.common import JSON_OPT, Obj, console, emit_json, id_table
from engine.cli.root import cli
from engine.errors import InputError, NtdError
from engine.models import CHANNELS


# -- intake ------------------------------------------------------------------------------------
@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--channel", type=click.Choice(CHANNELS), default="analyst", show_default=True,
              help="Where the reports came from.")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json", "ndjson"]),
              default=None, help="Input format (default: from the file name or content).")
@click.option("--strict", is_flag=True,
              help="Exit 2 when any line was rejected (the good lines are stored anyway).")
@JSON_OPT
@click.pass_obj
def submit(obj: Obj, files: tuple[str, ...], channel: str, fmt: str | None, strict: bool,
           as_json: bool) -> None:
    """Submit URLs from FILES (text, CSV, JSON, NDJSON; '-' reads stdin).

    Exits 2 when the input holds no URL at all (an empty file), and with --strict when any
    line was rejected."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.intake import submit_files

    rt = obj.runtime(create=True)
    with _progress("Submitting", _count_lines(files)) as advance:
        result = submit_files(rt.store, files, channel=channel, fmt=fmt, clock=rt.clock,
                              progress=advance)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(f"batch {result.batch}: {result.accepted} accepted, "
                   f"{result.duplicates} duplicates, {len(result.rejected)} rejected")
        for rej in result.rejected[:50]:
            where = f"{rej['file']}:" if "file" in rej else ""
            click.echo(f"  {where}line {rej['line']}: {rej['reason']}: {rej['input']}",
                       err=True)
        if len(result.rejected) > 50:
            click.echo(f"  … {len(result.rejected) - 50} more (use --json)", err=True)
    if not (result.accepted or result.duplicates or result.rejected):
        raise InputError(f"{', '.join(files)}: no URL in the input (an empty file?)")
    if strict and result.rejected:
        raise InputError(f"--strict: {len(result.rejected)} line(s) rejected "
                         f"({result.accepted + result.duplicates} stored)")


def _count_lines(files: tuple[str, ...]) -> int | None:
    """Total lines of regular files, for the progress bar (None when unknown or not a tty)."""
    if not sys.stderr.isatty():
        return None
    total = 0
    for name in files:
        if name == "-" or not os.path.isfile(name):
            return None
        with open(name, "rb") as fh:
            for block in iter(partial(fh.read, 1 << 20), b""):
                total += block.count(b"\n")
    return total


class _progress:
    """A rich progress bar on a terminal; a no-op otherwise."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self._progress: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not sys.stderr.isatty():
            return lambda done: None
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from rich.console import Console

        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress("[progress.description]{task.description}", BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        task = self._progress.add_task(self.label, total=self.total)
        return lambda done: self._progress.update(task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# -- running -----------------------------------------------------------------------------------
@cli.command()
@click.option("--until-idle", is_flag=True, help="Stop when no case is due in any stage.")
@click.option("--daemon", is_flag=True,
              help="Run continuously (stages, notice sending, re-checks) and purge on schedule.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Workers per stage (default: [pipeline] workers).")
@click.option("--worker-id", default=None, metavar="ID",
              help="This worker's id for leases (default: host:pid).")
@JSON_OPT
@click.pass_obj
def run(obj: Obj, until_idle: bool, daemon: bool, workers: int | None, worker_id: str | None,
        as_json: bool) -> None:
    """Run the pipeline (until idle, or until SIGINT/SIGTERM)."""
    if until_idle and daemon:
        raise click.UsageError("--until-idle and --daemon exclude each other")
    rt = obj.runtime()
    on_progress = _run_progress() if sys.stderr.isatty() and not as_json else None
    try:
        summary = rt.run_pipeline_sync(until_idle=until_idle, workers=workers,
                                       on_progress=on_progress, owner=worker_id,
                                       retention=daemon)
    finally:
        if on_progress is not None:
            on_progress.end()  # the progress line ends before the summary
    failure = summary.config_failure() if until_idle else None
    if as_json:
        emit_json(summary.to_dict())
    else:
        _print_run(summary)
    if failure is not None:  # exit 1: nothing can succeed until the configuration is fixed
        raise NtdError(f"every case of this run failed on the configuration: {failure} "
                       "(fix it and run again; the cases retry)")


def _print_run(summary: Any) -> None:
    done = ", ".join(f"{k} {v}" for k, v in sorted(summary.processed.items())) or "nothing"
    click.echo(f"processed: {done} in {summary.seconds:.1f}s")
    if summary.errors:
        click.echo("errors: " + ", ".join(f"{k} {v}" for k, v in summary.errors.items()))
    if summary.parked:
        click.echo("parked (no plugin for the stage): "
                   + ", ".join(f"{k} {v}" for k, v in summary.parked.items()))
    if summary.stopped_by_signal:
        click.echo(f"stopped by signal; {summary.released} queued cases released")


class _RunProgress:
    """One self-overwriting progress line on stderr (a terminal only); ``end()`` clears it, so
    the summary that follows starts on a line of its own."""

    def __init__(self) -> None:
        self.last = 0.0
        self.shown = False

    def __call__(self, summary: Any) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        text = " ".join(f"{k}:{v}" for k, v in sorted(summary.processed.items()))
        click.echo(f"\r\x1b[K{text}", nl=False, err=True, color=True)
        self.shown = True

    def end(self) -> None:
        """Clear the progress line (if one was drawn)."""
        if self.shown:
            click.echo("\r\x1b[K", nl=False, err=True, color=True)
            self.shown = False


def _run_progress() -> _RunProgress:
    return _RunProgress()


# -- reading -----------------------------------------------------------------------------------
@cli.command()
@JSON_OPT
@click.pass_obj
def status(obj: Obj, as_json: bool) -> None:
    """Counts of cases per state."""
    counts = obj.runtime().store.count_by_state()
    total = sum(counts.values())
    if as_json:
        emit_json({"cases": total, "by_state": counts})
        return
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from rich.table import Table

    table = Table(title=f"{total} cases")
    table.add_column("state")
    table.add_column("cases", justify="right")
    for state, n in counts.items():
        table.add_row(state, str(n))
    console().print(table)


@cli.command()
@click.option("--state", default=None, help="Only cases in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@JSON_OPT
@click.pass_obj
def cases(obj: Obj, state: str | None, limit: int | None, as_json: bool) -> None:
    """List cases (oldest first)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.models import STATES

    if state and state not in STATES:
        raise InputError(f"--state: unknown state {state!r} (known: {', '.join(STATES)})")
    rows = obj.runtime().store.list_cases(state=state, limit=limit)
    if as_json:
        emit_json(rows)
        return
    table = id_table(("id", "state", "domain", "url", "created"))
    for c in rows:
        table.add_row(c["id"], c["state"], c["domain"], c["canonical_url"], c["created_at"])
    console().print(table)


@cli.command()
@click.argument("case_id")
@JSON_OPT
@click.pass_obj
def case(obj: Obj, case_id: str, as_json: bool) -> None:
    """Show one case with its full event trail."""
    rt = obj.runtime()
    found = rt.store.get_case(case_id)
    if found is None:
        raise InputError(f"no case {case_id!r}")
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.retention import actor_name

    rt.store.audit(actor=actor_name(os.environ.get("NTD_ANALYST")),
                   action="view", obj=f"case:{case_id}", now=rt.clock.now_text())
    if as_json:
        emit_json(found)
        return
    con = console()
    con.print(f"[bold]{found['id']}[/bold]  {found['state']}"
              + (f" ({found['state_reason']})" if found.get("state_reason") else ""))
    con.print(f"url:       {found['canonical_url']}\ndomain:    {found['domain']}")
    con.print(f"reports:   {len(found['reports'])}    items: {len(found['items'])}")
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from rich.table import Table

    _print_case_detail(con, found, Table)
    table = Table(title="trail")
    for col in ("at", "stage", "actor", "action", "detail"):
        table.add_column(col, overflow="fold")
    for e in found["events"]:
        table.add_row(e["at"], e["stage"], e["actor"], e["action"],
                      json.dumps(e["detail"], ensure_ascii=False) if e["detail"] else "")
    con.print(table)


def _print_case_detail(con: Any, found: dict[str, Any], table_type: Any) -> None:
    """``ntd case``'s text: assessment, items with hashes and matches, resolution, routes."""
    assessment = found.get("assessment")
    if assessment:
        klass = assessment.get("classification") or {}
        con.print(f"verdict:   {assessment.get('verdict')}"
                  + (f" · {assessment['category']}" if assessment.get("category") else "")
                  + (" · " + " ".join(f"{k}={v}" for k, v in klass.items() if k != "class")
                     if klass else "")
                  + f" by {assessment.get('by')} at {assessment.get('at')}")
    items = table_type(title="items")
    for col in ("#", "kind", "url", "type / size", "hashes", "matches"):
        items.add_column(col, overflow="fold")
    for n, item in enumerate(found["items"]):
        hashes = "\n".join(f"{k} {v}" for k, v in (item.get("hashes") or {}).items())
        matches = ", ".join(f"{m.get('list')}:{m.get('hash_type')}@{m.get('distance')}"
                            for m in item.get("matches") or [])
        items.add_row(str(n), item["kind"], item["url"],
                      f"{item.get('content_type') or '-'} / {item.get('size') or '-'}"
                      + (f" ({item['error']})" if item.get("error") else ""),
                      hashes or "-", matches or "-")
    con.print(items)
    res = found.get("resolution")
    if res:
        con.print(f"resolution: {res.get('host')} → {', '.join(res.get('ips') or []) or '-'}"
                  f"  AS{res.get('asn') or '?'} {res.get('org') or ''}"
                  f"  country {res.get('country') or '?'}"
                  + (f"  CDN {res['cdn']}" if res.get("cdn") else ""))
        for c in res.get("contacts") or []:
            con.print(f"  contact {c.get('scope')}: {c.get('address')} ({c.get('channel')},"
                      f" from {c.get('source')}, confidence {c.get('confidence')})")
    routes = found.get("routes")
    if routes:
        table = table_type(title="routes")
        for col in ("action", "to", "target", "channel", "country", "decided by"):
            table.add_column(col, overflow="fold")
        for r in routes:
            table.add_row(str(r.get("action")), str(r.get("recipient_kind")),
                          str(r.get("target")), str(r.get("channel")), str(r.get("country")),
                          str(r.get("decided_by")))
        con.print(table)


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), default=None)
@JSON_OPT
@click.pass_obj
def queue(obj: Obj, limit: int | None, as_json: bool) -> None:
    """Cases awaiting an analyst's assessment, oldest first (media is never shown)."""
    rows = obj.runtime().store.list_cases(state="awaiting_assessment", limit=limit)
    if as_json:
        emit_json(rows)
        return
    table = id_table(("id", "waiting since", "url", "items", "matches"),
                     title=f"{len(rows)} cases awaiting assessment")
    for c in rows:
        matches = [f"{m['list']}:{m['hash_type']}@{m['distance']}"
                   for item in c["items"] for m in item.get("matches", [])]
        partner = (c.get("iccam") or {}).get("partner_assessment")
        if partner:  # a partner hotline's assessment from ICCAM (marked, not decisive)
            matches.append(f"ICCAM partner: {partner.get('category') or 'not illegal'}")
        table.add_row(c["id"], c["updated_at"], c["canonical_url"], str(len(c["items"])),
                      ", ".join(matches) or "-")
    console().print(table)


@cli.command()
@click.argument("case_id")
@click.argument("decision", type=click.Choice(["illegal", "not_illegal", "ignore"]))
@click.option("--category", default=None, help="Classification, e.g. baseline or national "
              "(older form; --class with age, gender and the flags is ICCAM's).")
@click.option("--class", "klass", type=click.Choice(["baseline", "national", "doubtful"]),
              default=None, help="ICCAM classification (with --age, --gender and the flags).")
@click.option("--age", type=click.Choice(["ND", "IN", "PP", "PU"]), default=None,
              help="Not determined, infant, pre-pubescent, pubescent.")
@click.option("--gender", type=click.Choice(["UN", "FE", "MA", "BO"]), default=None,
              help="Unknown, female, male, both.")
@click.option("--virtual/--not-virtual", default=None, help="Virtual (drawn, generated).")
@click.option("--user-generated/--not-user-generated", default=None)
@click.option("--child-modelling/--no-child-modelling", default=None)
@click.option("--answer", "answers", multiple=True, metavar="KEY=VALUE",
              help="Answer to one of [assessment.questions] (repeatable).")
@click.option("--note", default=None, help="Free-text note for the trail.")
@click.option("--learn", is_flag=True,
              help="Remember the items' hashes so the next copy needs no human review.")
@click.option("--analyst", default=None, envvar="NTD_ANALYST",
              help="Who decides (default: $NTD_ANALYST or the OS user).")
@JSON_OPT
@click.pass_obj
def verdict(obj: Obj, case_id: str, decision: str, category: str | None, klass: str | None,
            age: str | None, gender: str | None, virtual: bool | None,
            user_generated: bool | None, child_modelling: bool | None,
            answers: tuple[str, ...], note: str | None, learn: bool, analyst: str | None,
            as_json: bool) -> None:
    """Record an analyst's decision on a case awaiting assessment.

    An illegal verdict takes the ICCAM classification (--class, --age, --gender and the three
    flags, nothing has a default) or the older --category."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.assessment import record_verdict

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.retention import actor_name

    given = {"class": klass, "age": age, "gender": gender, "virtual": virtual,
             "user_generated": user_generated, "child_modelling": child_modelling}
    classification = given if any(v is not None for v in given.values()) else None
    replies = {}
    for spec in answers:
        key, sep, value = spec.partition("=")
        if not sep:
            raise InputError(f"--answer {spec!r}: expected KEY=VALUE")
        replies[key] = value
    rt = obj.runtime()
    result = record_verdict(rt, case_id, verdict=decision, actor=actor_name(analyst),
                            category=category, note=note, learn=learn,
                            classification=classification, answers=replies or None)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{case_id}: {decision} → {result['state']}")


@cli.command()
@JSON_OPT
@click.pass_obj
def plugins(obj: Obj, as_json: bool) -> None:
    """List plugins with their version and the hooks each implements."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.plugin_manager import plugin_infos

    infos = plugin_infos(obj.runtime(scratch=True).pm)
    if as_json:
        emit_json([i.to_dict() for i in infos])
        return
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from rich.table import Table

    table = Table()
    for col in ("name", "version", "distribution", "hooks"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.name, i.version or "-", i.distribution or "-", ", ".join(i.hooks))
    console().print(table)


@cli.group("config")
def config_group() -> None:
    """Configuration commands."""


@config_group.command("check")
@JSON_OPT
@click.pass_obj
def config_check(obj: Obj, as_json: bool) -> None:
    """Validate the configuration and print the effective values."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.plugin_manager import get_plugin_manager

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.runtime import load_config

    config = load_config(get_plugin_manager(), obj.config)
    if as_json:
        emit_json({"file": str(config.path) if config.path else None, "values": config.values})
        return
    click.echo(f"configuration OK ({config.path or 'defaults, no file'})")
    for section, values in sorted(config.values.items()):
        click.echo(f"[{section}]")
        for key, value in sorted(values.items()):
            click.echo(f"  {key} = {json.dumps(value, default=str)}")


@cli.command()
@click.option("--urls", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--keep", type=click.Path(), default=None, metavar="PATH",
              help="Keep the demo database at this file path, e.g. demo.db (an existing "
                   "folder: FOLDER/demo.db; default: nothing is kept).")
def demo(urls: int, keep: str | None) -> None:
    """Run a synthetic, offline demonstration of what ntd does so far."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.demo import run_demo

    run_demo(urls=urls, keep=keep)
