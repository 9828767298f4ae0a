"""Commands of the matching plugin: ``ntd hash``, ``ntd hashlist …``, ``ntd bench match|hash``.

Hash lists are confidential: ``hashlist ls`` shows metadata and counts, never entries.
"""

from __future__ import annotations

import json
from typing import Any

import click

from engine.assessment import rematch_waiting
from engine.errors import HashlistError, InputError
from engine.media.items import HASH_KEYS
from engine.media.signals import PERCEPTUAL_NAMES


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _obj(ctx: click.Context) -> Any:
    return ctx.find_root().obj


def register(cli: click.Group) -> None:
    """Add this plugin's commands to ``cli``."""
    if "hash" in cli.commands:
        return  # already registered (the group is module-global)

    @cli.command("hash")
    @click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def hash_cmd(files: tuple[str, ...], as_json: bool) -> None:
        """Print the hashes of local image files (used to build lists)."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.media.hashing import MediaError, hash_media

        out = []
        for name in files:
            try:
                with open(name, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from exc
            try:
                h = hash_media(data)
            except MediaError as exc:
                raise InputError(f"{name}: {exc.message}") from exc
            out.append({"file": name, **{key: h[key] for key in HASH_KEYS}})
        if as_json:
            _emit(out[0] if len(out) == 1 else out)
            return
        for row in out:
            click.echo(f"{row['file']}")
            for key in HASH_KEYS:
                click.echo(f"  {key:<11} {row[key]}")

    @cli.group("hashlist")
    def hashlist() -> None:
        """Known-hash lists (confidential: entries are never printed)."""

    @hashlist.command("import")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--name", required=True, help="List name.")
    @click.option("--trust", type=click.Choice(["auto", "review"]), default="review",
                  show_default=True, help="auto: a match confirms a case; review: flags it.")
    @click.option("--negative", is_flag=True, help="Known-benign hashes that suppress matches.")
    @click.option("--source", default=None, help="Where the list comes from.")
    @click.option("--threshold", "thresholds", multiple=True, metavar="TYPE=N",
                  help="Per-type Hamming radius, e.g. phash=6 (repeatable).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def hashlist_import(ctx: click.Context, file: str, name: str, trust: str, negative: bool,
                        source: str | None, thresholds: tuple[str, ...], as_json: bool) -> None:
        """Import FILE (CSV or NDJSON) as list NAME, replacing a list of that name."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.media.hashlist_format import parse_hashlist

        limits: dict[str, int] = {}
        for spec in thresholds:
            key, _, value = spec.partition("=")
            if key not in PERCEPTUAL_NAMES or not value.isdigit():
                raise InputError(f"--threshold {spec!r}: expected "
                                 + " or ".join(f"{n}=N" for n in PERCEPTUAL_NAMES))
            limits[key] = int(value)
        rt = _obj(ctx).runtime()
        entries = ((e.hash_type, e.hash, e.category, e.label, e.source)
                   for e in parse_hashlist(file))
        try:
            count = rt.store.import_hashlist(
                name=name, source=source or file, trust=trust, negative=negative,
                thresholds=limits, entries=entries, now=rt.clock.now_text())
        except HashlistError as exc:
            raise InputError(str(exc)) from exc
        # What waits for an analyst is matched again against the new list (at once in a
        # running `ntd run`, otherwise at the next run): known copies leave the queue.
        rematched = rematch_waiting(rt, actor="hashlist", reason=f"hashlist import {name}")
        if as_json:
            _emit({"name": name, "entries": count, "trust": trust, "negative": negative,
                   "rematched": rematched})
        else:
            click.echo(f"imported {count} entries into list {name!r} "
                       f"(trust={trust}{', negative' if negative else ''}); "
                       f"{rematched} waiting cases sent to be matched again")

    @hashlist.command("ls")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def hashlist_ls(ctx: click.Context, as_json: bool) -> None:
        """List the known-hash lists (metadata only)."""
        rows = _obj(ctx).runtime().store.hashlists()
        if as_json:
            _emit(rows)
            return
        for r in rows:
            click.echo(f"{r['name']:<20} {r['entries']:>10} entries  trust={r['trust']}"
                       f"{'  negative' if r['negative'] else ''}  {r['source'] or ''}")

    @hashlist.command("rm")
    @click.argument("name")
    @click.pass_context
    def hashlist_rm(ctx: click.Context, name: str) -> None:
        """Remove list NAME."""
        if not _obj(ctx).runtime().store.remove_hashlist(name):
            raise InputError(f"no hash list {name!r}")
        click.echo(f"removed list {name!r}")
