"""Tests of the example German rule set: its proposals, and what ntd's merge makes of them.

Run from this directory with ``python -m pytest -q`` in an environment where ntd is installed.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ntd_hotline_de import rules

from engine.config import validate

DE_HOSTED = {"host": "www.site.example.test", "country": "DE", "cdn": None, "platform": None,
             "contacts": [{"scope": "hosting", "channel": "email",
                           "address": "abuse@hoster.example.test", "source": "rdap",
                           "confidence": 0.9}]}


def ctx_with(**hotline_de: object) -> SimpleNamespace:
    """A stand-in for ntd's run context: only ``config`` is used by this plugin."""
    config = validate({"hotline_de": hotline_de}, rules.ntd_config_schema())
    config.values["routing"] = {"home_country": "NL"}
    return SimpleNamespace(config=config)


@pytest.mark.parametrize(("resolution", "home", "expected"), [
    (DE_HOSTED, "NL", ["de-forward", "de-no-direct-hoster"]),
    ({**DE_HOSTED, "country": "FR"}, "NL", None),  # not German: no opinion
    (DE_HOSTED, "DE", None),  # a German hotline uses ntd's home-country policy
    ({**DE_HOSTED, "cdn": "cloudflare"}, "NL", None),
    ({**DE_HOSTED, "platform": "blog.example.test"}, "NL", None),
])
def test_rules_for_country_and_home(resolution, home, expected) -> None:
    got = rules.rules_for(resolution, home=home)
    assert (None if got is None else [p["rule"] for p in got]) == expected


def test_bka_report_only_when_configured() -> None:
    answer = rules.ntd_jurisdiction_actions(None, DE_HOSTED,
                                            ctx_with(bka_target="email:desk@example.invalid"))
    [bka] = [p for p in answer if p["rule"] == "de-report-bka"]
    assert (bka["target"], bka["channel"], bka["priority"]) == ("desk@example.invalid",
                                                                "email", 10)
    assert all(p["rule"] != "de-report-bka"
               for p in rules.ntd_jurisdiction_actions(None, DE_HOSTED, ctx_with()))


def test_forward_deadline_is_configurable() -> None:
    answer = rules.ntd_jurisdiction_actions(None, DE_HOSTED,
                                            ctx_with(forward_deadline_hours=12))
    assert answer[0]["deadline_hours"] == 12


def test_every_proposal_is_valid_for_ntd() -> None:
    """ntd's own validator accepts every proposal (so a real run never rejects them)."""
    from plugins.route.merge import normalize_proposal

    answer = rules.rules_for(DE_HOSTED, home="NL", bka_target="api:https://bka.example.test")
    for raw in answer:
        proposal = normalize_proposal(raw, "hotline_de")
        assert proposal.applies_to == frozenset({"DE"})


def test_merged_with_the_default_policy() -> None:
    """With ntd's default policy: our forward wins, no hoster notice now or later."""
    from plugins.route.policy import RoutingSettings, decide, load_directory

    answers = [(rules.rules_for(DE_HOSTED, home="NL"), "hotline_de")]
    result = decide(DE_HOSTED, answers, RoutingSettings(), load_directory())
    assert result.state == "routed"
    assert [(r["action"], r["recipient_kind"], r["deadline_hours"], r["decided_by"])
            for r in result.data["routes"]] == [
        ("forward", "hotline", 48, "hotline_de:de-forward")]
    assert result.data["escalation"] == []  # the grace-period hoster notice was vetoed
