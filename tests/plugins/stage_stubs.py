"""A fixture plugin implementing the fetch and match stages without any network.

``NTD_TEST_STAGE_DELAY`` (seconds) makes each stage call take that long, so tests can interrupt a
run in the middle (crash-resume and SIGTERM tests).
"""

from __future__ import annotations

import asyncio
import os

from engine import hookimpl
from engine.errors import ConfigError
from engine.models import Item, StageResult


def _delay() -> float:
    return float(os.environ.get("NTD_TEST_STAGE_DELAY", "0"))


@hookimpl
async def ntd_fetch(case, ctx):
    if _delay():
        await asyncio.sleep(_delay())
    if "config-broken" in case.canonical_url:
        raise ConfigError("[fixture] endpoint: synthetic configuration problem")
    if "unreachable" in case.canonical_url:
        return StageResult(state="unreachable", action="unreachable", reason="connect_error",
                           retry_at=ctx.clock.now().replace(year=2100))
    return StageResult(state="fetched", action="fetched",
                       items=[Item(url=case.canonical_url, status=200,
                                   content_type="image/png", size=123,
                                   hashes={"md5": "0" * 32})])


@hookimpl
async def ntd_match(case, ctx):
    if _delay():
        await asyncio.sleep(_delay())
    assert case.items, "fetch stage must have stored an item"
    if "boom" in case.canonical_url:
        raise RuntimeError("synthetic failure")
    return StageResult(state="awaiting_assessment", action="no_match")
