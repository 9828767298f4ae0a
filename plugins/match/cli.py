"""Commands of the matching plugin: ``ntd hash``, ``ntd hashlist …``, ``ntd bench match|hash``.

Hash lists are confidential: ``hashlist ls`` shows metadata and counts, never entries.
"""

from __future__ import annotations

import asyncio
import csv
import getpass
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from engine.assessment import rematch_waiting
from engine.errors import HashlistError, InputError
from engine.media.hashlist_format import FIELDS, parse_hashlist
from engine.media.items import HASH_KEYS
from engine.media.signals import HASH_TYPES, PERCEPTUAL_NAMES
from plugins.match.sources import apply_changes, close_sources, format_source, sync_source


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _emit_entries(rows: list[dict[str, Any]], fmt: str, *, category: str, label: str | None,
                  source: str | None) -> None:
    """Hash-list entries (``hashlists/README.md``) for ``rows`` of ``ntd hash``, one per hash,
    checked by the same parser ``ntd hashlist import`` uses before anything is printed."""
    entries = [{"hash_type": key, "hash": str(row[key]).lower(), "category": category.lower(),
                "label": label if label is not None else Path(row["file"]).name,
                "source": source}
               for row in rows for key in HASH_TYPES if row.get(key)]
    buffer = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows([[e[f] or "" for f in FIELDS] for e in entries])
    else:
        for entry in entries:
            buffer.write(json.dumps({k: v for k, v in entry.items() if v is not None}) + "\n")
    text = buffer.getvalue()
    try:
        for _ in parse_hashlist(text.splitlines(), fmt="csv" if fmt == "csv" else "ndjson",
                                name="--format output"):
            pass
    except HashlistError as exc:  # e.g. a --category that is not [a-z][a-z0-9_]*
        raise InputError(f"--category/--label/--source: {exc.message}") from exc
    click.echo(text, nl=False)


def _obj(ctx: click.Context) -> Any:
    return ctx.find_root().obj


def _video_row(data: bytes, as_json: bool) -> dict[str, Any]:
    """A video's hashes for ``ntd hash``: digests, what it is, and its vPDQ (as features for
    JSON, as the canonical text otherwise)."""
    # deferred: pulls in PyAV (loaded when a video is hashed)
    from engine.media.video import hash_video

    # deferred: light, but only needed here
    from engine.media.vpdq_format import parse_features

    h = hash_video(data)
    row = {k: h[k] for k in ("md5", "sha1", "sha256", "duration", "frames", "width", "height")}
    row["vpdq"] = ([{"pdq": f.pdq, "quality": f.quality, "frame": f.frame, "ts": f.ts}
                    for f in parse_features(h["vpdq"])] if as_json else h["vpdq"])
    return row


def register(cli: click.Group) -> None:
    """Add this plugin's commands to ``cli``."""
    if "hash" in cli.commands:
        return  # already registered (the group is module-global)

    @cli.command("hash")
    @click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.option("--format", "fmt", type=click.Choice(["csv", "ndjson"]), default=None,
                  help="Print hash-list entries `ntd hashlist import` reads (one per hash).")
    @click.option("--category", default="baseline", show_default=True,
                  help="With --format: the entries' category (e.g. baseline, national).")
    @click.option("--label", default=None,
                  help="With --format: the entries' label (default: the file's name).")
    @click.option("--source", default=None, help="With --format: who produced the entries.")
    def hash_cmd(files: tuple[str, ...], as_json: bool, fmt: str | None, category: str,
                 label: str | None, source: str | None) -> None:
        """Print the hashes of local image or video files (used to build lists).

        A video (MP4, QuickTime, WebM, Matroska, by its first bytes) gets its digests and
        vPDQ; ``--json`` prints its frame features as a ``vpdq`` array, ready for an NDJSON
        hash-list line."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.media.hashing import MediaError, hash_media

        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.safe_fetch import VIDEO_TYPES, sniff_content_type

        if fmt and as_json:
            raise click.UsageError("--json and --format exclude each other")
        out = []
        for name in files:
            try:
                with open(name, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from exc
            try:
                if sniff_content_type(data[:512]) in VIDEO_TYPES:
                    out.append({"file": name, **_video_row(data, as_json)})
                    continue
                h = hash_media(data)
            except MediaError as exc:
                raise InputError(f"{name}: {exc.message}") from exc
            out.append({"file": name, **{key: h[key] for key in HASH_KEYS}})
        if fmt:
            _emit_entries(out, fmt, category=category, label=label, source=source)
            return
        if as_json:
            _emit(out[0] if len(out) == 1 else out)
            return
        for row in out:
            click.echo(f"{row['file']}")
            for key, value in row.items():
                if key != "file":
                    click.echo(f"  {key:<11} {value}")

    @cli.group("hashlist")
    def hashlist() -> None:
        """Known-hash lists (confidential: entries are never printed)."""

    @hashlist.command("import")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--name", default=None,
                  help="List name (required for CSV/NDJSON; a --format source has a default).")
    @click.option("--format", "fmt", default="auto", show_default=True,
                  help="auto (ntd CSV or NDJSON), or a hash source's format: ncmec-xml, "
                       "vic-json.")
    @click.option("--trust", type=click.Choice(["auto", "review"]), default=None,
                  help="auto: a match confirms a case; review: flags it (default: review, "
                       "or the [hashsource.NAME] trust of a --format source).")
    @click.option("--negative", is_flag=True, help="Known-benign hashes that suppress matches.")
    @click.option("--source", default=None, help="Where the list comes from.")
    @click.option("--threshold", "thresholds", multiple=True, metavar="TYPE=N",
                  help="Per-type Hamming radius, e.g. phash=6 (repeatable).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def hashlist_import(ctx: click.Context, file: str, name: str | None, fmt: str,
                        trust: str | None, negative: bool, source: str | None,
                        thresholds: tuple[str, ...], as_json: bool) -> None:
        """Import FILE (CSV or NDJSON) as list NAME, replacing a list of that name.

        With --format ncmec-xml or vic-json the file is applied as a diff keyed by its own
        entry ids: importing it again changes nothing."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.media.hashlist_format import parse_hashlist

        if fmt != "auto":
            _import_format(_obj(ctx).runtime(), file, fmt, name=name, trust=trust,
                           negative=negative, as_json=as_json)
            return
        if not name:
            raise InputError("--name is required for a CSV or NDJSON list")
        trust = trust or "review"

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

    @hashlist.command("sync")
    @click.argument("name")
    @click.option("--full", is_flag=True,
                  help="Read the whole source again (drops what is gone there).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def hashlist_sync(ctx: click.Context, name: str, full: bool, as_json: bool) -> None:
        """Sync the lists of hash source NAME ([hashsource.NAME]): only what changed."""
        report = asyncio.run(_sync(_obj(ctx).runtime(), name, full))
        if as_json:
            _emit(report)
            return
        for row in report["lists"]:
            click.echo(f"{row['list']}: {row['transferred']} transferred, {row['added']} added,"
                       f" {row['updated']} updated, {row['removed']} removed,"
                       f" {row['unchanged']} unchanged")
            for note in row["notes"]:
                click.echo(f"  {note}")
        click.echo(f"{report['requests']} request(s) to {name}")

    def _switch(ctx: click.Context, list_name: str, value: str, disabled: bool,
                admin: str | None) -> None:
        rt = _obj(ctx).runtime()
        if not any(r["name"] == list_name for r in rt.store.hashlists()):
            raise InputError(f"no hash list {list_name!r}")
        changed = rt.store.set_hash_disabled(list_name, value.strip(), disabled)
        verb = "disabled" if disabled else "enabled"
        if not changed:
            raise InputError(f"list {list_name!r} has no {'enabled' if disabled else 'disabled'}"
                             " entry with that hash")
        who = f"admin:{admin or getpass.getuser()}"
        # The audit names the list and the count, never the hash (entries are confidential).
        rt.store.audit(actor=who, action=f"hash_{verb}", obj=list_name,
                       now=rt.clock.now_text(), detail={"entries": changed})
        click.echo(f"{verb} {changed} entr{'y' if changed == 1 else 'ies'} of list "
                   f"{list_name!r}")

    @hashlist.command("disable")
    @click.argument("list_name", metavar="LIST")
    @click.argument("value", metavar="HASH")
    @click.option("--admin", default=None, help="Who (default: your login name).")
    @click.pass_context
    def hashlist_disable(ctx: click.Context, list_name: str, value: str,
                         admin: str | None) -> None:
        """Stop entry HASH of LIST from matching (it stays in the list; a re-sync keeps it
        off)."""
        _switch(ctx, list_name, value, True, admin)

    @hashlist.command("enable")
    @click.argument("list_name", metavar="LIST")
    @click.argument("value", metavar="HASH")
    @click.option("--admin", default=None, help="Who (default: your login name).")
    @click.pass_context
    def hashlist_enable(ctx: click.Context, list_name: str, value: str,
                        admin: str | None) -> None:
        """Let a disabled entry HASH of LIST match again."""
        _switch(ctx, list_name, value, False, admin)

    @hashlist.command("held")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def hashlist_held(ctx: click.Context, as_json: bool) -> None:
        """List the entries the flood guard holds for review (no hashes shown)."""
        rows = _obj(ctx).runtime().store.held_entries()
        if as_json:
            _emit(rows)
            return
        for r in rows:
            click.echo(f"#{r['entry_id']:<8} {r['list']:<20} {r['hash_type']:<7} "
                       f"{r['category']:<12} {r['urls']:>6} URLs/h  held {r['held_at']}")
        if not rows:
            click.echo("no held entries")

    @hashlist.command("release")
    @click.argument("entry_id", type=int)
    @click.option("--admin", default=None, help="Who (default: your login name).")
    @click.pass_context
    def hashlist_release(ctx: click.Context, entry_id: int, admin: str | None) -> None:
        """Release held entry ENTRY_ID: its matches confirm again. To keep it from matching,
        disable it instead (ntd hashlist disable)."""
        rt = _obj(ctx).runtime()
        if not rt.store.release_entry(entry_id):
            raise InputError(f"entry #{entry_id} is not held")
        rt.store.audit(actor=f"admin:{admin or getpass.getuser()}", action="hash_released",
                       obj=f"entry:{entry_id}", now=rt.clock.now_text())
        click.echo(f"released entry #{entry_id}")


async def _sync(rt: Any, name: str, full: bool) -> dict[str, Any]:
    ctx = rt.context()
    try:
        return await sync_source(ctx, name, full=full)
    except HashlistError as exc:
        raise InputError(exc.message) from exc
    finally:
        await close_sources(ctx)
        await ctx.aclose()


async def _apply_file(rt: Any, file: str, fmt: str, name: str | None, trust: str | None,
                      negative: bool) -> dict[str, Any]:
    ctx = rt.context()
    try:
        changes = format_source(ctx, fmt).read_file(fmt, file)
        changes = replace(changes, trust=trust or changes.trust, negative=negative)
        return await apply_changes(ctx, changes, name=name)
    finally:
        await ctx.aclose()


def _import_format(rt: Any, file: str, fmt: str, *, name: str | None, trust: str | None,
                   negative: bool, as_json: bool) -> None:
    report = asyncio.run(_apply_file(rt, file, fmt, name, trust, negative))
    if as_json:
        _emit(report)
        return
    click.echo(f"list {report['list']!r} from {fmt}: {report['added']} added, "
               f"{report['updated']} updated, {report['removed']} removed, "
               f"{report['unchanged']} unchanged")
    for note in report["notes"]:
        click.echo(f"  {note}")
