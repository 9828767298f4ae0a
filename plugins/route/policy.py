"""Built-in route stage: who must act on a resolved case (INHOPE practice, home country NL).

The default policy (``default_policy``) follows the published practice of an INHOPE hotline:

==========================  ==============================================================
hosted where                routes
==========================  ==============================================================
shared-hosting platform     notice to the platform's own abuse channel
behind a CDN (origin        notice to the CDN with an origin request; re-routed once the
unknown)                    origin is known (``resolution["origin"]``)
home country (default NL)   notice to the hosting provider (registrar second) and report
                            to the national police unit (NL: TBKK)
other INHOPE country        forward to that country's hotline; if still online after
                            ``forward_grace_hours`` → notice the hoster (escalation plan)
country without a hotline   notice to the hosting provider directly and report to Interpol
unknown / conflicting       ``awaiting_routing`` for an analyst (``ntd route CASE --to``)
==========================  ==============================================================

Jurisdiction plugins add, override or veto actions through ``ntd_jurisdiction_actions``; the
merge (``plugins.route.merge``) applies the documented precedence. Hotline, police and Interpol
addresses are configuration (``[routing.contacts]``); the shipped directory
(``engine/data/inhope_directory.json``) holds the public member list with empty contacts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.api import Case, StageContext
from engine.directory import (
    Directory,
    DirectoryEntry,
    RoutingSettings,
    load_directory,
    settings_from_config,
)
from engine.errors import RoutingError
from engine.models import StageResult
from engine.plugin_manager import await_me_maybe, implementations
from engine.routes import (
    RECIPIENT_KINDS,
    ROUTE_CHANNELS,
    UNKNOWN_COUNTRY,
    contract_routes,
    country_code,
)
from plugins.route.merge import MergeOutcome, Proposal, collect_proposals, merge_proposals

PLUGIN = "route_inhope"
# Registry codes that are not a country: RIPE's "EU", APNIC's "AP", and placeholders.
NOT_A_COUNTRY = frozenset({"EU", "AP", "ZZ", "XX", "AA", "QM", "QZ"})
AWAITING_LOCATION = "unknown or conflicting location"


# -- the default policy --------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PolicyOutcome:
    """What the default policy decided: proposals, or why an analyst must decide."""

    branch: str
    country: str | None
    proposals: list[Proposal] = field(default_factory=list)
    awaiting: str | None = None  # reason when an analyst must decide
    unconfigured: list[str] = field(default_factory=list)  # recipients without a contact
    plan: list[dict[str, Any]] = field(default_factory=list)  # non-route escalation steps


def hosting_country(resolution: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(country, problem)``: the hosting country, or why it is unknown or conflicting.

    ``resolution["countries"]`` (optional) lists the countries of all hosting IPs; more than
    one distinct value is a conflict an analyst must settle.
    """
    raw = resolution.get("country")
    code = country_code(raw)
    if code is None or code in NOT_A_COUNTRY:
        return None, f"hosting country unknown ({raw!r})"
    others = {cc for c in resolution.get("countries") or () if (cc := country_code(c))}
    if others - {code}:
        return None, f"conflicting hosting countries: {', '.join(sorted(others | {code}))}"
    return code, None


def _contact(resolution: Mapping[str, Any], scope: str) -> Mapping[str, Any] | None:
    """The best-ranked usable contact of ``scope`` (resolution lists them ranked)."""
    best = None
    for c in resolution.get("contacts") or ():
        if (isinstance(c, Mapping) and c.get("scope") == scope and c.get("address")
                and c.get("channel") in ROUTE_CHANNELS):
            if best is None or (c.get("confidence") or 0) > (best.get("confidence") or 0):
                best = c
    return best


class _Builder:
    """Collects the default policy's proposals for one case."""

    def __init__(self, settings: RoutingSettings, directory: Directory) -> None:
        self.settings = settings
        self.directory = directory
        self.proposals: list[Proposal] = []
        self.unconfigured: list[str] = []

    def add(self, *, action: str, kind: str, target: str, channel: str, country: str,
            deadline: int | None, rule: str, reason: str, after: int | None = None) -> None:
        self.proposals.append(Proposal(
            action=action, recipient_kind=kind, target=target, channel=channel,
            country=country, deadline_hours=deadline, reason=reason, rule=rule, plugin=PLUGIN,
            builtin=True, after_hours=after, order=len(self.proposals)))

    def provider(self, resolution: Mapping[str, Any], scope: str, country: str, *, rule: str,
                 reason: str, after: int | None = None) -> bool:
        """Notice to the best contact of ``scope``; False when there is none."""
        c = _contact(resolution, scope)
        if c is None:
            return False
        self.add(action="notice", kind=scope, target=str(c["address"]), channel=c["channel"],
                 country=country, deadline=self.settings.deadline(country), rule=rule,
                 reason=reason, after=after)
        return True

    def authority(self, kind: str, country: str, entry: DirectoryEntry | None, *,
                  action: str, rule: str, reason: str, deadline: int | None) -> None:
        """Forward/report to a hotline, police unit or Interpol (contact from config)."""
        key = "interpol" if kind == "interpol" else f"{kind}:{country}"
        channel, address = self.settings.contacts.get(key, (None, ""))
        address = address or (entry.contact if entry else "")
        channel = channel or (entry.channel if entry else "email")
        if kind == "hotline" and channel == "iccam" and not address:
            address = f"iccam:{country}"  # ICCAM routes a forward by country
        if not address:
            self.unconfigured.append(key)
            address = key  # symbolic; the notify stage refuses to send to it
        name = f" ({entry.name})" if entry else ""
        self.add(action=action, kind=kind, target=address, channel=channel, country=country,
                 deadline=deadline, rule=rule, reason=reason + name)


def default_policy(resolution: Mapping[str, Any], settings: RoutingSettings,
                   directory: Directory) -> PolicyOutcome:
    """The built-in policy for one resolution (see the module docstring for the table)."""
    b = _Builder(settings, directory)
    home = settings.home_country
    country, problem = hosting_country(resolution)

    def outcome(branch: str, awaiting: str | None = None,
                plan: list[dict[str, Any]] | None = None) -> PolicyOutcome:
        return PolicyOutcome(branch=branch, country=country, proposals=b.proposals,
                             awaiting=awaiting, unconfigured=b.unconfigured, plan=plan or [])

    platform = resolution.get("platform")
    if platform:
        where = country or UNKNOWN_COUNTRY
        if not b.provider(resolution, "platform", where, rule="platform-abuse",
                          reason=f"shared-hosting platform {platform}: its own abuse channel"):
            return outcome("platform", f"no abuse channel known for platform {platform}")
        return outcome("platform")

    cdn = resolution.get("cdn")
    origin = resolution.get("origin")
    if cdn and not isinstance(origin, Mapping):
        where = country or UNKNOWN_COUNTRY
        if not b.provider(resolution, "cdn", where, rule="cdn-origin-request",
                          reason=f"behind CDN {cdn}: takedown and request for the origin "
                                 "host"):
            return outcome("cdn", f"no abuse contact known for CDN {cdn}")
        return outcome("cdn", plan=[{"when": "origin_known", "then": "reroute",
                                     "reason": f"route the origin behind {cdn} once known"}])
    if cdn and isinstance(origin, Mapping):
        # Origin known (a re-route): the CDN is still told so it stops serving the material,
        # and the origin's hosting is routed by its own country. The domain, and so the
        # registrar, did not change.
        b.provider(resolution, "cdn", country or UNKNOWN_COUNTRY, rule="cdn-notice",
                   reason=f"behind CDN {cdn}, origin known: stop serving the material")
        registrar = [c for c in resolution.get("contacts") or ()
                     if isinstance(c, Mapping) and c.get("scope") == "registrar"]
        resolution = {"country": origin.get("country"), "countries": origin.get("countries"),
                      "contacts": [*(origin.get("contacts") or ()), *registrar]}
        country, problem = hosting_country(resolution)

    if country is None:
        return outcome("unknown", f"{AWAITING_LOCATION}: {problem}")

    if country == home:
        reason = f"hosted in the home country {home}"
        has_hosting = b.provider(resolution, "hosting", country, rule="home-hosting",
                                 reason=f"{reason}: notice-and-takedown to the hoster")
        if settings.registrar_second or not has_hosting:
            b.provider(resolution, "registrar", country, rule="home-registrar",
                       reason=f"{reason}: registrar second" if has_hosting else
                       f"{reason}: no hosting contact, registrar instead")
        if not b.proposals:
            return outcome("home", f"hosted in {home} but no abuse contact for hoster or "
                                   "registrar")
        b.authority("police", home, directory.police.get(home), action="report",
                    rule="home-police", reason=f"{reason}: report to the national police",
                    deadline=None)
        return outcome("home")

    hotline = directory.hotline(country)
    if hotline is not None:
        grace = settings.forward_grace_hours
        b.authority("hotline", country, hotline, action="forward", rule="hotline-forward",
                    reason=f"hosted in {country}, an INHOPE member: forward to the hotline",
                    deadline=grace)
        if not b.provider(resolution, "hosting", country, rule="grace-notice-hosting",
                          after=grace, reason=f"still online {grace} h after the forward to "
                                              f"the {country} hotline: notice the hoster"):
            b.provider(resolution, "registrar", country, rule="grace-notice-registrar",
                       after=grace, reason=f"still online {grace} h after the forward, no "
                                           "hosting contact: notice the registrar")
        return outcome("inhope-member")

    reason = f"hosted in {country}, no INHOPE hotline"
    if not b.provider(resolution, "hosting", country, rule="direct-hosting",
                      reason=f"{reason}: notice the hoster directly"):
        if not b.provider(resolution, "registrar", country, rule="direct-registrar",
                          reason=f"{reason}: no hosting contact, notice the registrar"):
            return outcome("non-member", f"{reason} and no abuse contact for hoster or "
                                         "registrar")
    b.authority("interpol", country, directory.interpol, action="report",
                rule="interpol-report", reason=f"{reason}: report to Interpol", deadline=None)
    return outcome("non-member")


# -- one decision --------------------------------------------------------------------------------
def decide(resolution: Mapping[str, Any] | None, answers: list[tuple[Any, str]],
           settings: RoutingSettings, directory: Directory) -> StageResult:
    """Default policy + plugin proposals → the route stage's result (pure; no I/O)."""
    if not isinstance(resolution, Mapping):
        return StageResult(state="awaiting_routing", action="awaiting_routing",
                           reason="no resolution to route", data={"routes": []},
                           detail={"why": "the case has no resolution"})
    policy = default_policy(resolution, settings, directory)
    plugin_proposals = collect_proposals(answers, start=len(policy.proposals))
    detail: dict[str, Any] = {"policy": policy.branch, "country": policy.country,
                              "home_country": settings.home_country}
    if policy.awaiting is not None:
        # Unknown location or no contact to act on: an analyst decides. Plugins cannot route
        # such a case alone (they supply missing contacts through ntd_contact_sources).
        detail["proposals"] = [p.brief() for p in plugin_proposals]
        reason = AWAITING_LOCATION if policy.country is None and policy.branch == "unknown" \
            else policy.awaiting
        return StageResult(state="awaiting_routing", action="awaiting_routing",
                           reason=reason, detail={**detail, "why": policy.awaiting},
                           data={"routes": [], "escalation": []})
    merged: MergeOutcome = merge_proposals([*plugin_proposals, *policy.proposals],
                                           policy.country)
    routes = contract_routes(merged.routes)
    escalation = [{**step, "route": contract_routes([step["route"]])[0]}
                  for step in merged.escalation] + policy.plan
    if merged.dropped:
        detail["dropped"] = merged.dropped
    if not routes:
        why = "every proposed action was vetoed"
        return StageResult(state="awaiting_routing", action="awaiting_routing",
                           reason=why, detail={**detail, "why": why},
                           data={"routes": [], "escalation": []})
    used = {r["target"] for r in routes} | {s["route"]["target"] for s in escalation
                                            if "route" in s}
    unconfigured = [k for k in policy.unconfigured if k in used]
    if unconfigured:
        detail["unconfigured_contacts"] = unconfigured
    detail["decided_by"] = [r["decided_by"] for r in routes]
    return StageResult(state="routed", action="routed", detail=detail,
                       data={"routes": routes, "escalation": escalation})


# -- hooks ---------------------------------------------------------------------------------------
@dataclass
class _RunState:
    settings: RoutingSettings
    directory: Directory


def run_state(ctx: StageContext) -> _RunState:
    """Settings and directory of this run (loaded once, on first use)."""
    state = ctx.state.get(PLUGIN)
    if state is None:
        settings = settings_from_config(ctx.config)
        path = ctx.config.get("routing", "directory_file") or None
        state = ctx.state[PLUGIN] = _RunState(settings, load_directory(path))
    return state


async def gather_proposals(case: Case, resolution: Mapping[str, Any],
                           ctx: Any) -> list[tuple[Any, str]]:
    """Every ``ntd_jurisdiction_actions`` answer as ``(answer, plugin)``.

    Like ``engine.plugin_manager.call_all``, but an exception names the partner plugin that
    raised it, and each plugin gets its own copy of the resolution (no plugin can change what
    the next one or the default policy sees).
    """
    answers: list[tuple[Any, str]] = []
    for impl in implementations(ctx.pm, "ntd_jurisdiction_actions"):
        kwargs = {"case": case, "resolution": copy.deepcopy(dict(resolution)), "ctx": ctx}
        try:
            answer = await await_me_maybe(
                impl.function(**{name: kwargs[name] for name in impl.argnames}))
        except Exception as exc:
            raise RoutingError(f"plugin {impl.plugin_name!r}: ntd_jurisdiction_actions "
                               f"failed: {type(exc).__name__}: {exc}", reason="plugin_error",
                               case_id=case.id) from exc
        if answer is not None:
            answers.append((answer, impl.plugin_name))
    return answers


__all__ = ["RECIPIENT_KINDS", "Directory", "DirectoryEntry", "PolicyOutcome",
           "RoutingSettings", "decide", "default_policy", "gather_proposals",
           "hosting_country", "load_directory", "settings_from_config"]


async def route_case(case: Case, ctx: StageContext) -> StageResult:
    """Route one resolved case (the ``ntd_route`` hook)."""
    state = run_state(ctx)
    resolution = case.data.get("resolution")
    answers: list[tuple[Any, str]] = []
    if isinstance(resolution, Mapping):
        answers = await gather_proposals(case, resolution, ctx)
    try:
        return decide(resolution, answers, state.settings, state.directory)
    except RoutingError as exc:
        exc.case_id = exc.case_id or case.id
        raise
