"""The public plugin API (``engine.api``): what it exports, that its shapes are the shapes the
built-in stages really produce, that the hookspecs are typed with them, and the import rules:
``engine.api`` sits on top of the engine (nothing below imports it, it imports no plugin), and
the example partner plugin needs nothing but ``engine.api`` and ``engine.testing``."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import sys
import typing
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click
import pytest

import engine
from engine import api, config, context, errors, hookspecs, models, routes
from engine.media import signals
from engine.store import Store
from engine.testing import contact, make_case, resolution, route_with_defaults

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ntd-hotline-de"
# Modules engine.api sits on: none of them may import it (or engine.testing), not even inside
# a function or under TYPE_CHECKING.
BELOW_API = [ROOT / "engine" / "context.py", ROOT / "engine" / "models.py",
             ROOT / "engine" / "config.py", ROOT / "engine" / "errors.py",
             ROOT / "engine" / "media" / "signals.py",
             *sorted((ROOT / "engine" / "store").rglob("*.py"))]


def imported_modules(path: Path) -> list[str]:
    """Every module an ``import`` anywhere in ``path`` names (``from a import b`` → ``a.b``
    and ``a``), relative imports resolved against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT).with_suffix("").parts
    package = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            out.append(base)
            out += [f"{base}.{alias.name}" for alias in node.names]
    return out


# -- exports ---------------------------------------------------------------------------------


def test_api_exports_what_a_plugin_needs() -> None:
    assert set(api.__all__) <= set(dir(api))
    assert api.hookimpl is engine.hookimpl
    assert (api.Case, api.Item, api.StageResult) == (models.Case, models.Item,
                                                     models.StageResult)
    assert api.StageContext is context.StageContext
    assert (api.Option, api.positive, api.non_negative, api.one_of) == (
        config.Option, config.positive, config.non_negative, config.one_of)
    for name in ("NtdError", "ConfigError", "InputError", "PluginError", "StorageError",
                 "StageError", "FetchError", "HashlistError", "ResolutionError", "RoutingError",
                 "DeliveryError"):
        assert getattr(api, name) is getattr(errors, name)
        assert name in api.__all__
    assert (api.HashType, api.HASH_TYPES, api.hash_type) == (
        signals.HashType, signals.HASH_TYPES, signals.hash_type)


def test_contract_typeddicts_are_exported() -> None:
    for name in ("Resolution", "DnsFacts", "NetworkFacts", "IntermediaryFacts", "Registrar",
                 "Origin", "Contact", "ContactCandidate", "Route", "JurisdictionProposal",
                 "PlanStep", "RouteDecision", "EscalationStep", "EscalationRoute",
                 "EscalationVeto", "NoticeAction", "NoticeEntry", "Monitoring", "CaseData",
                 "ReporterFields", "FeedbackOutcome", "Assessment"):
        cls = getattr(api, name)
        assert typing.is_typeddict(cls), name
        assert name in api.__all__


def test_vocabularies_are_the_engines() -> None:
    assert api.ACTIONS == routes.ACTIONS
    assert api.RECIPIENT_KINDS == routes.RECIPIENT_KINDS
    assert api.ROUTE_CHANNELS == routes.ROUTE_CHANNELS
    assert api.UNKNOWN_COUNTRY == routes.UNKNOWN_COUNTRY
    from plugins.recheck.escalation import LADDER_STEPS
    from plugins.resolve.contacts import CHANNELS, SCOPES

    assert api.CONTACT_SCOPES == SCOPES
    assert api.CONTACT_CHANNELS == CHANNELS
    assert set(LADDER_STEPS) < set(api.ESCALATION_STEPS)


# -- shapes match what the stages produce ----------------------------------------------------


def test_route_is_exactly_the_route_contract() -> None:
    assert tuple(api.Route.__annotations__) == routes.ROUTE_KEYS
    assert api.Route.__required_keys__ == frozenset(routes.ROUTE_KEYS)
    # A routed case's routes have exactly these keys (ntd's own route stage).
    outcome = route_with_defaults(resolution=resolution(country="NL"))
    assert outcome.routes and all(set(r) == set(routes.ROUTE_KEYS) for r in outcome.routes)


def test_proposal_keys_are_what_the_merge_reads() -> None:
    """Every key the merge validates is a key of JurisdictionProposal, and only rule and
    recipient_kind are always required."""
    source = (ROOT / "plugins" / "route" / "merge.py").read_text(encoding="utf-8")
    read = set(re.findall(r'raw(?:\.get\(|, )"(\w+)"', source))
    assert read and read <= set(api.JurisdictionProposal.__annotations__), read
    assert api.JurisdictionProposal.__required_keys__ == {"rule", "recipient_kind"}


def test_contact_shapes_match_the_ranking() -> None:
    from plugins.resolve.contacts import Contact

    full = Contact(scope="hosting", channel="email", address="abuse@h.example.test",
                   source="plugin", confidence=0.5, note="n", failures=1, origin="p").to_dict()
    assert set(full) == set(api.Contact.__annotations__)
    bare = Contact(scope="hosting", channel="email", address="abuse@h.example.test",
                   source="rdap", confidence=0.9).to_dict()
    assert set(bare) == api.Contact.__required_keys__
    assert api.ContactCandidate.__required_keys__ == {"scope", "channel", "address"}


def test_registrar_shape_matches_domain_rdap() -> None:
    from plugins.resolve.rdap import RegistrarInfo
    from plugins.resolve.service import _registrar_dict

    got = _registrar_dict(RegistrarInfo(name="R", iana_id="1", abuse_email=None,
                                        abuse_phone=None, registry=None, created=None))
    assert got is not None and set(got) == set(api.Registrar.__annotations__)


def test_resolution_shape_matches_the_documented_example() -> None:
    text = (ROOT / "docs" / "resolution.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(\{\"host\".*?)```", text, re.S)
    assert block, "docs/resolution.md lost its resolution example"
    documented = set(re.findall(r'"(\w+)":', block[1]))
    required = (api.Resolution.__required_keys__ | api.Registrar.__required_keys__
                | api.Contact.__required_keys__)
    assert required <= documented, required - documented
    assert set(resolution()) == api.Resolution.__required_keys__


def test_notice_action_matches_the_notice_content() -> None:
    from engine.notice_content import build_action

    case = make_case(resolution=resolution())
    route = route_with_defaults(case=case).routes[0]
    action = build_action(case, dict(route), reference_prefix="NTD")
    assert set(action) | {"id"} == api.NoticeAction.__required_keys__
    assert set(action["entries"][0]) == set(api.NoticeEntry.__annotations__)


def test_escalation_step_matches_the_recheck_stage() -> None:
    from plugins.recheck.escalation import Step

    step = Step(name="reminder", routes=[{"recipient_kind": "hosting", "target": "a@b.test",
                                          "channel": "email"}])
    # What recheck hands ntd_escalate: the step's detail plus the routes about to be sent.
    assert set({**step.detail(1), "routes": step.routes}) == set(
        api.EscalationStep.__annotations__)
    assert set(step.detail(1)["targets"][0]) == set(api.StepTarget.__annotations__)


def test_plan_steps_are_plan_step_shaped() -> None:
    member = route_with_defaults(resolution=resolution(country="FR"))
    cdn = route_with_defaults(resolution=resolution(
        country="US", cdn="Cloudflare",
        contacts=[contact("cdn", "abuse@cdn.example.test", source="rules")]))
    for step in [*member.escalation, *cdn.escalation]:
        assert api.PlanStep.__required_keys__ <= set(step) <= set(api.PlanStep.__annotations__)
    assert {s["when"] for s in [*member.escalation, *cdn.escalation]} == {"still_online",
                                                                          "origin_known"}


def test_typeddicts_are_plain_dicts_at_run_time() -> None:
    proposal: api.JurisdictionProposal = {"rule": "r", "recipient_kind": "hosting",
                                          "veto": True}
    assert type(proposal) is dict
    assert json.loads(json.dumps(resolution())) == resolution()


# -- hookspecs are typed with the API --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n in vars(hookspecs) if n.startswith("ntd_")))
def test_hookspec_annotations_resolve_to_api_types(name: str) -> None:
    namespace: dict[str, Any] = {**vars(api), "click": click, "asyncio": asyncio,
                                 "Store": Store, "Coroutine": Coroutine, "Any": Any}
    hints = typing.get_type_hints(getattr(hookspecs, name), globalns=namespace)
    text = " ".join(str(v) for v in hints.values())
    assert "dict[str, typing.Any]" not in text, f"{name}: use a TypedDict from engine.api"
    assert "return" in hints


# -- import rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", BELOW_API, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_below_the_api_imports_it(path: Path) -> None:
    bad = [m for m in imported_modules(path)
           if m in ("engine.api", "engine.testing") or m.startswith(("engine.api.",
                                                                     "engine.testing."))]
    assert not bad, f"{path.name} imports {bad}"


def test_api_and_testing_import_no_plugin() -> None:
    for name in ("api.py", "testing.py"):
        bad = [m for m in imported_modules(ROOT / "engine" / name)
               if m == "plugins" or m.startswith("plugins.")]
        assert not bad, f"engine/{name} imports {bad}"


def test_api_import_closure_does_not_come_back_to_it() -> None:
    """Follow every engine module engine.api reaches (function-level imports included): none
    of them imports engine.api, so importing it can never start a cycle."""
    seen: set[str] = set()
    todo = ["engine.api"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ROOT.joinpath(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not path.exists():
            continue  # an attribute named in a from-import, not a module
        for target in imported_modules(path):
            if target == "engine.api" and name != "engine.api":
                pytest.fail(f"{name} imports engine.api")
            if target.startswith("engine"):
                todo.append(target)
    assert "engine.context" in seen


def _example_files() -> list[Path]:
    return [*sorted((EXAMPLE / "src").rglob("*.py")), *sorted((EXAMPLE / "tests").rglob("*.py"))]


@pytest.mark.parametrize("path", _example_files(), ids=lambda p: str(p.relative_to(EXAMPLE)))
def test_example_imports_only_the_public_api(path: Path) -> None:
    """A partner plugin and its tests need nothing of ntd but engine.api and engine.testing."""
    allowed_ntd = {"engine.api", "engine.testing"}
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                continue  # relative: the example's own package
            names = [node.module or ""]
        else:
            continue
        for mod in names:
            top = mod.partition(".")[0]
            if mod in allowed_ntd or top == "ntd_hotline_de" or top == "pytest":
                continue
            if top in sys.stdlib_module_names and top not in ("engine", "plugins"):
                continue
            bad.append(mod)
    assert not bad, f"{path.relative_to(EXAMPLE)} imports {bad}"


def test_example_partner_tests_pass() -> None:
    """The example's own test suite (run as its README says: pytest in its folder) passes,
    so CI notices when the public API or ntd's routing breaks a partner's tests."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NTD_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
