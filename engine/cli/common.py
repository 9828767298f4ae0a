"""What every ``ntd`` command module shares: ``--json``, JSON output, the lazily opened runtime."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from engine.store import missing_database

JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def emit_json(value: Any) -> None:
    """Print a JSON document to stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def console() -> Any:
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def id_table(columns: tuple[str, ...], *, title: str | None = None,
             ids: tuple[str, ...] = ("id",)) -> Any:
    """A rich table whose ID columns never wrap (a case or notice ID is copied whole: a
    terminal too narrow for everything folds the other columns, never an ID)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        if col in ids:
            table.add_column(col, no_wrap=True, overflow="ignore", min_width=17)
        else:
            table.add_column(col, overflow="fold")
    return table


class Obj:
    """Lazily opened runtime shared by the subcommands of one invocation."""

    def __init__(self, db: str | None, config: str | None) -> None:
        self.db = db
        self.config = config
        self._runtime: Any = None
        self._scratch: str | None = None

    def runtime(self, *, create: bool = False, scratch: bool = False) -> Any:
        """The opened ``Runtime`` (plugins, config, store).

        Only commands that start a database (``ntd submit``; ``ntd db migrate`` and ``ntd demo``
        open theirs themselves) pass ``create``: any other command run where there is no SQLite
        database (the wrong folder, a typo in ``--db``) stops with "no database at PATH"
        instead of creating an empty one and reporting zeros. Commands that read no case
        (``ntd plugins``, ``ntd hotlines``, ``ntd resolve URL``) pass ``scratch``: without a
        database they work on a temporary one, removed when the command ends."""
        if self._runtime is None:
            # deferred: keeps `ntd` start-up fast (loaded when the command runs)
            from engine.runtime import Runtime

            db = self.db
            if not create and scratch and missing_database(self.db):
                self._scratch = tempfile.mkdtemp(prefix="ntd-scratch-")
                db = str(Path(self._scratch) / "scratch.db")
            self._runtime = Runtime.open(db=db, config_path=self.config,
                                         must_exist=not (create or self._scratch))
        return self._runtime

    def close(self) -> None:
        """Close the store if it was opened."""
        if self._runtime is not None:
            self._runtime.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
