"""``ntd bench route``: routed cases/s (the default policy, a partner's proposals, the merge).

Drives the built-in route stage's policy directly (benchmarks measure stage internals; no
product module imports this one).
"""

from __future__ import annotations

import asyncio
import random
import time
from types import SimpleNamespace
from typing import Any


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
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.directory import RoutingSettings, load_directory

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.models import Case

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.plugin_manager import get_plugin_manager

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.route.policy import decide, gather_proposals

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
