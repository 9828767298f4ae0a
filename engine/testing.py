"""Test helpers for plugin authors: real contexts, contract-shaped records, ntd's routing.

A partner hotline's tests import this module and ``engine.api``, nothing else of ntd::

    from engine.testing import make_context, resolution, route_with_defaults
    from my_hotline import rules

    def test_forward_to_our_hotline():
        outcome = route_with_defaults(rules, resolution=resolution(country="FR"),
                                      name="hotline_fr")
        assert outcome.decided_by == ["hotline_fr:fr-forward"]

- ``make_context`` builds a real ``StageContext`` whose configuration is validated exactly as
  ``ntd run`` validates ``ntd.toml``: against the engine's sections plus the ``ntd_config_schema``
  of your plugin (and of the built-ins you name), so a typo in a test's config fails as it would
  in production.
- ``resolution``, ``contact`` and ``make_case`` build the records hooks receive, with harmless
  defaults (``*.example.test`` names, TEST-NET addresses, documentation AS numbers).
- ``route_with_defaults`` runs ntd's own route stage (the built-in plugin ``route_inhope``,
  loaded from its entry point like in a real run) on a resolved case, with your plugin's
  proposals merged into the default policy: the routes a real run would record.
- ``FakeClock`` is a clock that stands still until a test moves it.

Only ``engine`` modules are imported here: the built-in stages are reached through the plugin
manager, as a running ntd reaches them.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, TypeAlias

import pluggy

from engine import PROJECT, hookimpl
from engine.api import (
    Case,
    Contact,
    Item,
    JurisdictionProposal,
    Origin,
    PlanStep,
    Registrar,
    Resolution,
    Route,
    StageContext,
    StageResult,
)
from engine.clock import Clock, parse
from engine.config import Config, validate
from engine.errors import PluginError, RoutingError
from engine.plugin_manager import ENTRY_POINT_GROUP, call_all, call_first, get_plugin_manager
from engine.store import Store, open_store

#: Where ``FakeClock`` starts unless told otherwise (a fixed, unremarkable weekday morning).
DEFAULT_NOW = "2026-01-05T09:00:00.000000Z"
#: The built-in plugin that implements the route stage (its entry-point name).
ROUTE_PLUGIN = "route_inhope"
#: Name given to a bare list of proposals passed to ``route_with_defaults``.
PROPOSALS_PLUGIN = "partner"

__all__ = [
    "DEFAULT_NOW", "FakeClock", "RoutingOutcome", "aroute_with_defaults", "builtin_plugins",
    "contact", "make_case", "make_context", "make_plugin_manager", "plugin_name", "resolution",
    "route_with_defaults", "validated_config",
]

#: A module or object with hook implementations, or a ``(name, plugin)`` pair.
PluginSpec: TypeAlias = object


# -- clock -----------------------------------------------------------------------------------


class FakeClock(Clock):
    """A clock that stands still at ``start`` until ``advance`` or ``set`` moves it.

    ``NTD_FAKE_NOW`` is ignored: a test's clock is what the test says.
    """

    def __init__(self, start: datetime | str = DEFAULT_NOW) -> None:
        """A clock reading ``start`` (an aware datetime or ntd/ISO-8601 text)."""
        super().__init__(fixed=parse(start) if isinstance(start, str) else start)

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0, hours: float = 0.0,
                days: float = 0.0) -> None:
        """Move the clock forward (``clock.advance(hours=24)``)."""
        super().advance(seconds + 60 * minutes + 3600 * hours + 86400 * days)

    def set(self, moment: datetime | str) -> None:
        """Put the clock at ``moment``."""
        target = parse(moment) if isinstance(moment, str) else moment
        self._offset = timedelta(0)
        self._fixed = target


# -- plugins ---------------------------------------------------------------------------------


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _is_builtin(ep: metadata.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is None or dist.metadata["Name"] == PROJECT


def builtin_plugins(*names: str) -> list[tuple[str, object]]:
    """ntd's built-in plugins named by their entry-point names (``"route_inhope"``, ...).

    They load from ntd's own ``ntd.plugins`` entry points, the path ``ntd run`` takes, so a test
    never depends on where a built-in's code lives.
    """
    found = {ep.name: ep for ep in _entry_points() if _is_builtin(ep)}
    out: list[tuple[str, object]] = []
    for name in names:
        ep = found.get(name)
        if ep is None:
            raise PluginError(f"no built-in ntd plugin named {name!r} "
                              f"(known: {', '.join(sorted(found)) or 'none'})")
        try:
            out.append((name, ep.load()))
        except Exception as exc:  # foreign import-time failures, reported like ntd does
            raise PluginError(f"plugin {name!r} ({ep.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
    return out


def plugin_name(plugin: object) -> str:
    """The name ntd gives ``plugin``: its entry-point name when it is installed as one, else
    the top-level package of its module (pass ``name=`` where that matters, e.g. to check
    ``decided_by``)."""
    module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
    for ep in _entry_points():
        if ep.value.partition(":")[0] == module:
            return ep.name
    return module.partition(".")[0]


def _is_pair(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)


def _named(plugins: Iterable[PluginSpec]) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for plugin in plugins:
        if _is_pair(plugin):
            pair: tuple[str, object] = plugin  # type: ignore[assignment]
            out.append(pair)
        else:
            out.append((plugin_name(plugin), plugin))
    return out


def make_plugin_manager(*plugins: PluginSpec,
                        builtins: Iterable[str] = ()) -> pluggy.PluginManager:
    """A fresh plugin manager with ``plugins`` and the named built-ins, nothing else.

    ``plugins`` are modules or objects with hook implementations, or ``(name, plugin)`` pairs.
    Other installed plugins are *not* loaded (a test must not depend on what else is installed)
    and ``NTD_DISABLE_PLUGINS`` is ignored. They are registered in entry-point-name order, as
    ``ntd run`` registers installed plugins, so hooks are called in the same order.
    """
    named = sorted([*builtin_plugins(*builtins), *_named(plugins)], key=lambda pair: pair[0])
    return get_plugin_manager(load_entrypoints=False, extra_plugins=named, disabled=set())


# -- context ---------------------------------------------------------------------------------


def validated_config(pm: pluggy.PluginManager,
                     config: Mapping[str, Any] | None = None) -> Config:
    """``config`` (TOML-shaped: ``{"section": {"key": value}}``, dotted or nested sections)
    validated against the engine's sections and every registered plugin's schema."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.runtime import merged_schema

    return validate(copy.deepcopy(dict(config or {})), merged_schema(pm))


def _close_store(async_store: Any, store: Store | None, folder: str | None) -> None:
    async_store.close()
    if store is not None:
        store.close()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def make_context(*plugins: PluginSpec, config: Mapping[str, Any] | None = None,
                 builtins: Iterable[str] = (), clock: Clock | None = None,
                 store: Store | None = None, pm: pluggy.PluginManager | None = None,
                 owner: str = "test") -> StageContext:
    """A real ``StageContext`` for calling your hooks in a test.

    ``config`` is validated like ``ntd.toml`` against the engine's sections, the
    ``ntd_config_schema`` of ``plugins`` and of the named ``builtins`` (e.g.
    ``builtins=["route_inhope"]`` to set ``[routing] home_country``); defaults are filled in.
    Without ``pm`` a fresh plugin manager holds exactly those plugins. Without ``store`` the
    context gets an empty SQLite store in a temporary folder, closed and removed when the
    context is garbage-collected. ``clock`` defaults to a ``FakeClock``. If a test uses
    ``ctx.fetcher`` or ``ctx.run_cpu``, ``await ctx.aclose()`` at its end.
    """
    if pm is None:
        pm = make_plugin_manager(*plugins, builtins=builtins)
    checked = validated_config(pm, config)
    folder = None
    own_store = store is None
    if store is None:
        folder = tempfile.mkdtemp(prefix="ntd-test-")
        store = open_store(str(Path(folder) / "ntd.db"))
    ctx = StageContext(config=checked, pm=pm, store=store, clock=clock or FakeClock(),
                       owner=owner)
    # The finalizer holds the store, not the context, so the context can still be collected.
    weakref.finalize(ctx, _close_store, ctx.store, store if own_store else None, folder)
    return ctx


# -- records ---------------------------------------------------------------------------------


def contact(scope: str, address: str, *, channel: str = "email", source: str = "test",
            confidence: float = 0.9, note: str | None = None) -> Contact:
    """A ranked contact as a resolution lists it (``resolution["contacts"]``)."""
    out: dict[str, Any] = {"scope": scope, "channel": channel, "address": address,
                           "source": source, "confidence": confidence}
    if note:
        out["note"] = note
    return out  # type: ignore[return-value]  # (scope/channel are checked by ntd, not here)


def _domain_of(host: str) -> str:
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.urls import registrable_domain

    return registrable_domain(host)


def resolution(*, host: str = "www.site.example.test", country: str | None = "NL",
               contacts: Sequence[Contact] | None = None, cdn: str | None = None,
               platform: str | None = None, platform_rule: str | None = None,
               ips: Sequence[str] = ("192.0.2.10",), asn: int | None = 64500,
               network: str | None = "192.0.2.0/24", org: str | None = "Example Hosting",
               registrar: Registrar | None = None, domain: str | None = None,
               countries: Sequence[str] | None = None, origin: Origin | None = None,
               notes: Sequence[str] = (), resolved_at: str = DEFAULT_NOW,
               **extra: Any) -> Resolution:
    """A resolution as the resolve stage records it, with harmless defaults.

    Without ``contacts`` the hoster has one RDAP abuse address
    (``abuse@hoster.example.test``). ``countries`` (all hosting IPs' countries) and ``origin``
    (the host behind a CDN) are included only when given; ``extra`` adds or overrides keys.
    """
    if contacts is None:
        contacts = [contact("hosting", "abuse@hoster.example.test", source="rdap")]
    out: dict[str, Any] = {
        "host": host, "ips": list(ips), "cnames": [], "dns_outcome": "ok",
        "dns_source": "static", "asn": asn, "network": network,
        "network_name": "EXAMPLE-NET" if network else None, "network_handle": None,
        "org": org, "country": country, "abuse_phones": [], "rdap_source": None,
        "domain": domain if domain is not None else _domain_of(host),
        "registrar": copy.deepcopy(registrar), "cdn": cdn, "platform": platform,
        "platform_rule": platform_rule, "contacts": [dict(c) for c in contacts],
        "notes": list(notes), "resolved_at": resolved_at,
    }
    if countries is not None:
        out["countries"] = list(countries)
    if origin is not None:
        out["origin"] = copy.deepcopy(origin)
    out.update(extra)
    return out  # type: ignore[return-value]


_default_resolution = resolution  # (``resolution`` is also a parameter name below)


def make_case(url: str | None = None, *, state: str = "resolved",
              resolution: Resolution | None = None, data: Mapping[str, Any] | None = None,
              items: Sequence[Item] = (), case_id: str = "C0000000000000000",
              created_at: str = DEFAULT_NOW, retry_at: str | None = None,
              attempts: int = 0) -> Case:
    """A case as a stage hook receives it.

    ``url`` defaults to a page on the resolution's host; ``resolution`` goes into
    ``case.data["resolution"]`` (other fields through ``data``).
    """
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.urls import canonicalize

    if url is None:
        host = (resolution.get("host") if resolution is not None else None) \
            or "www.site.example.test"
        url = f"https://{host}/page.html"
    canonical = canonicalize(url)
    fields = dict(copy.deepcopy(dict(data or {})))
    if resolution is not None:
        fields["resolution"] = copy.deepcopy(resolution)
    return Case(id=case_id, url=url, canonical_url=canonical.url, host=canonical.host,
                domain=canonical.domain, state=state, state_reason=None,
                created_at=created_at, updated_at=created_at, retry_at=retry_at,
                attempts=attempts, items=tuple(items), data=fields)


# -- routing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingOutcome:
    """What ntd's route stage made of a case: the routes a run would store, and why."""

    state: str  # "routed" or "awaiting_routing"
    reason: str | None
    routes: list[Route]
    escalation: list[PlanStep]  # the deferred steps (e.g. a hoster notice after a grace period)
    detail: dict[str, Any]  # the route event's detail: policy branch, dropped proposals, ...
    answered_by: str | None  # the plugin whose ntd_route answered (normally route_inhope)
    result: StageResult = field(repr=False)

    @property
    def decided_by(self) -> list[str]:
        """``decided_by`` of every route, in order."""
        return [route["decided_by"] for route in self.routes]

    @property
    def dropped(self) -> list[dict[str, Any]]:
        """Every proposal the merge dropped, with ``why`` (``vetoed by ...``, ...)."""
        return list(self.detail.get("dropped") or [])


class _Proposals:
    """A stand-in plugin that proposes a fixed list (a copy per call)."""

    def __init__(self, proposals: Sequence[JurisdictionProposal]) -> None:
        self._proposals = copy.deepcopy(list(proposals))

    @hookimpl
    def ntd_jurisdiction_actions(self, case: Case, resolution: Resolution,
                                 ctx: StageContext) -> list[JurisdictionProposal]:
        """The fixed proposals."""
        return copy.deepcopy(self._proposals)


def _routing_plugins(proposals_or_plugin: Any, name: str | None) -> list[tuple[str, object]]:
    if proposals_or_plugin is None:
        return []
    if _is_pair(proposals_or_plugin):
        return _named([proposals_or_plugin])
    if isinstance(proposals_or_plugin, list | tuple):
        if all(isinstance(p, Mapping) for p in proposals_or_plugin):
            return [(name or PROPOSALS_PLUGIN, _Proposals(proposals_or_plugin))]
        return _named(proposals_or_plugin)  # several plugins
    return [(name or plugin_name(proposals_or_plugin), proposals_or_plugin)]


async def aroute_with_defaults(proposals_or_plugin: Any = None, *,
                               resolution: Resolution | None = None,
                               config: Mapping[str, Any] | None = None,
                               name: str | None = None, clock: Clock | None = None,
                               case: Case | None = None) -> RoutingOutcome:
    """``route_with_defaults`` for async tests (the same arguments)."""
    if case is None:
        if resolution is None:
            resolution = _default_resolution()
        case = make_case(state="resolved", resolution=resolution)
    elif resolution is not None:
        case = make_case(case.url, state=case.state, data=case.data, items=case.items,
                         case_id=case.id, created_at=case.created_at, resolution=resolution)
    pm = make_plugin_manager(*_routing_plugins(proposals_or_plugin, name),
                             builtins=[ROUTE_PLUGIN])
    ctx = make_context(pm=pm, config=config, clock=clock)
    try:
        # What `ntd run` does around a stage: start every plugin, dispatch the stage hook
        # first-answer-wins (engine.pipeline), shut plugins down.
        await call_all(pm, "ntd_startup", ctx=ctx)
        try:
            result, plugin = await call_first(pm, "ntd_route", case=case, ctx=ctx)
        finally:
            await call_all(pm, "ntd_shutdown", ctx=ctx)
    finally:
        await ctx.aclose()
    if not isinstance(result, StageResult):
        raise RoutingError(f"no plugin answered ntd_route (got {result!r})", case_id=case.id)
    return RoutingOutcome(state=result.state, reason=result.reason,
                          routes=list(result.data.get("routes") or []),
                          escalation=list(result.data.get("escalation") or []),
                          detail=dict(result.detail), answered_by=plugin, result=result)


def route_with_defaults(proposals_or_plugin: Any = None, *,
                        resolution: Resolution | None = None,
                        config: Mapping[str, Any] | None = None, name: str | None = None,
                        clock: Clock | None = None, case: Case | None = None) -> RoutingOutcome:
    """Route a resolved case the way ``ntd run`` would, with your proposals in the merge.

    ``proposals_or_plugin`` is your plugin (a module or object implementing
    ``ntd_jurisdiction_actions``, or a ``(name, plugin)`` pair; a list of plugins works too), a
    list of proposals (as if one plugin named ``name`` or ``"partner"`` returned them), or
    ``None`` for the default policy alone. A plugin's name is ``name``, else its entry-point
    name if installed, else its top-level package; routes record it in ``decided_by``.

    ntd's route stage is the built-in ``route_inhope``, loaded from its entry point; no other
    installed plugin takes part. ``config`` is validated against the engine's, its and your
    plugin's sections (e.g. ``{"routing": {"home_country": "DE"}, "hotline_de": {...}}``).
    ``resolution`` defaults to
    ``engine.testing.resolution()``; ``case`` supplies a whole case instead. A malformed
    proposal raises ``RoutingError`` as it would in a run. Synchronous: inside a running event
    loop use ``aroute_with_defaults``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("route_with_defaults called inside an event loop: "
                           "await aroute_with_defaults(...) instead")
    return asyncio.run(aroute_with_defaults(proposals_or_plugin, resolution=resolution,
                                            config=config, name=name, clock=clock, case=case))

