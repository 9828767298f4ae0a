"""Commands of the routing plugin: ``ntd route CASE``, ``ntd hotlines``, ``ntd bench route``."""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

from engine.errors import InputError
from engine.manual_routing import (  # noqa: F401  (analyst_routes, parse_*: this module's API)
    analyst_routes,
    parse_contact,
    parse_to,
    route_by_hand,
    set_origin,
)


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _warn_stale_directory(rt: Any, routes: list[dict[str, Any]]) -> None:
    """Warn (stderr) when a route comes from a directory entry checked over a year ago."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.directory import DIRECTORY_MAX_AGE_DAYS, load_directory

    directory = load_directory(rt.config.get("routing", "directory_file") or None)
    today = rt.clock.now().date()
    for route, entry, age in directory.stale_entries(routes, today):
        when = (f"last checked {entry.checked} ({age} days ago)" if age is not None
                else "never checked")
        click.echo(f"warning: {route['recipient_kind']} {route['country']} is routed by the "
                   f"directory entry {entry.name!r}, {when} against "
                   f"{entry.source or 'no recorded source'}: older than "
                   f"{DIRECTORY_MAX_AGE_DAYS} days, verify it before relying on it",
                   err=True)


def register(cli: click.Group) -> None:
    """Add this plugin's commands to ``cli``."""
    if "route" in cli.commands:
        return  # already registered (the group is module-global)

    @cli.command("route")
    @click.argument("case_id")
    @click.option("--to", "to", multiple=True, metavar="KIND:TARGET[:CHANNEL]",
                  help="Route a case by hand (repeatable): awaiting_routing, unresolved, "
                       "failed or resolved, e.g. police:unit@example.org:email.")
    @click.option("--country", default=None,
                  help="Country of the routes (default: the resolution's, else home).")
    @click.option("--deadline", type=click.IntRange(min=0), default=None,
                  help="Takedown deadline in hours (default: the country's).")
    @click.option("--reason", default=None, help="Why (recorded on every route).")
    @click.option("--analyst", default=None, envvar="NTD_ANALYST",
                  help="Who decides (default: $NTD_ANALYST or the OS user).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def route_cmd(ctx: click.Context, case_id: str, to: tuple[str, ...], country: str | None,
                  deadline: int | None, reason: str | None, analyst: str | None,
                  as_json: bool) -> None:
        """Show a case's routes, or decide them for a case awaiting routing (--to)."""
        rt = ctx.find_root().obj.runtime()
        found = rt.store.get_case(case_id, events=False)
        if found is None:
            raise InputError(f"no case {case_id!r}")
        if to:
            route_by_hand(rt, case_id, to, country=country, deadline=deadline,
                          actor=f"analyst:{analyst or getpass.getuser()}", reason=reason)
            found = rt.store.get_case(case_id, events=False)
        routes = found.get("routes") or []
        _warn_stale_directory(rt, routes)
        if as_json:
            _emit(routes)
            return
        click.echo(f"{case_id}  {found['state']}"
                   + (f" ({found['state_reason']})" if found.get("state_reason") else ""))
        if not routes:
            click.echo("  no routes")
        for r in routes:
            deadline_text = f", deadline {r['deadline_hours']} h" if r["deadline_hours"] else ""
            click.echo(f"  {r['action']:<7} {r['recipient_kind']:<9} {r['target']} "
                       f"[{r['channel']}, {r['country']}{deadline_text}]")
            click.echo(f"          by {r['decided_by']}: {r['reason']}")
        for step in found.get("escalation") or []:
            if "route" in step:
                r = step["route"]
                click.echo(f"  later   after {step['after_hours']} h if {step['when']}: "
                           f"{r['action']} {r['recipient_kind']} {r['target']} "
                           f"(by {r['decided_by']})")
            else:
                click.echo(f"  later   when {step['when']}: {step['then']}")

    @cli.command("origin")
    @click.argument("case_id")
    @click.option("--country", required=True,
                  help="Country of the origin host behind the CDN (ISO 3166 alpha-2).")
    @click.option("--contact", "contacts", multiple=True, metavar="ADDRESS[:CHANNEL]",
                  help="The origin hoster's abuse contact (repeatable): an e-mail address or "
                       "an https:// form or API URL (append :api for an API).")
    @click.option("--ip", "ips", multiple=True, metavar="ADDRESS",
                  help="The origin host's IP address (repeatable; goes into its notices).")
    @click.option("--note", default=None, help="Where the origin came from (the CDN's reply…).")
    @click.option("--analyst", default=None, envvar="NTD_ANALYST",
                  help="Who records it (default: $NTD_ANALYST or the OS user).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def origin_cmd(ctx: click.Context, case_id: str, country: str, contacts: tuple[str, ...],
                   ips: tuple[str, ...], note: str | None, analyst: str | None,
                   as_json: bool) -> None:
        """Record the origin host behind a CDN and route the case again.

        A case behind a CDN is first routed to the CDN with a request for the origin (the
        escalation plan says "re-route when the origin is known"). When the CDN answers, or an
        analyst finds the origin, this records it in the resolution and returns the case to
        ``resolved``: the next ``ntd run`` routes it to the CDN (stop serving) and to the
        origin's hoster, hotline or police by the origin's country.
        """
        rt = ctx.find_root().obj.runtime()
        result = set_origin(rt, case_id, country=country, contacts=contacts, ips=ips,
                            note=note, actor=f"analyst:{analyst or getpass.getuser()}")
        resolution = {"cdn": result["cdn"]}
        cc = result["origin"]["country"]
        if as_json:
            _emit(result)
        else:
            click.echo(f"{case_id}: origin behind {resolution['cdn']} in {cc} → resolved "
                       "(the next `ntd run` routes it again)")

    @cli.command("hotlines")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def hotlines_cmd(ctx: click.Context, as_json: bool) -> None:
        """The hotline directory in use (INHOPE members, police units, Interpol)."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.directory import load_directory

        rt = ctx.find_root().obj.runtime(scratch=True)
        directory = load_directory(rt.config.get("routing", "directory_file") or None)
        rows = [{"country": cc, "name": e.name, "website": e.website, "channel": e.channel}
                for cc, entries in sorted(directory.hotlines.items()) for e in entries]
        if as_json:
            _emit({"as_of": directory.as_of, "hotlines": rows,
                   "police": {cc: e.name for cc, e in directory.police.items()},
                   "interpol": directory.interpol.name if directory.interpol else None})
            return
        click.echo(f"{len(directory.hotlines)} member countries (as of {directory.as_of})")
        for row in rows:
            click.echo(f"  {row['country']}  {row['name']:<52} {row['website']}")
