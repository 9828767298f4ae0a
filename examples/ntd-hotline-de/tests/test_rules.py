"""Tests of the example German rule set: its proposals, and what ntd's merge makes of them.

Run from this directory with ``python -m pytest -q`` in an environment where ntd is installed.
They use ntd's public test helpers (``engine.testing``) only: a real run context validated
against this plugin's configuration schema, contract-shaped resolutions, and ntd's own route
stage with its default policy.
"""

from __future__ import annotations

import pytest
from ntd_hotline_de import rules

from engine.api import ConfigError, StageContext
from engine.testing import contact, make_case, make_context, resolution, route_with_defaults

PLUGIN = ("hotline_de", rules)  # the entry-point name ntd records in decided_by
DE_HOSTED = resolution(host="www.site.example.test", country="DE",
                       contacts=[contact("hosting", "abuse@hoster.example.test",
                                         source="rdap", confidence=0.9)])


def ctx_with(**hotline_de: object) -> StageContext:
    """A run context whose ``[hotline_de]`` section is validated by this plugin's schema."""
    return make_context(PLUGIN, config={"hotline_de": hotline_de})


@pytest.mark.parametrize(("where", "home", "expected"), [
    ({}, "NL", ["de-forward", "de-no-direct-hoster"]),
    ({"country": "FR"}, "NL", None),  # not German: no opinion
    ({}, "DE", None),  # a German hotline uses ntd's home-country policy
    ({"cdn": "cloudflare"}, "NL", None),
    ({"platform": "blog.example.test"}, "NL", None),
])
def test_rules_for_country_and_home(where, home, expected) -> None:
    got = rules.rules_for({**DE_HOSTED, **where}, home=home)
    assert (None if got is None else [p["rule"] for p in got]) == expected


def test_home_country_comes_from_ntds_routing_section() -> None:
    """Through the hook: a German hotline (``[routing] home_country = "DE"``) gets no rules."""
    ctx = make_context(PLUGIN, builtins=["route_inhope"],
                       config={"routing": {"home_country": "DE"}})
    assert rules.ntd_jurisdiction_actions(make_case(resolution=DE_HOSTED), DE_HOSTED,
                                          ctx) is None
    abroad = make_context(PLUGIN, builtins=["route_inhope"])  # the default home, NL
    assert rules.ntd_jurisdiction_actions(make_case(resolution=DE_HOSTED), DE_HOSTED, abroad)


def test_bka_report_only_when_configured() -> None:
    case = make_case(resolution=DE_HOSTED)
    answer = rules.ntd_jurisdiction_actions(case, DE_HOSTED,
                                            ctx_with(bka_target="email:desk@example.invalid"))
    assert answer is not None
    [bka] = [p for p in answer if p["rule"] == "de-report-bka"]
    assert (bka["target"], bka["channel"], bka["priority"]) == ("desk@example.invalid",
                                                                "email", 10)
    without = rules.ntd_jurisdiction_actions(case, DE_HOSTED, ctx_with())
    assert without is not None and all(p["rule"] != "de-report-bka" for p in without)


def test_forward_deadline_is_configurable() -> None:
    answer = rules.ntd_jurisdiction_actions(make_case(resolution=DE_HOSTED), DE_HOSTED,
                                            ctx_with(forward_deadline_hours=12))
    assert answer is not None and answer[0]["deadline_hours"] == 12


def test_config_is_checked_like_ntd_toml() -> None:
    with pytest.raises(ConfigError, match="forward_deadline_hours"):
        ctx_with(forward_deadline_hours=0)  # check=positive
    with pytest.raises(ConfigError, match="unknown key"):
        ctx_with(bka_adress="email:desk@example.invalid")


def test_every_proposal_is_valid_for_ntd() -> None:
    """ntd's own route stage accepts every proposal (so a real run never rejects them), and
    reads ``applies_to`` as Germany only."""
    config = {"hotline_de": {"bka_target": "api:https://bka.example.test"}}
    outcome = route_with_defaults(PLUGIN, resolution=DE_HOSTED, config=config)
    assert outcome.decided_by == ["hotline_de:de-report-bka", "hotline_de:de-forward"]
    assert outcome.routes[0]["channel"] == "api"
    # The same proposals for a case hosted elsewhere are not applicable.
    proposals = rules.rules_for(DE_HOSTED, home="NL", bka_target="api:https://bka.example.test")
    assert proposals is not None
    elsewhere = route_with_defaults(proposals, name="hotline_de",
                                    resolution={**DE_HOSTED, "country": "FR"})
    assert {d["decided_by"]: d["why"] for d in elsewhere.dropped
            if d["decided_by"].startswith("hotline_de:")} == {
        f"hotline_de:{p['rule']}": "applies to DE, not FR" for p in proposals}


def test_merged_with_the_default_policy() -> None:
    """With ntd's default policy: our forward wins, no hoster notice now or later."""
    outcome = route_with_defaults(PLUGIN, resolution=DE_HOSTED)
    assert outcome.state == "routed"
    assert [(r["action"], r["recipient_kind"], r["deadline_hours"], r["decided_by"])
            for r in outcome.routes] == [("forward", "hotline", 48, "hotline_de:de-forward")]
    assert outcome.escalation == []  # the grace-period hoster notice was vetoed
    assert "vetoed by hotline_de:de-no-direct-hoster" in {d["why"] for d in outcome.dropped}
