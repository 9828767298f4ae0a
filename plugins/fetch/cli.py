"""Commands of the fetch plugin: ``ntd fetch CASE [--browser]`` (an analyst's re-fetch).

A re-fetch runs the fetch stage's own code on one case and stores its result the way the
pipeline would (items, event, new state), so the match stage looks at it again on the next
``ntd run``. ``--browser`` renders the page in headless Chromium whatever its HTML holds
(``plugins.fetch.browser``).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import click

from engine.clock import fmt
from engine.errors import InputError

# States a case may be re-fetched from: before or at the analyst's assessment.
REFETCHABLE = ("new", "unreachable", "fetched", "awaiting_assessment", "failed")


async def refetch(rt: Any, case_id: str, *, browser: bool = False,
                  actor: str = "engine", ctx: Any = None) -> dict[str, Any]:
    """Fetch one case again with the fetch stage's code and store the result.

    ``ctx`` may be a prepared run context (tests inject a fetcher). Returns the new state,
    the fetched event's detail and the number of items stored. Raises
    :class:`~engine.errors.InputError` for an unknown case or one past assessment.
    """
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.fetch.fetcher import close_browser_pool, configure_cpu_pool, fetch_case

    case = rt.store.load_case(case_id)  # InputError for an unknown id
    if case.state not in REFETCHABLE:
        raise InputError(f"case {case_id} is {case.state}; ntd fetch needs one of: "
                         f"{', '.join(REFETCHABLE)}")
    ctx = ctx or rt.context()
    try:
        configure_cpu_pool(ctx)
        try:
            result = await fetch_case(case, ctx, browser=browser)
        finally:
            await close_browser_pool(ctx)
    finally:
        await ctx.aclose()
    detail = {**result.detail, "asked_by": actor, "browser_asked": browser}
    if result.reason:
        detail.setdefault("reason", result.reason)
    rt.store.transition(case_id, state=result.state, stage="fetch", actor=actor,
                        action=result.action, now=rt.clock.now_text(), reason=result.reason,
                        detail=detail, data=result.data or None, expect=REFETCHABLE,
                        retry_at=fmt(result.retry_at) if result.retry_at else None,
                        items=result.items)
    return {"case": case_id, "state": result.state, "items": len(result.items),
            "detail": detail}


def _print(outcome: dict[str, Any]) -> None:
    detail = outcome["detail"]
    reason = f" ({detail['reason']})" if detail.get("reason") else ""
    click.echo(f"{outcome['case']}: {outcome['state']}{reason} — "
               f"{detail.get('media_found', 0)} media found, {detail.get('media_hashed', 0)} "
               "hashed")
    browser = detail.get("browser")
    if browser:
        if "unavailable" in browser:
            click.echo(f"  browser: unavailable ({browser['unavailable']})")
        else:
            click.echo(f"  browser ({browser['mode']}): {browser['requests']} requests, "
                       f"{browser['network_images']} images loaded, {browser['dom_media']} in "
                       f"the DOM, {browser['refused']} refused, {browser['seconds']}s"
                       + (f", stopped: {browser['stopped']}" if browser.get("stopped") else ""))
    for refusal in detail.get("refused", []):
        click.echo(f"  refused {refusal['reason']}: {refusal['url']}")


def register(cli: click.Group) -> None:
    """Add ``fetch`` to the ``ntd`` group."""
    if "fetch" in cli.commands:
        return

    @cli.command("fetch")
    @click.argument("case_id")
    @click.option("--browser", is_flag=True,
                  help="Render the page in headless Chromium (every request through the "
                       "SSRF-safe fetcher), whatever its HTML holds.")
    @click.option("--analyst", default=None, envvar="NTD_ANALYST",
                  help="Who asks (default: $NTD_ANALYST or the OS user).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def fetch_cmd(case_id: str, browser: bool, analyst: str | None, as_json: bool) -> None:
        """Fetch CASE again (new, unreachable, fetched, awaiting assessment or failed) and
        store what it serves; the match stage looks at it on the next `ntd run`."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.retention import actor_name

        rt = click.get_current_context().find_root().obj.runtime()
        outcome = asyncio.run(refetch(rt, case_id, browser=browser,
                                      actor=actor_name(analyst or os.environ.get("NTD_ANALYST"))))
        if as_json:
            click.echo(json.dumps(outcome, indent=2, default=str))
        else:
            _print(outcome)
