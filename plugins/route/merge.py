"""Routing proposals and their merge: precedence, vetoes, the route contract. Pure functions.

Several sources propose who must act on a case: the built-in default policy (``route_inhope``)
and any number of jurisdiction plugins (hook ``ntd_jurisdiction_actions``). This module turns
their raw answers into validated ``Proposal`` records and merges them into the case's routes:

1. A proposal whose ``applies_to`` names countries that do not include the hosting country is
   not applicable and is dropped.
2. Precedence, best first: a country rule (``applies_to`` contains the hosting country), then a
   generic plugin rule, then the built-in default policy; within a tier, higher ``priority``
   first; ties keep the order in which plugins were called.
3. A ``veto`` proposal removes every proposal of its ``recipient_kind`` made by *other*
   plugins. When two plugins veto the same kind, the veto with the higher precedence wins. A
   veto without an ``action`` is a pure veto (nobody of that kind is contacted); one with an
   ``action`` also becomes that kind's route.
4. Of the proposals left, one survives per ``(deferred, action, recipient_kind, country)``: the
   one with the highest precedence. Deferred proposals (``after_hours``) form the escalation
   plan instead of immediate routes.

Every route records ``decided_by = "<plugin>:<rule>"``; everything dropped is reported with the
reason it was dropped, so the trail explains each recipient.

Only the contract keys are ever copied into a route, so nothing else a proposal or a resolution
carries (let alone reporter data, which never reaches this stage) can leak into a notice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import RoutingError
from engine.routes import ACTIONS, RECIPIENT_KINDS, ROUTE_CHANNELS, country_code

_RULE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# Precedence tiers (lower sorts first).
TIER_COUNTRY, TIER_GENERIC, TIER_DEFAULT = 0, 1, 2
TIER_NAMES = {TIER_COUNTRY: "country rule", TIER_GENERIC: "plugin rule",
              TIER_DEFAULT: "default policy"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Proposal:
    """One validated proposal: a route (or a pure veto) and where it came from."""

    action: str | None  # None only for a pure veto
    recipient_kind: str
    target: str
    channel: str
    country: str
    deadline_hours: int | None
    reason: str
    rule: str
    plugin: str
    priority: int = 0
    applies_to: frozenset[str] = frozenset()
    veto: bool = False
    after_hours: int | None = None  # deferred: part of the escalation plan, not sent now
    builtin: bool = False
    order: int = 0  # call order, the final tie-breaker

    @property
    def decided_by(self) -> str:
        """``<plugin>:<rule>``, recorded on the route."""
        return f"{self.plugin}:{self.rule}"

    def tier(self, country: str | None) -> int:
        """Precedence tier for a case hosted in ``country``."""
        if self.builtin:
            return TIER_DEFAULT
        if self.applies_to and country in self.applies_to:
            return TIER_COUNTRY
        return TIER_GENERIC

    def to_route(self) -> dict[str, Any]:
        """The contract-shaped route (only the contract keys)."""
        return {"action": self.action, "recipient_kind": self.recipient_kind,
                "target": self.target, "channel": self.channel, "country": self.country,
                "deadline_hours": self.deadline_hours, "decided_by": self.decided_by,
                "reason": self.reason}

    def brief(self) -> dict[str, Any]:
        """Short form for the trail (what was proposed, by whom)."""
        return {"decided_by": self.decided_by, "action": self.action,
                "recipient_kind": self.recipient_kind, "target": self.target,
                "veto": self.veto, "after_hours": self.after_hours}


@dataclass(frozen=True, kw_only=True)
class MergeOutcome:
    """Routes chosen, the escalation plan, and what was dropped and why."""

    routes: list[dict[str, Any]]
    escalation: list[dict[str, Any]]
    dropped: list[dict[str, Any]] = field(default_factory=list)


def _text(raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise RoutingError(f"{where}: missing {key!r}", reason="bad_proposal")
        return ""
    if not isinstance(value, str):
        raise RoutingError(f"{where}: {key!r} must be a string, got {value!r}",
                           reason="bad_proposal")
    return value


def _hours(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RoutingError(f"{where}: {key!r} must be a whole number of hours >= 0 or null, "
                           f"got {value!r}", reason="bad_proposal")
    return value


def normalize_proposal(raw: Any, plugin: str, *, order: int = 0,
                       builtin: bool = False) -> Proposal:
    """Validate one raw proposal dict; ``RoutingError`` names the plugin and rule at fault.

    A malformed proposal is an error, not something to skip: silently dropping, say, a
    partner's veto could send a notice that country's rules forbid.
    """
    if not isinstance(raw, Mapping):
        raise RoutingError(f"plugin {plugin!r}: a proposal must be a dict, got {raw!r}",
                           reason="bad_proposal")
    rule = raw.get("rule")
    if not isinstance(rule, str) or not _RULE.fullmatch(rule):
        raise RoutingError(f"plugin {plugin!r}: proposal needs a 'rule' name "
                           f"(letters, digits, . _ -), got {rule!r}", reason="bad_proposal")
    where = f"plugin {plugin!r} rule {rule!r}"
    veto = raw.get("veto", False)
    if not isinstance(veto, bool):
        raise RoutingError(f"{where}: 'veto' must be true/false", reason="bad_proposal")
    kind = _text(raw, "recipient_kind", where)
    if kind not in RECIPIENT_KINDS:
        raise RoutingError(f"{where}: recipient_kind {kind!r} is not one of "
                           f"{', '.join(RECIPIENT_KINDS)}", reason="bad_proposal")
    action: str | None = _text(raw, "action", where, required=not veto) or None
    if action is not None and action not in ACTIONS:
        raise RoutingError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}",
                           reason="bad_proposal")
    pure_veto = action is None
    target = _text(raw, "target", where, required=not pure_veto)
    channel = _text(raw, "channel", where, required=not pure_veto)
    if channel and channel not in ROUTE_CHANNELS:
        raise RoutingError(f"{where}: channel {channel!r} is not one of "
                           f"{', '.join(ROUTE_CHANNELS)}", reason="bad_proposal")
    country = country_code(raw.get("country")) if raw.get("country") is not None else None
    if raw.get("country") not in (None, "") and country is None:
        raise RoutingError(f"{where}: country {raw.get('country')!r} is not an ISO 3166 "
                           "alpha-2 code", reason="bad_proposal")
    if country is None and not pure_veto:
        raise RoutingError(f"{where}: missing 'country'", reason="bad_proposal")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RoutingError(f"{where}: 'priority' must be an integer", reason="bad_proposal")
    applies = raw.get("applies_to") or ()
    if isinstance(applies, str):
        applies = (applies,)
    codes = set()
    for item in applies:
        code = country_code(item)
        if code is None:
            raise RoutingError(f"{where}: applies_to {item!r} is not an ISO 3166 alpha-2 code",
                               reason="bad_proposal")
        codes.add(code)
    return Proposal(action=action, recipient_kind=kind, target=target, channel=channel,
                    country=country or "", deadline_hours=_hours(raw, "deadline_hours", where),
                    reason=_text(raw, "reason", where, required=False) or rule, rule=rule,
                    plugin=plugin, priority=priority, applies_to=frozenset(codes), veto=veto,
                    after_hours=_hours(raw, "after_hours", where), builtin=builtin, order=order)


def collect_proposals(answers: Iterable[tuple[Any, str]], *, start: int = 0) -> list[Proposal]:
    """Normalise every plugin's answer (``[(list_of_dicts, plugin_name), ...]``)."""
    out: list[Proposal] = []
    order = start
    for answer, plugin in answers:
        if answer is None:
            continue
        if isinstance(answer, Mapping):
            answer = [answer]  # be lenient: one proposal on its own
        if not isinstance(answer, list | tuple):
            raise RoutingError(f"plugin {plugin!r}: ntd_jurisdiction_actions must return a "
                               f"list of dicts or None, got {type(answer).__name__}",
                               reason="bad_proposal")
        for raw in answer:
            out.append(normalize_proposal(raw, plugin, order=order))
            order += 1
    return out


def precedence_key(p: Proposal, country: str | None) -> tuple[int, int, int]:
    """Sort key, best first: tier, then higher priority, then call order."""
    return (p.tier(country), -p.priority, p.order)


def merge_proposals(proposals: Sequence[Proposal], country: str | None) -> MergeOutcome:
    """Merge proposals for a case hosted in ``country`` by the documented precedence."""
    dropped: list[dict[str, Any]] = []

    def drop(p: Proposal, why: str) -> None:
        dropped.append({**p.brief(), "why": why})

    applicable: list[Proposal] = []
    for p in proposals:
        if p.applies_to and country not in p.applies_to:
            drop(p, f"applies to {', '.join(sorted(p.applies_to))}, not {country}")
        else:
            applicable.append(p)
    ranked = sorted(applicable, key=lambda p: precedence_key(p, country))
    # The best-ranked veto of each kind decides which plugin may still speak for that kind.
    veto_owner: dict[str, Proposal] = {}
    for p in ranked:
        if p.veto and p.recipient_kind not in veto_owner:
            veto_owner[p.recipient_kind] = p
    chosen: dict[tuple[bool, str, str, str], Proposal] = {}
    for p in ranked:
        owner = veto_owner.get(p.recipient_kind)
        if owner is not None and p.plugin != owner.plugin:
            drop(p, f"vetoed by {owner.decided_by}")
            continue
        if p.action is None:
            continue  # a pure veto: it removes, it does not route
        key = (p.after_hours is not None, p.action, p.recipient_kind, p.country)
        if key in chosen:
            drop(p, f"overridden by {chosen[key].decided_by}")
            continue
        chosen[key] = p
    routes = [p.to_route() for p in chosen.values() if p.after_hours is None]
    escalation = [{"after_hours": p.after_hours, "when": "still_online", "route": p.to_route()}
                  for p in chosen.values() if p.after_hours is not None]
    return MergeOutcome(routes=routes, escalation=escalation, dropped=dropped)
