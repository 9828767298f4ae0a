"""A third-party plugin installed through an entry point (fixture)."""

from __future__ import annotations

from engine import hookimpl
from engine.config import Option


@hookimpl
def ntd_config_schema():
    return {"sample": {"greeting": Option(type=str, default="hello")}}


@hookimpl
def ntd_register_commands(cli):
    import click

    @cli.command("sample-hello")
    def sample_hello():
        """Say hello from the sample plugin."""
        click.echo("hello from sample plugin")
