"""Commands of the routing plugin: ``ntd route CASE``, ``ntd hotlines``, ``ntd bench route``."""

from __future__ import annotations

import asyncio
import getpass
import ipaddress
import json
import random
import time
from types import SimpleNamespace
from typing import Any

import click

from engine.errors import InputError
from plugins.routing import RECIPIENT_KINDS, ROUTE_CHANNELS, contract_routes, country_code

# The action an analyst's route implies for each recipient kind.
KIND_ACTION = {"hosting": "notice", "registrar": "notice", "cdn": "notice",
               "platform": "notice", "hotline": "forward", "police": "report",
               "interpol": "report"}


def _emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def parse_to(spec: str) -> tuple[str, str, str]:
    """``KIND:TARGET[:CHANNEL]`` → (kind, target, channel); the channel is guessed if absent.

    TARGET may itself contain colons (``hotline:https://api.example/forward:api``): the last
    part is taken as the channel only when it names one.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in RECIPIENT_KINDS or not rest:
        raise InputError(f"--to {spec!r}: expected KIND:TARGET[:CHANNEL] with KIND one of "
                         f"{', '.join(RECIPIENT_KINDS)}")
    target, sep, channel = rest.rpartition(":")
    if not sep or channel not in ROUTE_CHANNELS:
        target, channel = rest, ""
    if not target:
        raise InputError(f"--to {spec!r}: empty target")
    if not channel:
        if "@" in target:
            channel = "email"
        elif target.startswith(("http://", "https://")):
            channel = "api"
        elif kind == "hotline":
            channel = "iccam"
        else:
            raise InputError(f"--to {spec!r}: cannot tell the channel; append one of "
                             f":{', :'.join(ROUTE_CHANNELS)}")
    return kind, target, channel


def analyst_routes(specs: tuple[str, ...], *, country: str, deadline: int | None,
                   actor: str, reason: str) -> list[dict[str, Any]]:
    """Contract-shaped routes for an analyst's ``--to`` decisions."""
    routes = []
    for spec in specs:
        kind, target, channel = parse_to(spec)
        routes.append({"action": KIND_ACTION[kind], "recipient_kind": kind, "target": target,
                       "channel": channel, "country": country,
                       "deadline_hours": None if KIND_ACTION[kind] == "report" else deadline,
                       "decided_by": actor, "reason": reason})
    return contract_routes(routes)


# States of a case that routing has decided on: the only ones a CDN's origin can re-route.
REROUTABLE = ("routed", "awaiting_routing", "noticed", "monitoring", "escalated", "reappeared")
CONTACT_CHANNELS = ("email", "form", "api")


def parse_contact(spec: str) -> dict[str, Any]:
    """``ADDRESS[:CHANNEL]`` → a hosting contact in the resolution's contract shape."""
    address, sep, channel = spec.rpartition(":")
    if not sep or channel not in CONTACT_CHANNELS:
        address, channel = spec, ""
    address = address.strip()
    if not channel:
        if "@" in address and not address.startswith(("http://", "https://")):
            channel = "email"
        elif address.startswith("https://"):
            channel = "form"
        else:
            raise InputError(f"--contact {spec!r}: expected an e-mail address or an https:// "
                             f"URL, optionally with :{', :'.join(CONTACT_CHANNELS)}")
    return {"scope": "hosting", "channel": channel, "address": address, "source": "analyst",
            "confidence": 1.0}


def register(cli: click.Group) -> None:
    """Add this plugin's commands to ``cli``."""
    if "route" in cli.commands:
        return  # already registered (the group is module-global)

    @cli.command("route")
    @click.argument("case_id")
    @click.option("--to", "to", multiple=True, metavar="KIND:TARGET[:CHANNEL]",
                  help="Route an awaiting_routing case (repeatable), e.g. "
                       "police:unit@example.org:email.")
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
        from plugins.route_inhope import settings_from_config

        rt = ctx.find_root().obj.runtime()
        found = rt.store.get_case(case_id, events=False)
        if found is None:
            raise InputError(f"no case {case_id!r}")
        if to:
            settings = settings_from_config(rt.config)
            resolution = found.get("resolution") or {}
            cc = (country_code(country) if country else None)
            if country and cc is None:
                raise InputError(f"--country {country!r}: expected an ISO 3166 alpha-2 code")
            cc = cc or country_code(resolution.get("country")) or settings.home_country
            hours = deadline if deadline is not None else settings.deadline(cc)
            actor = f"analyst:{analyst or getpass.getuser()}"
            routes = analyst_routes(to, country=cc, deadline=hours, actor=actor,
                                    reason=reason or "routed by an analyst")
            rt.store.transition(case_id, state="routed", stage="route", actor=actor,
                                action="routed", now=rt.clock.now_text(),
                                detail={"decided_by": [r["decided_by"] for r in routes],
                                        "override": True},
                                data={"routes": routes, "escalation": []},
                                expect=["awaiting_routing"])
            found = rt.store.get_case(case_id, events=False)
        routes = found.get("routes") or []
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
        found = rt.store.get_case(case_id, events=False)
        if found is None:
            raise InputError(f"no case {case_id!r}")
        resolution = found.get("resolution") or {}
        if not resolution.get("cdn"):
            raise InputError(f"case {case_id} is not behind a CDN (its resolution names none)")
        cc = country_code(country)
        if cc is None:
            raise InputError(f"--country {country!r}: expected an ISO 3166 alpha-2 code")
        now = rt.clock.now_text()
        actor = f"analyst:{analyst or getpass.getuser()}"
        # Who recorded it, and the note, go to the trail only (anonymisation clears notes
        # there; case data keeps the origin as long as the case).
        addresses = []
        for ip in ips:
            try:
                addresses.append(str(ipaddress.ip_address(ip.strip())))
            except ValueError as exc:
                raise InputError(f"--ip {ip!r}: not an IP address") from exc
        origin: dict[str, Any] = {"country": cc, "countries": [cc],
                                  "contacts": [parse_contact(c) for c in contacts],
                                  "ips": addresses, "at": now}
        detail: dict[str, Any] = {"cdn": resolution["cdn"], "origin_country": cc,
                                  "origin_contacts": len(origin["contacts"])}
        if note:
            detail["note"] = note
        # (a worker holding the case loses its lease: its commit cannot undo the re-route)
        rt.store.transition(case_id, state="resolved", stage="route", actor=actor,
                            action="origin_known", now=now, detail=detail,
                            data={"resolution": {**resolution, "origin": origin}},
                            expect=REROUTABLE)
        result = {"id": case_id, "state": "resolved", "cdn": resolution["cdn"],
                  "origin": origin}
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
        from plugins.route_inhope import load_directory

        rt = ctx.find_root().obj.runtime()
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

    bench = cli.commands.get("bench")
    if isinstance(bench, click.Group) and "route" not in bench.commands:

        @bench.command("route")
        @click.option("--cases", type=click.IntRange(min=100), default=100_000,
                      show_default=True)
        @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
        def bench_route_cmd(cases: int, as_json: bool) -> None:
            """Routed cases/s: default policy + a partner plugin's proposals + merge."""
            result = bench_route(cases)
            if as_json:
                _emit(result)
            else:
                for key, value in result.items():
                    click.echo(f"{key}: {value}")


# -- benchmark -----------------------------------------------------------------------------------
class _BenchPartner:
    """A partner plugin like examples/ntd-hotline-de: a country rule, a priority, a veto."""

    @staticmethod
    def ntd_jurisdiction_actions(case: Any, resolution: dict[str, Any],
                                 ctx: Any) -> list[dict[str, Any]] | None:
        if resolution.get("country") != "DE":
            return None
        return [{"rule": "de-police-only", "recipient_kind": "registrar", "veto": True,
                 "applies_to": "DE", "reason": "bench: no registrar notices"},
                {"rule": "de-bka", "action": "report", "recipient_kind": "police",
                 "target": "bka@example.invalid", "channel": "email", "country": "DE",
                 "deadline_hours": None, "applies_to": ["DE"], "priority": 5,
                 "reason": "bench: report to the BKA"}]


def synthetic_resolutions(n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` resolutions over every policy branch (addresses are *.example.test)."""
    rng = random.Random(seed)
    members = ["DE", "FR", "GB", "US", "BE", "PL", "CA", "JP"]
    others = ["RU", "CN", "SC", "PA", "VN", "MD"]
    out = []
    for i in range(n):
        r = rng.random()
        host = f"host-{i}.example.test"
        contacts = [{"scope": "hosting", "channel": "email", "address": f"abuse@hoster-{i % 97}"
                     ".example.test", "source": "rdap", "confidence": 0.9},
                    {"scope": "registrar", "channel": "email", "address": f"abuse@registrar-"
                     f"{i % 13}.example.test", "source": "rdap", "confidence": 0.8}]
        res: dict[str, Any] = {"host": host, "ips": [f"192.0.2.{i % 250}"], "asn": 64500,
                               "network": "192.0.2.0/24", "org": "Lab hoster", "cdn": None,
                               "platform": None, "registrar": None, "contacts": contacts}
        if r < 0.40:
            res["country"] = "NL"
        elif r < 0.70:
            res["country"] = members[i % len(members)]
        elif r < 0.85:
            res["country"] = others[i % len(others)]
        elif r < 0.92:
            res.update(country="US", cdn="cloudflare")
            contacts.append({"scope": "cdn", "channel": "form", "address":
                             "https://cdn.example.test/abuse", "source": "rules",
                             "confidence": 1.0})
        elif r < 0.97:
            res.update(country="US", platform="blog.example.test")
            contacts.append({"scope": "platform", "channel": "form", "address":
                             "https://blog.example.test/report", "source": "rules",
                             "confidence": 1.0})
        else:
            res["country"] = rng.choice([None, "EU", "??"])
        out.append(res)
    return out


def bench_route(n: int = 100_000) -> dict[str, Any]:
    """Routed cases/s for ``n`` synthetic resolved cases, two ways (no database involved).

    ``decision``: the default policy, proposal validation and merge (``decide``) with the
    partner's answer precomputed. ``stage``: what ``ntd_route`` does per case — the
    ``ntd_jurisdiction_actions`` hook dispatched through the plugin manager (copy of the
    resolution per plugin, await), then ``decide`` — sequentially in one event loop. The store
    commit is not included (``ntd bench intake`` measures the store).
    """
    from engine.models import Case
    from engine.plugin_manager import get_plugin_manager
    from plugins.route_inhope import RoutingSettings, decide, gather_proposals, load_directory

    settings = RoutingSettings()
    directory = load_directory()
    resolutions = synthetic_resolutions(n)
    cases = [Case(id=f"C{i}", url=f"http://{r['host']}/", canonical_url=f"http://{r['host']}/",
                  host=r["host"], domain="example.test", state="resolved", state_reason=None,
                  created_at="", updated_at="", data={"resolution": r})
             for i, r in enumerate(resolutions)]
    partner = _BenchPartner()
    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[("bench_partner", partner)])
    answers = [[(a, "bench_partner")] if (a := partner.ntd_jurisdiction_actions(None, r, None))
               else [] for r in resolutions]

    # Wall time and this process's CPU time: on a shared machine the CPU figure is the
    # steadier one (other processes stretch wall time, not our CPU time).
    states: dict[str, int] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    for r, ans in zip(resolutions, answers, strict=True):
        result = decide(r, ans, settings, directory)
        states[result.state] = states.get(result.state, 0) + 1
    decision_s = time.perf_counter() - started
    decision_cpu = time.process_time() - cpu_started

    ctx = SimpleNamespace(pm=pm, config=None, state={})

    async def stage() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for case in cases:
            res = case.data["resolution"]
            decide(res, await gather_proposals(case, res, ctx), settings, directory)
        return time.perf_counter() - t0, time.process_time() - c0

    stage_s, stage_cpu = asyncio.run(stage())
    return {"cases": n, "routed": states.get("routed", 0),
            "awaiting_routing": states.get("awaiting_routing", 0),
            "decision_seconds": round(decision_s, 3),
            "decision_cases_per_s": round(n / decision_s),
            "decision_cases_per_cpu_s": round(n / max(decision_cpu, 1e-9)),
            "stage_seconds": round(stage_s, 3),
            "stage_cases_per_s": round(n / stage_s),
            "stage_cases_per_cpu_s": round(n / max(stage_cpu, 1e-9)),
            "measured": "decide() per case; stage = hook dispatch + resolution copy + decide(),"
                        " one partner plugin, no database"}
