"""The ``ntd`` command line.

Exit codes: 0 ok, 1 operational failure, 2 bad usage or bad input (the message names the file,
line or key at fault). Every listing has ``--json``. The database is ``--db PATH`` (before the
subcommand) or ``NTD_DATABASE_URL``; configuration is ``--config`` or ``NTD_CONFIG``.

Layout: ``root`` holds the group, ``common`` what command modules share; ``cases``, ``db``,
``intake``, ``lab``, ``privacy``, ``stats``, ``web`` and ``bench`` each add their commands to the
group when imported here. Stage plugins add theirs through ``ntd_register_commands``.
"""

from __future__ import annotations

import sys

import click

from engine.cli import (  # noqa: F401  (register commands)
    bench,
    cases,
    db,
    intake,
    lab,
    privacy,
    stats,
    web,
)
from engine.cli.root import cli
from engine.errors import ConfigError, InputError, NtdError, PluginError

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: maps ntd errors to exit codes 1 and 2."""
    try:
        code = cli.main(args=argv, prog_name="ntd", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) or exc.exit_code == 2 else 1)
    except (InputError, ConfigError) as exc:
        click.echo(f"ntd: error: {exc}", err=True)
        sys.exit(2)
    except PluginError as exc:
        click.echo(f"ntd: plugin error: {exc}\n(block a plugin with NTD_DISABLE_PLUGINS=name)",
                   err=True)
        sys.exit(1)
    except NtdError as exc:
        click.echo(f"ntd: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)

