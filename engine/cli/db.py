"""Database and worker commands: ``ntd db …``, ``ntd workers`` (registered by ``engine.cli``)."""

from __future__ import annotations

import click

from engine.cli.common import JSON_OPT, Obj, emit_json
from engine.cli.root import cli


@cli.group("db")
def db_group() -> None:
    """Database commands (schema migrations, copying between backends)."""


@db_group.command("migrate")
@JSON_OPT
@click.pass_obj
def db_migrate(obj: Obj, as_json: bool) -> None:
    """Bring the database (--db or $NTD_DATABASE_URL) to the newest schema version."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.store import open_store

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.store.copy import describe

    store = open_store(obj.db, migrate=False)
    try:
        before = store.schema_version()
        after = store.migrate()
    finally:
        store.close()
    where = describe(store.url)
    if as_json:
        emit_json({"database": where, "from_version": before, "version": after})
    elif before == after:
        click.echo(f"{where}: schema version {after} (up to date)")
    else:
        click.echo(f"{where}: schema version {before} → {after}")


@db_group.command("copy")
@click.option("--from", "source", required=True, metavar="URL",
              help="Source database (path, sqlite:///PATH or postgresql://...).")
@click.option("--to", "target", required=True, metavar="URL",
              help="Target database; must be empty (it is migrated first).")
@JSON_OPT
def db_copy(source: str, target: str, as_json: bool) -> None:
    """Copy every table into an empty database, comparing row counts and checksums."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.store.copy import copy_database

    report = copy_database(source, target)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{report.source} → {report.target}")
    for t in report.tables:
        mark = "ok" if t.ok else "MISMATCH"
        click.echo(f"  {t.table:<17} {t.source_rows:>10} rows  {t.source_checksum[:16]}  {mark}")
    click.echo(f"copied {sum(t.source_rows for t in report.tables)} rows in "
               f"{report.seconds:.1f}s; counts and checksums match")


@cli.command("workers")
@click.option("--all", "show_all", is_flag=True, help="Also list workers that stopped beating.")
@JSON_OPT
@click.pass_obj
def workers_cmd(obj: Obj, show_all: bool, as_json: bool) -> None:
    """Live workers (heartbeat within 3 intervals), their leases and last heartbeat."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.workers import list_workers

    rt = obj.runtime()
    found, others = list_workers(rt.store, now=rt.clock.now_text())
    shown = [w for w in found if w.live or show_all]
    if as_json:
        emit_json({"workers": [w.to_dict() for w in shown],
                   "unregistered_lease_owners": others})
        return
    if not shown:
        click.echo("no live workers")
    for w in shown:
        state = "live" if w.live else "STOPPED"
        click.echo(f"{w.id:<24} {state:<7} {w.host}:{w.pid}  leases {w.leases:>5}  "
                   f"notices {w.notice_leases:>3}  beat {w.age_seconds:.1f}s ago "
                   f"({w.heartbeat_at})")
    for owner, n in others.items():
        click.echo(f"{owner:<24} (not registered) leases {n}")
