"""What every ``ntd`` command module shares: ``--json``, JSON output, the lazily opened runtime."""

from __future__ import annotations

import json
from typing import Any

import click

JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def emit_json(value: Any) -> None:
    """Print a JSON document to stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def console() -> Any:
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from rich.console import Console

    return Console(stderr=False, highlight=False)


class Obj:
    """Lazily opened runtime shared by the subcommands of one invocation."""

    def __init__(self, db: str | None, config: str | None) -> None:
        self.db = db
        self.config = config
        self._runtime: Any = None

    def runtime(self) -> Any:
        """The opened ``Runtime`` (plugins, config, store)."""
        if self._runtime is None:
            # deferred: keeps `ntd` start-up fast (loaded when the command runs)
            from engine.runtime import Runtime

            self._runtime = Runtime.open(db=self.db, config_path=self.config)
        return self._runtime

    def close(self) -> None:
        """Close the store if it was opened."""
        if self._runtime is not None:
            self._runtime.close()
