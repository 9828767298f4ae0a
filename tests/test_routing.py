"""Jurisdiction routing: default policy branches, plugin precedence and vetoes, the stage end to
end, the installed example plugin, the analyst override and the reporter-data guarantee.

The built-in plugin is registered with ``extra_plugins`` (in-process) or, for ``ntd`` child
processes, through a dist-info directory generated in ``tmp_path`` (``entry_points.txt`` on
``PYTHONPATH``): ``importlib.metadata`` finds it exactly as it finds an installed package. The
example package ``examples/ntd-hotline-de`` is "installed" the same way, with the entry point
read from its own ``pyproject.toml``: this works on a fresh clone without pip or network.
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

import plugins.route
from engine import hookimpl
from engine.directory import (
    DIRECTORY_FILE,
    RoutingSettings,
    load_directory,
    parse_contact,
    settings_from_config,
)
from engine.errors import ConfigError, InputError, RoutingError
from engine.intake import submit_files
from engine.models import REPORTER_FIELDS
from engine.routes import ROUTE_KEYS
from engine.runtime import Runtime
from plugins.route.cli import analyst_routes, parse_to
from plugins.route.merge import collect_proposals, merge_proposals, normalize_proposal
from plugins.route.policy import decide
from tests.conftest import ROOT, run_ntd

EXAMPLE = ROOT / "examples" / "ntd-hotline-de"
DIRECTORY = load_directory()


# -- resolutions ---------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _routing_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Later stages (notify, recheck) would move routed cases on; these tests stop at routing."""
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "fetch,hashmatch,resolve,notify,recheck")

def contact(scope: str, address: str, channel: str = "email", confidence: float = 0.9,
            **extra: Any) -> dict[str, Any]:
    return {"scope": scope, "channel": channel, "address": address, "source": "test",
            "confidence": confidence, **extra}


HOSTING = contact("hosting", "abuse@hoster.example.test")
REGISTRAR = contact("registrar", "abuse@registrar.example.test", confidence=0.7)
CDN = contact("cdn", "https://cdn.example.test/abuse", channel="form", confidence=1.0)
PLATFORM = contact("platform", "https://blog.example.test/report", channel="form")


def resolution(country: Any = "NL", *contacts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"host": "www.site.example.test", "ips": ["192.0.2.10"], "asn": 64500,
            "network": "192.0.2.0/24", "org": "Lab hoster", "country": country,
            "registrar": None, "cdn": None, "platform": None,
            "contacts": list(contacts) if contacts else [HOSTING, REGISTRAR], **extra}


def summary(routes: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["action"], r["recipient_kind"], r["target"], r["channel"], r["country"],
             r["deadline_hours"], r["decided_by"]) for r in routes]


D = "route_inhope"
CONTACTS = {"police:NL": ("email", "tbkk@example.invalid"),
            "interpol": ("email", "desk@example.invalid"),
            "hotline:FR": ("api", "https://hotline-fr.example.test/api")}

# name, resolution, settings, state, routes, escalation (after_hours, kind, decided_by)
POLICY_TABLE: list[tuple[str, dict[str, Any], RoutingSettings, str, list[tuple[Any, ...]],
                         list[tuple[Any, ...]]]] = [
    ("home: hoster, registrar second, police", resolution("NL"),
     RoutingSettings(contacts=CONTACTS), "routed",
     [("notice", "hosting", "abuse@hoster.example.test", "email", "NL", 24, f"{D}:home-hosting"),
      ("notice", "registrar", "abuse@registrar.example.test", "email", "NL", 24,
       f"{D}:home-registrar"),
      ("report", "police", "tbkk@example.invalid", "email", "NL", None, f"{D}:home-police")],
     []),
    ("home: police contact unconfigured is symbolic", resolution("NL"), RoutingSettings(),
     "routed",
     [("notice", "hosting", "abuse@hoster.example.test", "email", "NL", 24, f"{D}:home-hosting"),
      ("notice", "registrar", "abuse@registrar.example.test", "email", "NL", 24,
       f"{D}:home-registrar"),
      ("report", "police", "police:NL", "email", "NL", None, f"{D}:home-police")], []),
    ("home: registrar_second off", resolution("NL"),
     RoutingSettings(registrar_second=False, contacts=CONTACTS), "routed",
     [("notice", "hosting", "abuse@hoster.example.test", "email", "NL", 24, f"{D}:home-hosting"),
      ("report", "police", "tbkk@example.invalid", "email", "NL", None, f"{D}:home-police")],
     []),
    ("home: no hoster contact → registrar", resolution("NL", REGISTRAR),
     RoutingSettings(registrar_second=False, contacts=CONTACTS), "routed",
     [("notice", "registrar", "abuse@registrar.example.test", "email", "NL", 24,
       f"{D}:home-registrar"),
      ("report", "police", "tbkk@example.invalid", "email", "NL", None, f"{D}:home-police")],
     []),
    ("home: no contact at all", resolution("NL", contact("upstream", "x@up.example.test")),
     RoutingSettings(), "awaiting_routing", [], []),
    ("INHOPE member: forward, hoster after grace", resolution("DE"), RoutingSettings(),
     "routed",
     [("forward", "hotline", "iccam:DE", "iccam", "DE", 72, f"{D}:hotline-forward")],
     [(72, "hosting", f"{D}:grace-notice-hosting")]),
    ("INHOPE member: configured API, grace 24, member deadline", resolution("FR"),
     RoutingSettings(contacts=CONTACTS, forward_grace_hours=24, deadlines={"FR": 12}),
     "routed",
     [("forward", "hotline", "https://hotline-fr.example.test/api", "api", "FR", 24,
       f"{D}:hotline-forward")],
     [(24, "hosting", f"{D}:grace-notice-hosting")]),
    ("INHOPE member, no hoster contact: registrar after grace", resolution("GB", REGISTRAR),
     RoutingSettings(), "routed",
     [("forward", "hotline", "iccam:GB", "iccam", "GB", 72, f"{D}:hotline-forward")],
     [(72, "registrar", f"{D}:grace-notice-registrar")]),
    ("no hotline: hoster directly + Interpol", resolution("SC"),
     RoutingSettings(contacts=CONTACTS), "routed",
     [("notice", "hosting", "abuse@hoster.example.test", "email", "SC", 72,
       f"{D}:direct-hosting"),
      ("report", "interpol", "desk@example.invalid", "email", "SC", None,
       f"{D}:interpol-report")], []),
    ("no hotline, deadline table and default 0 = none", resolution("PA"),
     RoutingSettings(default_deadline_hours=None), "routed",
     [("notice", "hosting", "abuse@hoster.example.test", "email", "PA", None,
       f"{D}:direct-hosting"),
      ("report", "interpol", "interpol", "email", "PA", None, f"{D}:interpol-report")], []),
    ("CDN: origin request", resolution("US", HOSTING, CDN, cdn="cloudflare"),
     RoutingSettings(), "routed",
     [("notice", "cdn", "https://cdn.example.test/abuse", "form", "US", 72,
       f"{D}:cdn-origin-request")], []),
    ("CDN without contact", resolution("US", HOSTING, cdn="cloudflare"), RoutingSettings(),
     "awaiting_routing", [], []),
    ("CDN, origin known in DE: re-routed", resolution(
        "US", CDN, REGISTRAR, cdn="cloudflare",
        origin={"country": "DE", "contacts": [contact("hosting", "abuse@origin.example.test")]}),
     RoutingSettings(), "routed",
     [("notice", "cdn", "https://cdn.example.test/abuse", "form", "US", 72,
       f"{D}:cdn-notice"),
      ("forward", "hotline", "iccam:DE", "iccam", "DE", 72, f"{D}:hotline-forward")],
     [(72, "hosting", f"{D}:grace-notice-hosting")]),
    ("platform: its abuse channel", resolution("US", HOSTING, PLATFORM,
                                               platform="blog.example.test"),
     RoutingSettings(), "routed",
     [("notice", "platform", "https://blog.example.test/report", "form", "US", 72,
       f"{D}:platform-abuse")], []),
    ("platform without channel", resolution("US", HOSTING, platform="blog.example.test"),
     RoutingSettings(), "awaiting_routing", [], []),
    ("unknown country", resolution(None), RoutingSettings(), "awaiting_routing", [], []),
    ("registry pseudo-country EU", resolution("EU"), RoutingSettings(), "awaiting_routing",
     [], []),
    ("garbage country", resolution("Netherlands"), RoutingSettings(), "awaiting_routing",
     [], []),
    ("conflicting countries", resolution("NL", countries=["NL", "DE"]), RoutingSettings(),
     "awaiting_routing", [], []),
    ("home switched to DE: DE is home, BKA", resolution("DE"),
     RoutingSettings(home_country="DE", contacts={"police:DE": ("email", "bka@example.invalid")}),
     "routed",
     [("notice", "hosting", "abuse@hoster.example.test", "email", "DE", 72,
       f"{D}:home-hosting"),
      ("notice", "registrar", "abuse@registrar.example.test", "email", "DE", 72,
       f"{D}:home-registrar"),
      ("report", "police", "bka@example.invalid", "email", "DE", None, f"{D}:home-police")],
     []),
    ("home switched to DE: NL is a member", resolution("NL"),
     RoutingSettings(home_country="DE"), "routed",
     [("forward", "hotline", "iccam:NL", "iccam", "NL", 72, f"{D}:hotline-forward")],
     [(72, "hosting", f"{D}:grace-notice-hosting")]),
]


@pytest.mark.parametrize(("name", "res", "settings", "state", "routes", "escalation"),
                         POLICY_TABLE, ids=[row[0] for row in POLICY_TABLE])
def test_default_policy_branch(name, res, settings, state, routes, escalation) -> None:
    result = decide(res, [], settings, DIRECTORY)
    assert result.state == state, result.detail
    assert summary(result.data["routes"]) == routes
    steps = [s for s in result.data.get("escalation", []) if "route" in s]
    assert [(s["after_hours"], s["route"]["recipient_kind"], s["route"]["decided_by"])
            for s in steps] == escalation
    for route in result.data["routes"] + [s["route"] for s in steps]:
        assert tuple(route) == ROUTE_KEYS  # exactly the contract keys, in order
    if state == "awaiting_routing":
        assert result.reason and result.detail["why"]


def test_unknown_location_reason_and_cdn_reroute_plan() -> None:
    result = decide(resolution(None), [], RoutingSettings(), DIRECTORY)
    assert result.reason == "unknown or conflicting location"
    assert "unknown" in result.detail["why"]
    conflict = decide(resolution("NL", countries=["DE"]), [], RoutingSettings(), DIRECTORY)
    assert "conflicting hosting countries: DE, NL" in conflict.detail["why"]
    cdn = decide(resolution("US", CDN, cdn="cloudflare"), [], RoutingSettings(), DIRECTORY)
    assert {"when": "origin_known", "then": "reroute"}.items() <= cdn.data["escalation"][0].items()


def test_unconfigured_contacts_are_reported() -> None:
    result = decide(resolution("NL"), [], RoutingSettings(), DIRECTORY)
    assert result.detail["unconfigured_contacts"] == ["police:NL"]
    assert "TBKK" in result.data["routes"][-1]["reason"]  # the directory names the unit
    assert "unconfigured_contacts" not in decide(
        resolution("NL"), [], RoutingSettings(contacts=CONTACTS), DIRECTORY).detail


# -- precedence and vetoes -----------------------------------------------------------------------
def prop(rule: str, kind: str = "hosting", action: str | None = "notice", **kw: Any
         ) -> dict[str, Any]:
    base = {"rule": rule, "recipient_kind": kind, "target": f"{rule}@example.test",
            "channel": "email", "country": "DE", "deadline_hours": 24}
    if action is None:
        base = {"rule": rule, "recipient_kind": kind}
    else:
        base["action"] = action
    return {**base, **kw}


# name, answers [(proposals, plugin)], hosting country, expected routes' decided_by
PRECEDENCE_TABLE: list[tuple[str, list[tuple[list[dict[str, Any]], str]], str, list[str]]] = [
    ("country rule beats generic priority",
     [([prop("generic", priority=100)], "a"), ([prop("de", applies_to="DE")], "b")], "DE",
     ["b:de"]),
    ("higher priority wins within a tier",
     [([prop("low", priority=1)], "a"), ([prop("high", priority=5)], "b")], "DE",
     ["b:high"]),
    ("ties keep call order", [([prop("first")], "a"), ([prop("second")], "b")], "DE",
     ["a:first"]),
    ("plugins beat the default policy", [([prop("mine")], "a")], "DE", ["a:mine"]),
    ("rule for another country does not apply",
     [([prop("fr-only", applies_to=["FR"])], "a")], "DE", ["default:hosting"]),
    ("different kinds all survive",
     [([prop("h"), prop("p", "police", "report", deadline_hours=None)], "a")], "DE",
     ["a:h", "a:p"]),
    ("pure veto removes everyone else's kind",
     [([prop("no-hoster", action=None, veto=True)], "a"), ([prop("mine")], "b")], "DE", []),
    ("veto keeps the vetoing plugin's own kind",
     [([prop("no-others", action=None, veto=True), prop("own")], "a"),
      ([prop("theirs", priority=9)], "b")], "DE", ["a:own"]),
    ("veto with an action becomes the route",
     [([prop("only-me", veto=True)], "a"), ([prop("theirs", priority=9)], "b")], "DE",
     ["a:only-me"]),
    ("competing vetoes: the country rule's veto wins",
     [([prop("generic-veto", veto=True, priority=50)], "a"),
      ([prop("de-veto", veto=True, applies_to="DE")], "b")], "DE", ["b:de-veto"]),
    ("veto of another country does not apply",
     [([prop("fr-veto", action=None, veto=True, applies_to="FR")], "a")], "DE",
     ["default:hosting"]),
]


def default_hosting() -> Any:
    return normalize_proposal(prop("hosting"), "default", builtin=True, order=1000)


@pytest.mark.parametrize(("name", "answers", "country", "expected"), PRECEDENCE_TABLE,
                         ids=[row[0] for row in PRECEDENCE_TABLE])
def test_merge_precedence_and_veto(name, answers, country, expected) -> None:
    merged = merge_proposals([*collect_proposals(answers), default_hosting()], country)
    assert [r["decided_by"] for r in merged.routes] == expected
    # Whatever was proposed and not chosen is explained in the trail.
    chosen = {r["decided_by"] for r in merged.routes}
    explained = {d["decided_by"] for d in merged.dropped}
    for proposals, plugin in answers:
        for p in proposals:
            if p.get("action") and f"{plugin}:{p['rule']}" not in chosen:
                assert f"{plugin}:{p['rule']}" in explained


def test_veto_removes_deferred_grace_notice_too() -> None:
    """A partner's hoster veto also cancels the default's notice after the grace period."""
    answers = [([prop("no-hoster", action=None, veto=True, applies_to="DE")], "partner")]
    result = decide(resolution("DE"), answers, RoutingSettings(), DIRECTORY)
    assert summary(result.data["routes"]) == [
        ("forward", "hotline", "iccam:DE", "iccam", "DE", 72, f"{D}:hotline-forward")]
    assert result.data["escalation"] == []
    assert {d["decided_by"]: d["why"] for d in result.detail["dropped"]} == {
        f"{D}:grace-notice-hosting": "vetoed by partner:no-hoster"}


def test_everything_vetoed_awaits_an_analyst() -> None:
    answers = [([prop("a", "hosting", None, veto=True), prop("b", "registrar", None, veto=True),
                 prop("c", "police", None, veto=True)], "strict")]
    result = decide(resolution("NL"), answers, RoutingSettings(), DIRECTORY)
    assert result.state == "awaiting_routing"
    assert "vetoed" in result.reason


def test_plugins_cannot_route_an_unknown_location() -> None:
    result = decide(resolution(None), [([prop("x")], "eager")], RoutingSettings(), DIRECTORY)
    assert result.state == "awaiting_routing"
    assert result.detail["proposals"][0]["decided_by"] == "eager:x"


@pytest.mark.parametrize(("raw", "message"), [
    ("not a dict", "must be a dict"),
    ({"recipient_kind": "hosting"}, "needs a 'rule'"),
    (prop("r", "janitor"), "recipient_kind 'janitor'"),
    (prop("r", action="shout"), "action 'shout'"),
    (prop("r", channel="fax"), "channel 'fax'"),
    (prop("r", country="Germany"), "country 'Germany'"),
    (prop("r", deadline_hours=-1), "deadline_hours"),
    (prop("r", deadline_hours="24"), "deadline_hours"),
    (prop("r", priority="high"), "priority"),
    (prop("r", applies_to=["Deutschland"]), "applies_to"),
    (prop("r", veto="yes"), "veto"),
    ({**prop("r"), "target": ""}, "missing 'target'"),
])
def test_malformed_proposal_is_an_error_naming_the_plugin(raw, message) -> None:
    with pytest.raises(RoutingError, match=message) as info:
        collect_proposals([([raw], "partner")])
    assert "partner" in str(info.value)


def test_hook_must_return_a_list() -> None:
    with pytest.raises(RoutingError, match="must return a list"):
        collect_proposals([("hosting", "partner")])


# -- configuration and directory -----------------------------------------------------------------
def test_shipped_directory_has_members_and_no_contacts() -> None:
    raw = json.loads(DIRECTORY_FILE.read_text())
    assert {"NL", "DE", "BE", "GB", "US", "FR"} <= set(DIRECTORY.hotlines)
    assert DIRECTORY.hotline("NL").name.startswith("Offlimits")
    assert DIRECTORY.hotline("RU") is None
    assert "TBKK" in DIRECTORY.police["NL"].name
    entries = [e for v in raw["hotlines"].values() for e in v] + list(raw["police"].values())
    assert all(e["contact"] == "" for e in [*entries, raw["interpol"]])


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not JSON"),
    ('{"format": 2}', "not an ntd hotline directory"),
    ('{"format": 1, "hotlines": {"Germany": []}}', "not an ISO 3166"),
    ('{"format": 1, "hotlines": {"DE": [{"name": "x", "channel": "fax"}]}}', "channel 'fax'"),
    ('{"format": 1, "police": {"DE": {"nom": "x"}}}', "expected an object with a 'name'"),
])
def test_bad_directory_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dir.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_directory(path)


def test_config_keys(tmp_path: Path, db_path: Path) -> None:
    directory = tmp_path / "dir.json"
    directory.write_text(json.dumps({"format": 1, "hotlines": {"FR": [{"name": "Lab FR"}]}}))
    rt = Runtime.open(db=str(db_path), extra_plugins=[("route_inhope", plugins.route)],
                      overrides={
                          "routing": {"home_country": "DE", "forward_grace_hours": 12,
                                      "default_deadline_hours": 0,
                                      "directory_file": str(directory)},
                          "routing.deadlines": {"FR": 6},
                          "routing.contacts": {"police:DE": "form:https://bka.example.test",
                                               "interpol": "desk@example.invalid"}})
    s = settings_from_config(rt.config)
    assert (s.home_country, s.forward_grace_hours, s.deadline("FR"), s.deadline("NL"),
            s.deadline("SC")) == ("DE", 12, 6, 24, None)
    assert s.contacts == {"police:DE": ("form", "https://bka.example.test"),
                          "interpol": (None, "desk@example.invalid")}
    rt.close()
    for overrides, message in [({"routing": {"home_country": "nl"}}, "ISO 3166"),
                               ({"routing": {"forward_grace_hours": 0}}, "greater than 0"),
                               ({"routing": {"colour": "red"}}, "unknown key")]:
        with pytest.raises(ConfigError, match=message):
            Runtime.open(db=str(db_path), extra_plugins=[("route_inhope", plugins.route)],
                         overrides=overrides)


@pytest.mark.parametrize("key", ["police", "police:Netherlands", "hoster:NL", "hotline:"])
def test_bad_contact_keys(key: str) -> None:
    with pytest.raises(ConfigError, match=r"\[routing.contacts\]"):
        parse_contact(key, "x@example.invalid")


# -- the stage end to end ------------------------------------------------------------------------
MARKER = "reporter-marker-7f3a"
CHAT_REPORT = {"url": "", "app": "signal", "username": f"user-{MARKER}",
               "first_name": "Alex", "last_name": f"Doe{MARKER}", "phone": "+31600000000",
               "contact_police": True, "note": f"note-{MARKER}"}


def make_resolved(rt: Runtime, tmp_path: Path, resolutions: dict[str, dict[str, Any]],
                  channel: str = "chat") -> dict[str, str]:
    """Submit one chat report per host and move each case to ``resolved``."""
    records = [{**CHAT_REPORT, "url": f"http://{host}/img/1.jpg"} for host in resolutions]
    src = tmp_path / f"reports-{len(list(tmp_path.iterdir()))}.ndjson"
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    ids = submit_files(rt.store, [str(src)], channel=channel, keep_case_ids=True).case_ids
    out = {}
    for host, case_id in zip(resolutions, ids, strict=True):
        rt.store.transition(case_id, state="resolved", stage="resolve", actor="test",
                            action="resolved", now=rt.clock.now_text(),
                            data={"resolution": resolutions[host]})
        out[host] = case_id
    return out


def open_runtime(db: Path, *extra: tuple[str, object], **routing: Any) -> Runtime:
    return Runtime.open(db=str(db), extra_plugins=[("route_inhope", plugins.route), *extra],
                        overrides={"pipeline": {"poll_seconds": 0.05},
                                   "routing": routing})


class Partner:
    """A partner plugin for NL: police only, never the registrar."""

    @hookimpl
    def ntd_jurisdiction_actions(self, case, resolution, ctx):
        assert "reports" not in case.data and not set(case.data) & REPORTER_FIELDS
        resolution["country"] = "XX"  # a misbehaving plugin cannot change what others see
        if case.host.startswith("boom"):
            raise ValueError("partner bug")
        return [{"rule": "nl-no-registrar", "recipient_kind": "registrar", "veto": True,
                 "applies_to": "NL", "reason": "police only", "username": "smuggled"}]


async def test_stage_routes_records_trail_and_leaks_no_reporter_data(db_path, tmp_path) -> None:
    rt = open_runtime(db_path, ("partner", Partner()))
    polluted = resolution("NL", {**HOSTING, "reporter": f"r-{MARKER}"}, REGISTRAR,
                          reporter={"username": f"user-{MARKER}"})
    ids = make_resolved(rt, tmp_path, {"nl.example.test": polluted,
                                       "de.example.test": resolution("DE"),
                                       "nowhere.example.test": resolution(None),
                                       "boom.example.test": resolution("NL")})
    summary_ = await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert summary_.errors["route"] == 1
    nl = rt.store.get_case(ids["nl.example.test"])
    assert nl["state"] == "routed"
    assert [r["decided_by"] for r in nl["routes"]] == [f"{D}:home-hosting", f"{D}:home-police"]
    event = [e for e in nl["events"] if e["stage"] == "route"][-1]
    assert (event["stage"], event["actor"], event["action"]) == ("route", D, "routed")
    assert event["detail"]["policy"] == "home"
    assert event["detail"]["dropped"][0]["why"] == "vetoed by partner:nl-no-registrar"
    assert rt.store.get_case(ids["de.example.test"])["escalation"][0]["after_hours"] == 72
    nowhere = rt.store.get_case(ids["nowhere.example.test"])
    assert (nowhere["state"], nowhere["state_reason"], nowhere["routes"]) == (
        "awaiting_routing", "unknown or conflicting location", [])
    boom = rt.store.get_case(ids["boom.example.test"])
    error = [e for e in boom["events"] if e["stage"] == "route"][-1]
    assert boom["state"] == "resolved" and error["action"] == "error"
    assert "plugin 'partner'" in error["detail"]["reason"]
    # The reporter's data stays with the report: nothing of it in routes, plan or trail.
    assert nl["reports"][0]["metadata"].get("note") == f"note-{MARKER}"
    for case_id in ids.values():
        case = rt.store.get_case(case_id)
        routed_text = json.dumps([case.get("routes"), case.get("escalation"),
                                  [e["detail"] for e in case["events"]
                                   if e["stage"] == "route"]])
        for value in (MARKER, "Alex", "+31600000000", "signal", "smuggled"):
            assert value not in routed_text
        for route in case.get("routes") or []:
            assert set(route) == set(ROUTE_KEYS)  # the store keeps keys sorted
    rt.close()


# -- the example plugin, installed through its entry point ---------------------------------------
def install_dist_info(where: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """Write ``<name>-<version>.dist-info`` the way pip would (metadata + entry points)."""
    info = where / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                         f"Version: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    info.joinpath("entry_points.txt").write_text(f"[ntd.plugins]\n{lines}")


@pytest.fixture
def example_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The example package on sys.path with its entry point; returns the path entries."""
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    site = tmp_path / "site"
    install_dist_info(site, meta["project"]["name"], meta["project"]["version"],
                      meta["project"]["entry-points"]["ntd.plugins"])
    paths = [str(site), str(EXAMPLE / "src")]
    for path in paths:
        monkeypatch.syspath_prepend(path)
    return paths


async def test_installed_example_changes_routes_for_its_country(db_path, tmp_path,
                                                                example_installed) -> None:
    rt = Runtime.open(db=str(db_path), extra_plugins=[("route_inhope", plugins.route)],
                      overrides={"pipeline": {"poll_seconds": 0.05},
                                 "hotline_de": {"bka_target": "email:bka@example.invalid"}})
    assert "hotline_de" in dict(rt.pm.list_name_plugin())
    ids = make_resolved(rt, tmp_path, {"de.example.test": resolution("DE"),
                                       "fr.example.test": resolution("FR")})
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    de = rt.store.get_case(ids["de.example.test"])
    assert summary(de["routes"]) == [
        ("report", "police", "bka@example.invalid", "email", "DE", None,
         "hotline_de:de-report-bka"),
        ("forward", "hotline", "iccam:DE", "iccam", "DE", 48, "hotline_de:de-forward")]
    assert de["escalation"] == []  # German hosters are not contacted directly, not even later
    fr = rt.store.get_case(ids["fr.example.test"])
    assert [r["decided_by"] for r in fr["routes"]] == [f"{D}:hotline-forward"]
    assert fr["escalation"][0]["route"]["decided_by"] == f"{D}:grace-notice-hosting"
    rt.close()


async def test_example_steps_aside_when_home_is_de(db_path, tmp_path, example_installed) -> None:
    rt = open_runtime(db_path, home_country="DE")
    ids = make_resolved(rt, tmp_path, {"de.example.test": resolution("DE")})
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    case = rt.store.get_case(ids["de.example.test"])
    assert [r["decided_by"] for r in case["routes"]] == [
        f"{D}:home-hosting", f"{D}:home-registrar", f"{D}:home-police"]
    assert "Bundeskriminalamt" in case["routes"][-1]["reason"]
    rt.close()


# -- commands ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "expected"), [
    ("police:unit@example.invalid", ("police", "unit@example.invalid", "email")),
    ("hotline:DE", ("hotline", "DE", "iccam")),
    ("hotline:https://h.example.test/api:api", ("hotline", "https://h.example.test/api", "api")),
    ("hosting:https://hoster.example.test/abuse:form",
     ("hosting", "https://hoster.example.test/abuse", "form")),
    ("interpol:desk@example.invalid:email", ("interpol", "desk@example.invalid", "email")),
])
def test_parse_to(spec: str, expected: tuple[str, str, str]) -> None:
    assert parse_to(spec) == expected


@pytest.mark.parametrize("spec", ["janitor:x@example.test", "police", "police:",
                                  "hosting:HOSTER-NAME"])
def test_parse_to_rejects(spec: str) -> None:
    with pytest.raises(InputError):
        parse_to(spec)


def test_analyst_routes_shape() -> None:
    [r] = analyst_routes(("police:unit@example.invalid",), country="NL", deadline=24,
                         actor="analyst:ana", reason="why")
    assert tuple(r) == ROUTE_KEYS
    assert (r["action"], r["deadline_hours"], r["decided_by"]) == ("report", None,
                                                                   "analyst:ana")


def cli_env(tmp_path: Path, *extra: str) -> dict[str, str]:
    """PYTHONPATH for a child ``ntd`` with the route plugin registered by entry point."""
    site = tmp_path / "site-route"
    if not site.exists():
        install_dist_info(site, "ntd-route-under-test", "0", {"route_inhope":
                                                               "plugins.route"})
    return {"PYTHONPATH": os.pathsep.join([str(site), *extra, str(ROOT)])}


def test_cli_route_override_and_show(db_path: Path, tmp_path: Path) -> None:
    rt = open_runtime(db_path)
    ids = make_resolved(rt, tmp_path, {"nowhere.example.test": resolution(None),
                                       "nl.example.test": resolution("NL")})
    rt.run_pipeline_sync(until_idle=True, install_signal_handlers=False)
    rt.close()
    env = cli_env(tmp_path)
    waiting, routed = ids["nowhere.example.test"], ids["nl.example.test"]
    proc = run_ntd("route", routed, "--json", db=db_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert [r["decided_by"] for r in json.loads(proc.stdout)][0] == f"{D}:home-hosting"
    proc = run_ntd("route", routed, "--to", "police:unit@example.invalid", db=db_path, env=env)
    assert proc.returncode == 2 and "awaiting_routing" in proc.stderr
    proc = run_ntd("route", waiting, "--to", "hosting:abuse@hoster.example.test",
                   "--to", "police:unit@example.invalid", "--country", "NL",
                   "--analyst", "ana", "--json", db=db_path, env=env)
    assert proc.returncode == 0, proc.stderr
    routes = json.loads(proc.stdout)
    assert summary(routes) == [
        ("notice", "hosting", "abuse@hoster.example.test", "email", "NL", 24, "analyst:ana"),
        ("report", "police", "unit@example.invalid", "email", "NL", None, "analyst:ana")]
    proc = run_ntd("case", waiting, "--json", db=db_path, env=env)
    case = json.loads(proc.stdout)
    assert case["state"] == "routed"
    assert [e for e in case["events"] if e["stage"] == "route"][-1]["actor"] == "analyst:ana"
    proc = run_ntd("route", waiting, db=db_path, env=env)
    assert "by analyst:ana" in proc.stdout
    proc = run_ntd("route", waiting, "--to", "janitor:x", db=db_path, env=env)
    assert proc.returncode == 2 and "KIND:TARGET" in proc.stderr


def test_cli_hotlines_and_bench(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    proc = run_ntd("hotlines", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert {"country": "NL", "name": "Offlimits (formerly EOKM)",
            "website": "https://www.offlimits.nl", "channel": "iccam"} in listing["hotlines"]
    proc = run_ntd("bench", "route", "--cases", "2000", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["cases"] == 2000 and result["routed"] + result["awaiting_routing"] == 2000
    assert result["decision_cases_per_s"] > 0 and result["stage_cases_per_s"] > 0


def test_cli_plugins_lists_the_example(tmp_path: Path, example_installed: list[str]) -> None:
    proc = run_ntd("plugins", "--json", env=cli_env(tmp_path, *example_installed))
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["hotline_de"]["distribution"] == "ntd-hotline-de"
    assert "ntd_jurisdiction_actions" in rows["hotline_de"]["hooks"]
    assert "ntd_route" in rows["route_inhope"]["hooks"]


def test_cli_origin_behind_a_cdn_routes_the_case_again(db_path: Path, tmp_path: Path) -> None:
    rt = open_runtime(db_path)
    ids = make_resolved(rt, tmp_path, {"cdn.example.test": resolution("US", CDN, REGISTRAR,
                                                                      cdn="cloudflare"),
                                       "nl.example.test": resolution("NL")})
    rt.run_pipeline_sync(until_idle=True, install_signal_handlers=False)
    behind, plain = ids["cdn.example.test"], ids["nl.example.test"]
    first = rt.store.get_case(behind, events=False)
    assert [r["decided_by"] for r in first["routes"]] == [f"{D}:cdn-origin-request"]
    rt.close()
    env = cli_env(tmp_path)
    proc = run_ntd("origin", plain, "--country", "DE", db=db_path, env=env)
    assert proc.returncode == 2 and "not behind a CDN" in proc.stderr
    proc = run_ntd("origin", behind, "--country", "XX1", db=db_path, env=env)
    assert proc.returncode == 2 and "--country" in proc.stderr
    proc = run_ntd("origin", behind, "--country", "FR", "--ip", "not-an-ip", db=db_path, env=env)
    assert proc.returncode == 2 and "--ip" in proc.stderr
    proc = run_ntd("origin", behind, "--country", "fr", "--contact", "abuse@origin.example.test",
                   "--ip", "192.0.2.80", "--note", "the CDN's reply", "--analyst", "ana",
                   "--json", db=db_path, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["state"] == "resolved" and out["origin"]["country"] == "FR"
    assert out["origin"]["contacts"][0]["address"] == "abuse@origin.example.test"
    rt = open_runtime(db_path)
    rt.run_pipeline_sync(until_idle=True, install_signal_handlers=False)
    case = rt.store.get_case(behind)
    loaded = rt.store.load_case(behind)
    rt.close()
    # The CDN is told to stop serving; the origin, in another INHOPE country (FR), goes to
    # that country's hotline; the registrar contact of the domain is kept.
    assert set(case["resolution"]["origin"]) == {"country", "countries", "contacts", "ips", "at"}
    # Notices about the origin describe the origin, not the CDN in front of it.
    from engine.notice_content import build_action

    hotline = next(r for r in case["routes"] if r["recipient_kind"] == "hotline")
    cdn = next(r for r in case["routes"] if r["recipient_kind"] == "cdn")
    about_origin = build_action(loaded, hotline, reference_prefix="T")
    about_cdn = build_action(loaded, cdn, reference_prefix="T")
    assert about_origin["hosting_country"] == "FR" and about_cdn["hosting_country"] == "US"
    assert about_origin["entries"][0]["ip"] == "192.0.2.80"
    decided = [r["decided_by"] for r in case["routes"]]
    assert decided[0] == f"{D}:cdn-notice" and f"{D}:hotline-forward" in decided
    assert {r["country"] for r in case["routes"] if r["recipient_kind"] == "hotline"} == {"FR"}
    trail = [(e["stage"], e["action"], e["actor"]) for e in case["events"]]
    assert ("route", "origin_known", "analyst:ana") in trail
    [event] = [e for e in case["events"] if e["action"] == "origin_known"]
    assert event["detail"]["note"] == "the CDN's reply"


@pytest.mark.parametrize(("spec", "channel", "address"), [
    ("abuse@o.test", "email", "abuse@o.test"),
    ("https://o.test/abuse", "form", "https://o.test/abuse"),
    ("https://api.o.test/v1:api", "api", "https://api.o.test/v1"),
])
def test_parse_contact(spec: str, channel: str, address: str) -> None:
    from plugins.route.cli import parse_contact

    got = parse_contact(spec)
    assert (got["scope"], got["channel"], got["address"]) == ("hosting", channel, address)


def test_parse_contact_rejects_a_bare_name() -> None:
    from plugins.route.cli import parse_contact

    with pytest.raises(InputError):
        parse_contact("origin-hoster")


def test_directory_entries_carry_checked_date_and_source() -> None:
    directory = load_directory()
    entries = [*[e for es in directory.hotlines.values() for e in es],
               *directory.police.values(), directory.interpol]
    for entry in entries:
        assert entry is not None
        assert entry.checked and entry.source, entry.name
    today = date(2026, 12, 4)
    assert directory.police["NL"].checked_days_ago(today) == (today - date.fromisoformat(
        directory.police["NL"].checked)).days
    routes = [{"recipient_kind": "police", "country": "NL"},
              {"recipient_kind": "hosting", "country": "NL"},
              {"recipient_kind": "hotline", "country": "DE"}]
    stale = directory.stale_entries(routes, date.fromisoformat(
        directory.police["NL"].checked) + timedelta(days=366))
    assert [(r["recipient_kind"], r["country"]) for r, _e, _age in stale] == [
        ("police", "NL"), ("hotline", "DE")]
    assert directory.stale_entries(routes, date.fromisoformat(
        directory.police["NL"].checked) + timedelta(days=365)) == []


def test_cli_route_warns_about_an_old_directory_entry(db_path: Path, tmp_path: Path) -> None:
    rt = open_runtime(db_path)
    ids = make_resolved(rt, tmp_path, {"nl.example.test": resolution("NL")})
    rt.run_pipeline_sync(until_idle=True, install_signal_handlers=False)
    rt.close()
    env = cli_env(tmp_path)
    routed = ids["nl.example.test"]
    shipped = json.loads(DIRECTORY_FILE.read_text(encoding="utf-8"))
    path = tmp_path / "directory.json"
    cfg = tmp_path / "ntd.toml"
    cfg.write_text(f'[routing]\ndirectory_file = "{path}"\n')
    for checked, warned in (("2020-01-01", True), (date.today().isoformat(), False)):
        directory = copy.deepcopy(shipped)
        directory["police"]["NL"]["checked"] = checked
        path.write_text(json.dumps(directory), encoding="utf-8")
        proc = run_ntd("--config", str(cfg), "route", routed, "--json", db=db_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)  # the routes, unchanged by the warning (on stderr)
        assert ("warning: police NL is routed by the directory entry" in proc.stderr) == warned
        if warned:
            assert "last checked 2020-01-01" in proc.stderr and "www.politie.nl" in proc.stderr
