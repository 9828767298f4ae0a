"""The ``ntd`` group itself; command modules add to it, plugins add theirs when asked for."""

from __future__ import annotations

import click

from engine.cli.common import Obj


class _PluginCommandsGroup(click.Group):
    """The ``ntd`` group: plugin subcommands are loaded only when asked for.

    Loading every plugin costs a few hundred milliseconds and tens of megabytes; ``ntd submit``
    and the other core commands should not pay that.
    """

    _plugins_loaded = False

    def _load_plugins(self) -> None:
        if not type(self)._plugins_loaded:
            type(self)._plugins_loaded = True
            _register_plugin_commands()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None:
            self._load_plugins()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugins()
        return super().list_commands(ctx)


_PluginCommandsGroup.group_class = _PluginCommandsGroup  # ``ntd bench`` etc. load them too


@click.group(cls=_PluginCommandsGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", metavar="PATH", default=None,
              help="Database path or URL (default: $NTD_DATABASE_URL or ./ntd.db).")
@click.option("--config", "config", metavar="FILE", default=None,
              help="Configuration file (default: $NTD_CONFIG or ./ntd.toml).")
@click.version_option(package_name="ntd", prog_name="ntd")
@click.pass_context
def cli(ctx: click.Context, db: str | None, config: str | None) -> None:
    """ntd — notice-and-takedown engine for hotlines handling reports of CSAM URLs."""
    ctx.obj = Obj(db, config)
    ctx.call_on_close(ctx.obj.close)


def _register_plugin_commands() -> None:
    """Let plugins add subcommands (``ntd_register_commands``)."""
    # here, not at module level: loading plugins is what lazy commands save ``ntd submit``
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.plugin_manager import call_all_sync, get_plugin_manager

    call_all_sync(get_plugin_manager(), "ntd_register_commands", cli=cli)
