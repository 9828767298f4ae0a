"""The escalation ladder of the re-check stage: pure functions, no I/O.

When material is still online after a notice, the re-check stage takes one **step** per
escalation interval. A step is a list of routes (the routing contract of ``docs/routing.md``) that
the stage turns into outbox actions. Steps, in order:

1. **deferred** — steps of the case's escalation plan (``case["escalation"]``, written by
   routing) whose ``after_hours`` have passed since the first notice, e.g. the hoster notice after
   a partner hotline's grace period. They take precedence over the ladder and do not move it.
2. the configured **ladder** (``[recheck] ladder``, default ``reminder``, ``upstream``,
   ``authority``):

   - ``reminder``: the same recipients again (the case's notice and forward routes);
   - ``upstream``: the upstream network, registrar and CDN contacts of the resolution that were
     not noticed yet;
   - ``authority``: the partner hotline or police — the case's own hotline / police / Interpol
     routes again, else the hosting country's hotline (a member country other than home) or the
     home police, with contacts from ``[routing.contacts]``.

Routes whose target is a *placeholder* (``police:NL``, ``hotline:DE``, ``interpol``: no contact
configured) are never sent; they are listed as skipped so the trail says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.routes import split_sendable

LADDER_STEPS = ("reminder", "upstream", "authority")
AUTHORITY_KINDS = frozenset({"hotline", "police", "interpol"})
# Contact scopes the upstream step notices, best first. Upstream networks travel as "hosting"
# notices: notice templates exist per recipient kind, and an upstream network is a hoster's host.
UPSTREAM_SCOPES = {"upstream": "hosting", "registrar": "registrar", "cdn": "cdn"}
UPSTREAM_CHANNELS = frozenset({"email", "api", "form"})
def check_ladder(value: Any) -> str | None:
    """Config check of ``[recheck] ladder``: a list of known step names, no repeats."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "must be a list of step names"
    unknown = [v for v in value if v not in LADDER_STEPS]
    if unknown:
        return f"unknown steps {unknown} (known: {', '.join(LADDER_STEPS)})"
    if len(set(value)) != len(value):
        return "a step may appear once"
    return None


@dataclass(frozen=True, kw_only=True)
class Step:
    """One escalation step: what to send now and what could not be sent."""

    name: str  # "deferred", "reminder", "upstream", "authority", "reappeared"
    routes: list[dict[str, Any]]  # sendable routes
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"target", "why"}
    plan_indexes: list[int] = field(default_factory=list)  # deferred plan steps taken
    advances_ladder: bool = True

    def detail(self, level: int) -> dict[str, Any]:
        """Event detail / monitoring record of this step (targets only, no case data)."""
        return {"level": level, "step": self.name,
                "targets": [{"recipient_kind": r.get("recipient_kind"), "target": r.get("target"),
                             "channel": r.get("channel")} for r in self.routes],
                "skipped": self.skipped}


def due_plan_steps(plan: Sequence[Any], *, noticed_at: datetime, now: datetime,
                   done: Iterable[int]) -> list[tuple[int, dict[str, Any]]]:
    """Deferred plan steps (``when: still_online`` with a route) due now and not yet taken."""
    taken = set(done)
    out = []
    for index, step in enumerate(plan):
        if (not isinstance(step, Mapping) or index in taken
                or step.get("when") != "still_online" or not isinstance(step.get("route"),
                                                                        Mapping)):
            continue
        hours = step.get("after_hours") or 0
        if now >= noticed_at + timedelta(hours=float(hours)):
            out.append((index, dict(step["route"])))
    return out


def reminder_routes(routes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The recipients asked to act (notices and forwards), for a reminder."""
    return [dict(r) for r in routes if r.get("action") in ("notice", "forward")]


def upstream_routes(resolution: Mapping[str, Any] | None, routes: Sequence[Mapping[str, Any]],
                    *, deadline_hours: int | None) -> list[dict[str, Any]]:
    """Best contact per upstream scope (upstream network, registrar, CDN) not noticed yet."""
    if not isinstance(resolution, Mapping):
        return []
    used = {str(r.get("target") or "").lower() for r in routes}
    country = resolution.get("country") or "ZZ"
    out = []
    for scope, kind in UPSTREAM_SCOPES.items():
        best: Mapping[str, Any] | None = None
        for c in resolution.get("contacts") or ():
            if (isinstance(c, Mapping) and c.get("scope") == scope and c.get("address")
                    and c.get("channel") in UPSTREAM_CHANNELS
                    and str(c["address"]).lower() not in used
                    and (best is None
                         or (c.get("confidence") or 0) > (best.get("confidence") or 0))):
                best = c
        if best is not None:
            used.add(str(best["address"]).lower())
            out.append({"action": "notice", "recipient_kind": kind,
                        "target": str(best["address"]), "channel": best["channel"],
                        "country": country, "deadline_hours": deadline_hours,
                        "decided_by": f"recheck:upstream-{scope}",
                        "reason": f"still online after the deadline: escalate to the {scope}"})
    return out


def authority_routes(routes: Sequence[Mapping[str, Any]], resolution: Mapping[str, Any] | None,
                     *, home_country: str, member_countries: Iterable[str],
                     contacts: Mapping[str, tuple[str | None, str]]) -> list[dict[str, Any]]:
    """The partner hotline or police: the case's own authority routes, else a new one.

    ``contacts`` is ``[routing.contacts]`` parsed (``"police:NL" -> (channel, address)``); a
    missing contact yields a placeholder target, which the caller skips and notes.
    """
    own = [dict(r) for r in routes if r.get("recipient_kind") in AUTHORITY_KINDS]
    if own:
        return own
    country = str((resolution or {}).get("country") or "").upper() \
        if isinstance(resolution, Mapping) else ""
    if country and country != home_country and country in set(member_countries):
        kind, action, key, where = "hotline", "forward", f"hotline:{country}", country
        reason = f"still online after the ladder: forward to the {country} hotline"
    else:
        kind, action, key, where = "police", "report", f"police:{home_country}", home_country
        reason = "still online after the ladder: report to the police"
    channel, address = contacts.get(key, (None, ""))
    return [{"action": action, "recipient_kind": kind, "target": address or key,
             "channel": channel or "email", "country": where, "deadline_hours": None,
             "decided_by": f"recheck:authority-{kind}", "reason": reason}]


def next_step(*, ladder: Sequence[str], position: int, plan: Sequence[Any],
              plan_done: Iterable[int], noticed_at: datetime, now: datetime,
              routes: Sequence[Mapping[str, Any]], resolution: Mapping[str, Any] | None,
              home_country: str, member_countries: Iterable[str],
              contacts: Mapping[str, tuple[str | None, str]],
              deadline_hours: int | None) -> Step | None:
    """The step to take now for a case still online, or None when the ladder is exhausted.

    Due deferred plan steps come first (they do not advance the ladder); then the ladder's step
    at ``position``. A ladder step with nothing to send (e.g. no upstream contact known) is
    still returned, so the ladder moves on and the trail records why nothing went out.
    """
    due = due_plan_steps(plan, noticed_at=noticed_at, now=now, done=plan_done)
    if due:
        sendable, skipped = split_sendable(route for _, route in due)
        return Step(name="deferred", routes=sendable, skipped=skipped,
                    plan_indexes=[i for i, _ in due], advances_ladder=False)
    if position >= len(ladder):
        return None
    name = ladder[position]
    if name == "reminder":
        candidates = reminder_routes(routes)
    elif name == "upstream":
        candidates = upstream_routes(resolution, routes, deadline_hours=deadline_hours)
    else:
        candidates = authority_routes(routes, resolution, home_country=home_country,
                                      member_countries=member_countries, contacts=contacts)
    sendable, skipped = split_sendable(candidates)
    if not candidates:
        skipped = [{"target": None, "recipient_kind": None,
                    "why": f"no recipient known for the {name} step"}]
    return Step(name=name, routes=sendable, skipped=skipped)


def reappeared_step(routes: Sequence[Mapping[str, Any]]) -> Step:
    """Material back after removal: notice the original recipients again (ladder restarts)."""
    sendable, skipped = split_sendable(reminder_routes(routes))
    return Step(name="reappeared", routes=sendable, skipped=skipped, advances_ladder=False)
