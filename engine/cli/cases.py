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

    table = Table(title="trail")
    for col in ("at", "stage", "actor", "action", "detail"):
        table.add_column(col, overflow="fold")
    for e in found["events"]:
        table.add_row(e["at"], e["stage"], e["actor"], e["action"],
                      json.dumps(e["detail"], ensure_ascii=False) if e["detail"] else "")
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
@click.argument("decision", type=click.Choice(["illegal", "not_illegal"]))
@click.option("--category", default=None, help="Classification, e.g. baseline or national.")
@click.option("--note", default=None, help="Free-text note for the trail.")
@click.option("--learn", is_flag=True,
              help="Remember the items' hashes so the next copy needs no human review.")
@click.option("--analyst", default=None, envvar="NTD_ANALYST",
              help="Who decides (default: $NTD_ANALYST or the OS user).")
@JSON_OPT
@click.pass_obj
def verdict(obj: Obj, case_id: str, decision: str, category: str | None, note: str | None,
            learn: bool, analyst: str | None, as_json: bool) -> None:
    """Record an analyst's decision on a case awaiting assessment."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.assessment import record_verdict

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.retention import actor_name

    rt = obj.runtime()
    result = record_verdict(rt, case_id, verdict=decision, actor=actor_name(analyst),
                            category=category, note=note, learn=learn)
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
