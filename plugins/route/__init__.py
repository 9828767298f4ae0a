"""Route stage (entry point route_inhope): the hook implementations; the default policy is
in policy and the merge of proposals in merge; cli holds ntd route.
"""

from __future__ import annotations

from typing import Any

from engine import hookimpl
from engine.api import Case, StageContext
from engine.config import Option, non_negative, one_of, positive
from engine.directory import check_country
from engine.models import StageResult
from plugins.route.cli import register
from plugins.route.policy import route_case, run_state


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {
        "routing": {
            "home_country": Option(type=str, default="NL", check=check_country,
                                   help="the hotline's own country (ISO 3166 alpha-2)"),
            "directory_file": Option(type=str, default="",
                                     help="hotline directory JSON (default: the shipped "
                                          "INHOPE member list)"),
            "forward_grace_hours": Option(type=int, default=72, check=positive,
                                          help="after a forward to a partner hotline, notice "
                                               "the hoster if still online this much later"),
            "default_deadline_hours": Option(type=int, default=72, check=non_negative,
                                             help="takedown deadline where [routing.deadlines]"
                                                  " has none; 0 = no deadline"),
            "registrar_second": Option(type=bool, default=True,
                                       help="home country: also notice the registrar"),
            "police_first": Option(type=str, default="never",
                                   check=one_of("never", "national", "always"),
                                   help="send the police report first and hold every other "
                                        "notice until the police liaison releases it "
                                        "(national: content hosted in home_country)"),
        },
        "routing.deadlines": {
            "*": Option(type=int, check=non_negative,
                        help="takedown deadline in hours for a country, e.g. NL = 24"),
        },
        "routing.contacts": {
            "*": Option(type=str, help='"hotline:DE" / "police:NL" / "interpol" = '
                                       '"[channel:]address"'),
        },
    }


@hookimpl
def ntd_startup(ctx: StageContext) -> None:
    run_state(ctx)  # a bad directory file or contact key stops the start, not the first case


@hookimpl
def ntd_register_commands(cli: Any) -> None:
    register(cli)


@hookimpl
async def ntd_route(case: Case, ctx: StageContext) -> StageResult:
    return await route_case(case, ctx)
