"""``engine.testing``, the helpers partner hotlines test their plugins with: contexts validated
like ``ntd.toml``, contract-shaped records, ntd's own routing on a partner's proposals, and the
fake clock. Routing through the helper must equal what the built-in route stage decides."""

from __future__ import annotations

import gc
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import hookimpl
from engine.api import (
    Case,
    ConfigError,
    Option,
    PluginError,
    Resolution,
    RoutingError,
    StageContext,
    positive,
)
from engine.clock import fmt
from engine.testing import (
    DEFAULT_NOW,
    FakeClock,
    aroute_with_defaults,
    builtin_plugins,
    contact,
    make_case,
    make_context,
    make_plugin_manager,
    plugin_name,
    resolution,
    route_with_defaults,
)

HOSTING = contact("hosting", "abuse@hoster.example.test", source="rdap")
REGISTRAR = contact("registrar", "abuse@registrar.example.test", source="rdap",
                    confidence=0.75)


def partner(**answers: object) -> object:
    """A partner plugin object with a ``[partner_xx]`` section and fixed proposals."""

    class Plugin:
        @hookimpl
        def ntd_config_schema(self) -> dict[str, dict[str, Option]]:
            return {"partner_xx": {"deadline": Option(type=int, default=48, check=positive)}}

        @hookimpl
        def ntd_jurisdiction_actions(self, case: Case, resolution: Resolution,
                                     ctx: StageContext) -> object:
            if resolution.get("country") != "FR":
                return None
            deadline = ctx.config.get("partner_xx", "deadline")
            return [{"rule": "fr-forward", "action": "forward", "recipient_kind": "hotline",
                     "target": "iccam:FR", "channel": "iccam", "country": "FR",
                     "deadline_hours": deadline, "applies_to": "FR", **answers}]

    return Plugin()


# -- FakeClock -------------------------------------------------------------------------------


def test_fake_clock_stands_still_until_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_FAKE_NOW", "2030-01-01T00:00:00Z")  # ignored: the test decides
    clock = FakeClock()
    assert clock.now_text() == DEFAULT_NOW == clock.now_text()
    clock.advance(hours=24, minutes=30, seconds=1)
    assert clock.now_text() == "2026-01-06T09:30:01.000000Z"
    clock.advance(days=1)
    assert clock.now().day == 7
    clock.set("2026-02-01T00:00:00Z")
    assert clock.now() == datetime(2026, 2, 1, tzinfo=UTC)
    assert FakeClock(datetime(2027, 1, 1, tzinfo=UTC)).now_text() == fmt(
        datetime(2027, 1, 1, tzinfo=UTC))


# -- contexts --------------------------------------------------------------------------------


def test_make_context_validates_the_plugins_schema_and_the_engines() -> None:
    ctx = make_context(("partner_xx", partner()), config={"partner_xx": {"deadline": 12}})
    assert isinstance(ctx, StageContext)
    assert ctx.config.section("partner_xx") == {"deadline": 12}
    assert ctx.config.get("pipeline", "queue_size") == 256  # engine defaults filled in
    assert ctx.config.get("routing", "home_country") is None  # not loaded: not declared
    assert isinstance(ctx.clock, FakeClock)
    assert "partner_xx" in dict(ctx.pm.list_name_plugin())
    with pytest.raises(ConfigError, match=r"\[partner_xx\] deadline: must be greater than 0"):
        make_context(("partner_xx", partner()), config={"partner_xx": {"deadline": 0}})
    with pytest.raises(ConfigError, match="unknown section"):
        make_context(("partner_xx", partner()), config={"partner_yy": {}})
    with pytest.raises(ConfigError, match="unknown key"):
        make_context(config={"pipeline": {"queue_sise": 3}})


def test_make_context_with_builtins_adds_their_sections() -> None:
    ctx = make_context(builtins=["route_inhope"], config={"routing": {"home_country": "DE"},
                                                         "routing.deadlines": {"DE": 12}})
    assert ctx.config.get("routing", "home_country") == "DE"
    assert ctx.config.section("routing.deadlines") == {"DE": 12}
    assert set(dict(ctx.pm.list_name_plugin())) == {"route_inhope"}
    with pytest.raises(ConfigError, match="home_country"):
        make_context(builtins=["route_inhope"], config={"routing": {"home_country": "nl"}})


async def test_make_context_has_a_real_store_that_goes_away() -> None:
    ctx = make_context()
    assert await ctx.store.count_by_state() == {}
    folder = Path(ctx.store.sync.path).parent  # type: ignore[attr-defined]
    assert folder.exists()
    await ctx.aclose()
    del ctx
    gc.collect()
    assert not folder.exists()


def test_make_plugin_manager_loads_only_what_it_is_given() -> None:
    pm = make_plugin_manager(("partner_xx", partner()), builtins=["route_inhope"])
    assert sorted(dict(pm.list_name_plugin())) == ["partner_xx", "route_inhope"]
    with pytest.raises(PluginError, match="no built-in ntd plugin named 'route_nl'"):
        builtin_plugins("route_nl")


def test_plugin_name_is_the_entry_point_name_when_installed() -> None:
    [(_, route)] = builtin_plugins("route_inhope")
    assert plugin_name(route) == "route_inhope"
    assert plugin_name(types.ModuleType("my_hotline.rules")) == "my_hotline"


# -- records ---------------------------------------------------------------------------------


def test_resolution_builder_defaults_and_overrides() -> None:
    res = resolution()
    assert (res["host"], res["country"], res["domain"], res["cdn"], res["platform"]) == (
        "www.site.example.test", "NL", "example.test", None, None)
    assert res["contacts"] == [HOSTING]
    assert "origin" not in res and "countries" not in res
    other = resolution(host="x.blog.example.test", country="DE", contacts=[HOSTING, REGISTRAR],
                       platform="Blog", countries=["DE"],
                       origin={"country": "FR", "contacts": [HOSTING]}, asn=None)
    assert other["domain"] == "example.test" and other["countries"] == ["DE"]
    assert other["origin"]["country"] == "FR" and other["asn"] is None
    assert resolution(org="Other")["org"] == "Other"
    assert resolution(dns_outcome="static_only")["dns_outcome"] == "static_only"  # extra


def test_make_case_carries_the_resolution() -> None:
    res = resolution(host="www.shop.example.test")
    case = make_case(resolution=res)
    assert (case.state, case.host, case.domain) == ("resolved", "www.shop.example.test",
                                                    "example.test")
    assert case.url == "https://www.shop.example.test/page.html"
    assert case.data["resolution"] == res and case.data["resolution"] is not res
    assert make_case("https://Other.Example.test/a", state="routed").host == "other.example.test"


# -- routing ---------------------------------------------------------------------------------


def test_default_policy_alone() -> None:
    home = route_with_defaults(resolution=resolution(country="NL",
                                                     contacts=[HOSTING, REGISTRAR]))
    assert home.state == "routed" and home.answered_by == "route_inhope"
    assert home.decided_by == ["route_inhope:home-hosting", "route_inhope:home-registrar",
                               "route_inhope:home-police"]
    assert home.routes[0]["deadline_hours"] == 24  # NL code of conduct
    member = route_with_defaults(resolution=resolution(country="FR"))
    assert member.decided_by == ["route_inhope:hotline-forward"]
    assert [s["route"]["decided_by"] for s in member.escalation] == [
        "route_inhope:grace-notice-hosting"]
    unknown = route_with_defaults(resolution=resolution(country=None))
    assert (unknown.state, unknown.routes) == ("awaiting_routing", [])
    assert unknown.reason == "unknown or conflicting location"


def test_a_partner_plugin_in_the_merge_with_its_config() -> None:
    outcome = route_with_defaults(("partner_xx", partner()), resolution=resolution(country="FR"),
                                  config={"partner_xx": {"deadline": 12}})
    assert outcome.decided_by == ["partner_xx:fr-forward"]
    assert outcome.routes[0]["deadline_hours"] == 12
    assert {d["decided_by"]: d["why"] for d in outcome.dropped} == {
        "route_inhope:hotline-forward": "overridden by partner_xx:fr-forward"}
    assert outcome.escalation[0]["route"]["decided_by"] == "route_inhope:grace-notice-hosting"


def test_proposals_as_a_list_and_vetoes() -> None:
    veto = {"rule": "no-hoster", "recipient_kind": "hosting", "veto": True, "applies_to": "FR"}
    outcome = route_with_defaults([veto], resolution=resolution(country="FR"), name="fr")
    assert outcome.escalation == []
    assert "vetoed by fr:no-hoster" in {d["why"] for d in outcome.dropped}
    plain = route_with_defaults([veto], resolution=resolution(country="FR"))
    assert "vetoed by partner:no-hoster" in {d["why"] for d in plain.dropped}


def test_home_country_from_config() -> None:
    outcome = route_with_defaults(resolution=resolution(country="FR"),
                                  config={"routing": {"home_country": "FR"}})
    assert outcome.detail["policy"] == "home"
    assert outcome.decided_by[0] == "route_inhope:home-hosting"


def test_a_malformed_proposal_fails_as_in_a_run() -> None:
    with pytest.raises(RoutingError, match="action 'takedown' is not one of"):
        route_with_defaults([{"rule": "bad", "action": "takedown", "recipient_kind": "hosting",
                              "target": "a@b.example.test", "channel": "email",
                              "country": "FR"}], resolution=resolution(country="FR"))
    with pytest.raises(ConfigError):
        route_with_defaults(config={"routing": {"home_contry": "NL"}})


@pytest.mark.parametrize("res", [
    resolution(country="NL", contacts=[HOSTING, REGISTRAR]),
    resolution(country="FR"),
    resolution(country="BR", contacts=[REGISTRAR]),
    resolution(country="US", cdn="Cloudflare",
               contacts=[contact("cdn", "abuse@cdn.example.test", source="rules")]),
    resolution(country="NL", countries=["NL", "DE"]),
], ids=["home", "member", "non-member", "cdn", "conflict"])
def test_route_with_defaults_is_what_the_route_stage_decides(res: Resolution) -> None:
    """The helper drives the public hook; the result equals ntd's own decision function."""
    from engine.directory import load_directory
    from plugins.route.policy import RoutingSettings, decide

    proposals = [{"rule": "x", "action": "report", "recipient_kind": "police",
                  "target": "desk@police.example.test", "channel": "email", "country": "BR",
                  "applies_to": ["BR"]}]
    expected = decide(res, [(proposals, "partner")], RoutingSettings(), load_directory())
    got = route_with_defaults(proposals, resolution=res)
    assert (got.state, got.reason, got.routes, got.escalation, got.detail) == (
        expected.state, expected.reason, expected.data["routes"],
        expected.data.get("escalation", []), expected.detail)


async def test_aroute_with_defaults_in_async_tests() -> None:
    outcome = await aroute_with_defaults(resolution=resolution(country="FR"))
    assert outcome.decided_by == ["route_inhope:hotline-forward"]
    with pytest.raises(RuntimeError, match="aroute_with_defaults"):
        route_with_defaults(resolution=resolution())


def test_route_with_a_whole_case() -> None:
    case = make_case("https://www.site.example.test/x", resolution=resolution(country="FR"))
    assert route_with_defaults(case=case).decided_by == ["route_inhope:hotline-forward"]
    # resolution= replaces the case's resolution
    moved = route_with_defaults(case=case, resolution=resolution(country="NL"))
    assert moved.decided_by[0] == "route_inhope:home-hosting"
