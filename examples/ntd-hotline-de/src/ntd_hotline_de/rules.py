"""Routing rules for material hosted in Germany (an illustrative partner rule set).

ntd calls ``ntd_jurisdiction_actions`` for every resolved case. This plugin answers only for
cases hosted in ``DE`` and only when the running hotline is not German itself (a German hotline
running ntd uses the home-country policy). Its proposals carry ``applies_to = "DE"``, so they
take precedence over generic plugins and over ntd's built-in default policy.

Everything it needs from ntd comes from ``engine.api``, the public plugin API.
"""

from __future__ import annotations

from engine.api import (
    Case,
    ConfigSchema,
    JurisdictionProposal,
    Option,
    Resolution,
    RouteChannel,
    StageContext,
    hookimpl,
    positive,
)

COUNTRY = "DE"
CHANNELS: tuple[RouteChannel, ...] = ("email", "api", "iccam", "form")


@hookimpl
def ntd_config_schema() -> ConfigSchema:
    """The ``[hotline_de]`` section of ``ntd.toml``."""
    return {"hotline_de": {
        "forward_deadline_hours": Option(type=int, default=48, check=positive,
                                         help="deadline of the forward to the German hotline"),
        "bka_target": Option(type=str, default="",
                             help='"[channel:]address" of the BKA desk; empty = no report'),
    }}


def split_target(value: str) -> tuple[RouteChannel, str]:
    """``"email:desk@example.org"`` → ``("email", "desk@example.org")``; default channel email."""
    channel, sep, address = value.partition(":")
    for known in CHANNELS:  # (a loop, not ``in``: it gives the type checker the literal)
        if sep and channel == known:
            return known, address
    return "email", value


def rules_for(resolution: Resolution, *, home: str, forward_deadline_hours: int = 48,
              bka_target: str = "") -> list[JurisdictionProposal] | None:
    """The proposals for one resolution, or None when these rules do not apply (pure)."""
    if resolution.get("country") != COUNTRY or home == COUNTRY:
        return None
    if resolution.get("platform") or resolution.get("cdn"):
        return None  # the platform's or CDN's own channel comes first; nothing German-specific
    proposals: list[JurisdictionProposal] = [
        {"rule": "de-forward", "action": "forward", "recipient_kind": "hotline",
         "target": "iccam:DE", "channel": "iccam", "country": COUNTRY,
         "deadline_hours": forward_deadline_hours, "applies_to": COUNTRY,
         "reason": "hosted in Germany: the German hotline runs the takedown"},
        # A pure veto: no other plugin (nor the default policy) may notice a German hoster,
        # not even after the grace period.
        {"rule": "de-no-direct-hoster", "recipient_kind": "hosting", "veto": True,
         "applies_to": COUNTRY,
         "reason": "German hosters are contacted by the German hotline only"},
    ]
    if bka_target:
        channel, address = split_target(bka_target)
        proposals.append(
            {"rule": "de-report-bka", "action": "report", "recipient_kind": "police",
             "target": address, "channel": channel, "country": COUNTRY,
             "deadline_hours": None, "applies_to": COUNTRY, "priority": 10,
             "reason": "hosted in Germany: report to the Bundeskriminalamt"})
    return proposals


@hookimpl
def ntd_jurisdiction_actions(case: Case, resolution: Resolution,
                             ctx: StageContext) -> list[JurisdictionProposal] | None:
    """Propose the German rules for a resolved case (``case`` is unused: rules are by country).

    ``[routing] home_country`` belongs to ntd's built-in route plugin; read with a default so
    the rules also work where that plugin is not loaded.
    """
    settings = ctx.config.section("hotline_de")
    return rules_for(resolution, home=ctx.config.get("routing", "home_country", "NL"),
                     forward_deadline_hours=settings.get("forward_deadline_hours", 48),
                     bka_target=settings.get("bka_target", ""))
