"""Re-check stage (entry point recheck): the hook implementations; the logic is in
checking (the checks) and escalation (the ladder); cli holds ntd recheck.
"""

from __future__ import annotations

from typing import Any

from engine import hookimpl
from engine.api import StageContext
from engine.config import Option
from engine.models import Case, StageResult
from plugins.recheck.checking import SCHEMA, recheck_case
from plugins.recheck.cli import register


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {section: dict(options) for section, options in SCHEMA.items()}


@hookimpl
def ntd_register_commands(cli: Any) -> None:
    register(cli)


@hookimpl
async def ntd_recheck(case: Case, ctx: StageContext) -> StageResult:
    return await recheck_case(case, ctx)
