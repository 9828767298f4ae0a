"""Commands of the matching plugin: ``ntd hash``, ``ntd hashlist …``, ``ntd bench match|hash``.

Hash lists are confidential: ``hashlist ls`` shows metadata and counts, never entries.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click

from engine.errors import HashlistError, InputError
from engine.media.hashlist_format import FIELDS, parse_hashlist
from engine.media.items import HASH_KEYS
from engine.media.signals import HASH_TYPES, PERCEPTUAL_NAMES


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
        if as_json:
            _emit({"name": name, "entries": count, "trust": trust, "negative": negative})
        else:
            click.echo(f"imported {count} entries into list {name!r} "
                       f"(trust={trust}{', negative' if negative else ''})")

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
