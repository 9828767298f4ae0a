"""Commands of the resolve plugin: ``ntd resolve``, ``ntd contacts …``, ``ntd rdap …``,
``ntd bench resolve``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from engine.errors import InputError


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _runtime(*, scratch: bool = False) -> Any:
    return click.get_current_context().find_root().obj.runtime(scratch=scratch)


async def resolve_url(rt: Any, url: str) -> dict[str, Any]:
    """Run the resolve stage's logic on one URL without creating a case.

    Returns the resolution (contract shape plus ``url``), or the partial facts with
    ``unresolved`` (the reason the stage would record) and ``error``.
    """
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.urls import canonicalize

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.resolve.service import ResolveService

    canon = canonicalize(url)  # InputError for a bad URL: exit 2
    ctx = rt.context()
    try:
        service = await ResolveService.open(ctx)
        try:
            outcome = await service.resolve(canon.host, ctx, fresh_book=True)
        finally:
            await service.aclose(ctx)
    finally:
        await ctx.aclose()
    if outcome.resolution is not None:
        return {"url": canon.url, **outcome.resolution}
    return {"url": canon.url, **outcome.partial, "unresolved": outcome.reason,
            "error": outcome.message}


def _print_resolution(res: dict[str, Any]) -> None:
    if res.get("unresolved"):
        click.echo(f"{res['url']}: unresolved ({res['unresolved']})")
        click.echo(f"  {res['error']}")
        return
    click.echo(res["url"])
    rows = [("ips", ", ".join(res["ips"])), ("asn", res["asn"]), ("network", res["network"]),
            ("org", res["org"]), ("country", res["country"]), ("cdn", res["cdn"]),
            ("platform", res["platform"]),
            ("registrar", (res["registrar"] or {}).get("name"))]
    for key, value in rows:
        click.echo(f"  {key:<10} {value if value is not None else '-'}")
    click.echo("  contacts:")
    for c in res["contacts"]:
        click.echo(f"    {c['confidence']:.2f}  {c['scope']:<9} {c['channel']:<5} "
                   f"{c['address']}  ({c['source']})")
    for note in res.get("notes", []):
        click.echo(f"  note: {note}")


def register(cli: click.Group) -> None:
    """Add this plugin's commands to ``cli``."""
    if "resolve" in cli.commands:
        return  # already registered (the group is module-global)

    @cli.command("resolve")
    @click.argument("url")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def resolve_cmd(url: str, as_json: bool) -> None:
        """Resolve URL's host, network, registrar and ranked contacts (no case is created).

        Exit code 1 when the URL cannot be resolved (the reason is printed).
        """
        result = asyncio.run(resolve_url(_runtime(scratch=True), url))
        if as_json:
            _emit(result)
        else:
            _print_resolution(result)
        if result.get("unresolved"):
            click.get_current_context().exit(1)

    # ------------------------------------------------------------------ contacts book

    @cli.group("contacts")
    def contacts() -> None:
        """The hotline's contacts book: preferred abuse channels that win over lookups."""

    @contacts.command("add")
    @click.option("--match-kind", required=True,
                  type=click.Choice(["domain", "host", "asn", "org", "platform", "cdn"]),
                  help="What the entry matches on.")
    @click.option("--match", "match_value", required=True, metavar="VALUE",
                  help="Domain, host (or *.zone), AS number, organisation, platform or CDN.")
    @click.option("--scope", required=True,
                  type=click.Choice(["hosting", "registrar", "cdn", "platform", "upstream"]))
    @click.option("--channel", required=True, type=click.Choice(["email", "form", "api"]))
    @click.option("--address", required=True, help="E-mail address or form/API URL.")
    @click.option("--priority", type=int, default=0, show_default=True,
                  help="Order among matching book entries (higher first).")
    @click.option("--note", default=None, help="Free text shown with the contact.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def contacts_add(match_kind: str, match_value: str, scope: str, channel: str,
                     address: str, priority: int, note: str | None, as_json: bool) -> None:
        """Add an entry to the contacts book."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from plugins.resolve.contacts import check_entry, normalise_match

        value = normalise_match(match_kind, match_value)
        clean = check_entry(scope=scope, channel=channel, address=address)
        rt = _runtime()
        entry_id = rt.store.contacts_add(match_kind=match_kind, match_value=value, scope=scope,
                                         channel=channel, address=clean, priority=priority,
                                         note=note, now=rt.clock.now_text())
        if as_json:
            _emit({"id": entry_id, "match_kind": match_kind, "match_value": value,
                   "scope": scope, "channel": channel, "address": clean,
                   "priority": priority, "note": note})
        else:
            click.echo(f"added contact #{entry_id}: {match_kind} {value} → {scope} "
                       f"{channel} {clean}")

    @contacts.command("ls")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def contacts_ls(as_json: bool) -> None:
        """List the contacts book."""
        rows = _runtime().store.contacts_list()
        if as_json:
            _emit(rows)
            return
        if not rows:
            click.echo("the contacts book is empty")
        for r in rows:
            click.echo(f"#{r['id']:<4} {r['match_kind']:<8} {r['match_value']:<28} "
                       f"{r['scope']:<9} {r['channel']:<5} {r['address']}  "
                       f"prio={r['priority']}{'  ' + r['note'] if r.get('note') else ''}")

    @contacts.command("rm")
    @click.argument("entry_id", metavar="ID", type=int)
    def contacts_rm(entry_id: int) -> None:
        """Remove entry ID from the contacts book."""
        if not _runtime().store.contacts_remove(entry_id):
            raise InputError(f"no contacts-book entry #{entry_id}")
        click.echo(f"removed contact #{entry_id}")

    @contacts.command("approve")
    @click.argument("address")
    @click.option("--note", default=None, help="Why (kept with the approval).")
    @click.option("--admin", default=None, help="Who approves (default: your login name).")
    def contacts_approve(address: str, note: str | None, admin: str | None) -> None:
        """Approve an address found by lookup for notices ([notices] require_approval)."""
        import getpass  # deferred: start-up

        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.takedown import approve_contact

        queued = approve_contact(_runtime(), address, actor=f"admin:{admin or getpass.getuser()}",
                                 note=note)
        click.echo(f"approved {address.strip().lower()}: {queued} waiting notice(s) queued")

    @contacts.command("pending")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def contacts_pending(as_json: bool) -> None:
        """Addresses whose notices wait for approval (oldest first)."""
        rows = _runtime().store.awaiting_approval()
        if as_json:
            _emit(rows)
            return
        if not rows:
            click.echo("no notices wait for approval")
        for r in rows:
            click.echo(f"{r['address']:<40} {r['notices']} notice(s), {r['urls']} URL(s), "
                       f"waiting since {r['since']}")

    # ------------------------------------------------------------------ rdap

    @cli.group("rdap")
    def rdap() -> None:
        """RDAP data files."""

    @rdap.command("update-bootstrap")
    @click.option("--url", default=None,
                  help="Where to download dns.json (default: IANA's published file).")
    @click.option("--file", "file", default=None, type=click.Path(dir_okay=False),
                  help="File to replace (default: [rdap] bootstrap_file, else the shipped one).")
    def rdap_update_bootstrap(url: str | None, file: str | None) -> None:
        """Refresh the IANA RDAP bootstrap file (domain → registry); needs the internet."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from plugins.resolve.rdap import (
            DEFAULT_BOOTSTRAP_FILE,
            IANA_BOOTSTRAP_URL,
            update_bootstrap,
        )

        if file is None:
            configured = _runtime().config.get("rdap", "bootstrap_file")
            file = configured or str(DEFAULT_BOOTSTRAP_FILE)
        if not Path(file).parent.is_dir():
            raise InputError(f"--file: directory of {file} does not exist")
        count = asyncio.run(update_bootstrap(url or IANA_BOOTSTRAP_URL, file))
        click.echo(f"updated {file}: {count} TLDs")

    # ------------------------------------------------------------------ data

    @cli.group("data")
    def data() -> None:
        """Published reference data: RDAP bootstrap files and CDN ranges (docs/resolution.md)."""

    @data.command("update")
    @click.option("--source", "sources", multiple=True, metavar="NAME",
                  help="Only this source (repeatable): iana-dns, iana-ipv4, iana-ipv6, "
                       "iana-asn, cloudflare, cloudfront, fastly.")
    @click.option("--from-dir", "from_dir", default=None,
                  type=click.Path(file_okay=False, exists=True),
                  help="Read the published files from this directory instead of downloading.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def data_update(sources: tuple[str, ...], from_dir: str | None, as_json: bool) -> None:
        """Fetch (or read) the published files, validate them, write snapshots."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from plugins.resolve import datasources

        into = datasources.snapshot_dir(
            _runtime(scratch=True).config.get("resolve", "snapshot_dir"))
        names = list(sources) or None
        if from_dir is not None:
            done = datasources.update_from_dir(from_dir, into, names)
        else:
            done = asyncio.run(datasources.update_online(into, names))
        rows = [{k: s[k] for k in ("source", "url", "file_date", "retrieved", "count")}
                for s in done]
        if as_json:
            _emit({"dir": str(into), "updated": rows})
            return
        for r in rows:
            click.echo(f"{r['source']:<11} {r['count']:>5} entries  file date "
                       f"{r['file_date'] or '-'}  retrieved {r['retrieved'] or '- (offline copy)'}")
        click.echo(f"wrote {len(rows)} snapshot(s) to {into}")

    @data.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def data_status(as_json: bool) -> None:
        """Each snapshot's age; warns when one is older than 90 days."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from plugins.resolve import datasources

        into = datasources.snapshot_dir(
            _runtime(scratch=True).config.get("resolve", "snapshot_dir"))
        rows = datasources.status(into)
        if as_json:
            _emit(rows)
        else:
            for r in rows:
                if r.get("missing"):
                    click.echo(f"{r['source']:<11} MISSING  {r['error']}")
                    continue
                age = "?" if r["age_days"] is None else f"{r['age_days']} days"
                click.echo(f"{r['source']:<11} {r['count']:>5} entries  "
                           f"{r['file_date'] or r['retrieved'] or 'undated'}  ({age} old)  "
                           f"{r['url']}")
        for r in rows:
            if r["stale"]:
                click.echo(f"warning: snapshot {r['source']} is older than "
                           f"{datasources.MAX_AGE_DAYS} days or undated: run "
                           f"`ntd data update --source {r['source']}`", err=True)
