"""Hook specifications: the contract between the ntd engine and its plugins.

Built-in stages (``plugins/``) and third-party plugins implement these hooks the same way::

    from engine import hookimpl

    @hookimpl
    def ntd_fetch(case, ctx):
        ...

Every hook name carries the ``ntd_`` prefix. A plugin implements any subset; misspelt hook names
are rejected at start-up. Hooks are plain functions that return a value **or an awaitable**: the
engine awaits what it gets, so an implementation may be ``async def``. Because pluggy calls hooks
synchronously, "first answer wins" hooks are *not* declared ``firstresult``: the engine calls
implementations one at a time in pluggy's order (last registered first; ``tryfirst``/``trylast``
respected), awaits each, and stops at the first answer that is not ``None``. It records which plugin
answered in the case's event trail.

Each hook is documented in ``docs/hooks.md`` (a test fails when one is missing there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from engine.context import StageContext
    from engine.models import Case, StageResult

hookspec = pluggy.HookspecMarker("ntd")


# --------------------------------------------------------------------------------------------
# Start-up and configuration
# --------------------------------------------------------------------------------------------


@hookspec
def ntd_config_schema() -> dict[str, dict[str, Any]]:  # type: ignore[empty-body]
    """Declare the configuration sections this plugin reads.

    Return ``{"section": {"key": engine.config.Option(...)}}``. Sections from all plugins are
    merged with the engine's own; a section declared by two plugins is an error. ``ntd.toml`` is
    validated against the merged schema at start-up, so a typo in a key fails loudly.
    All answers are collected.
    """


@hookspec
def ntd_startup(ctx: StageContext) -> Any:
    """Called once when the engine starts a run, after configuration is validated.

    Use it to open clients or load indexes. ``ctx`` is the run's ``StageContext``. May return an
    awaitable. Raising ``engine.errors.NtdError`` aborts the start with that message.
    """


@hookspec
def ntd_shutdown(ctx: StageContext) -> Any:
    """Called once when a run ends (also after SIGTERM): close what ``ntd_startup`` opened."""


@hookspec
def ntd_service(ctx: StageContext, stop: Any) -> Any:
    """Return a coroutine to run beside the stages during ``ntd run`` (e.g. the notice sender).

    ``stop`` is an ``asyncio.Event`` set when the run ends (idle in ``--until-idle`` mode, or
    SIGTERM); the coroutine must finish its current unit of work and return soon after. Return
    ``None`` to run nothing. Pair it with ``ntd_pending_work`` so ``--until-idle`` waits for it.
    """


@hookspec
def ntd_pending_work(ctx: StageContext) -> Any:
    """How many units of work a service has that are due now (an int, or an awaitable of one).

    ``ntd run --until-idle`` stops only when every stage and every service reports nothing due.
    """


@hookspec
def ntd_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``ntd`` command line (a ``click.Group``)."""


# --------------------------------------------------------------------------------------------
# Analyst decisions
# --------------------------------------------------------------------------------------------


@hookspec
def ntd_verdict_recorded(case: Case, verdict: str, category: str | None, learn: bool,
                         actor: str, store: Any, now: str) -> Any:
    """Called after an analyst's verdict (``ntd verdict``) is committed.

    ``verdict`` is ``illegal`` or ``not_illegal``; ``learn`` is true when the analyst asked to
    remember the item hashes (``--learn``) so the next copy is recognised without human
    exposure. ``store`` is the synchronous ``engine.store.Store``. All implementations are
    called; return values are ignored.
    """


@hookspec
def ntd_send_feedback(reporter: dict[str, Any], app: str | None, case_id: str,
                      outcome: dict[str, Any]) -> bool | None:
    """Give a chat reporter feedback on their report (e.g. a reply in the chat app).

    ``reporter`` holds the decrypted fields (``username``, ``first_name``, ``last_name``,
    ``phone``); ``outcome`` says what became of the report (``state``). Return ``True`` when the
    feedback was sent: the reporter data is then purged at the next ``ntd purge``. Without a
    plugin, feedback is listed by ``ntd feedback --due`` and confirmed by analysts with
    ``ntd feedback CASE --sent``. Never log or store the reporter fields.
    """


# --------------------------------------------------------------------------------------------
# Stage helpers: hooks the built-in stages call so plugins can extend them
# --------------------------------------------------------------------------------------------


@hookspec
def ntd_contact_sources(host: str, resolution: dict[str, Any],
                        ctx: StageContext) -> list[dict[str, Any]] | None:
    """Add abuse-contact candidates for a host (e.g. from the Abusix DNS contact DB).

    Called by the resolve stage after DNS/RDAP. ``resolution`` is the resolution so far (contract
    shape of ``ntd resolve --json``). Return a list of contacts shaped like
    ``{"scope": "hosting", "channel": "email", "address": "...", "source": "<your source>",
    "confidence": 0.0-1.0}``, or ``None``. All answers are merged and ranked with the built-in
    sources; the hotline's contacts book still wins. May return an awaitable.
    """


@hookspec
def ntd_jurisdiction_actions(case: Case, resolution: dict[str, Any],
                             ctx: StageContext) -> list[dict[str, Any]] | None:
    """Propose routing actions for a resolved case (partner hotlines' country rules).

    Called by the route stage for every resolved case; all answers are collected and merged by
    the documented precedence (``docs/writing-plugins.md``): the most specific country rule
    first, then explicit ``priority``, the built-in default policy last. Each proposal is a dict
    with ``action`` (notice | forward | report), ``recipient_kind``, ``target``, ``channel``,
    ``country``, ``deadline_hours``, ``reason`` and ``rule`` (the rule's name, recorded as
    ``decided_by = "<plugin>:<rule>"``); a proposal with ``"veto": true`` removes the actions of
    its ``recipient_kind`` proposed by others (e.g. a country where only police may be
    contacted). Reporter data is never available here. May return an awaitable.
    """


# --------------------------------------------------------------------------------------------
# Pipeline stages: one hook per stage, first non-None answer wins
#
# Every stage hook receives the case (``engine.models.Case``, read-only) and the run's
# ``StageContext`` and returns an ``engine.models.StageResult`` (or an awaitable of one) naming
# the case's next state, or ``None`` to let the next plugin answer. The engine commits the result
# atomically with the state change; until then, no other stage sees the case. A stage that no
# plugin implements parks its cases in state ``parked`` until one is installed.
# --------------------------------------------------------------------------------------------


@hookspec
def ntd_fetch(case: Case, ctx: StageContext) -> StageResult | None:
    """Fetch stage: consumes cases in ``new`` (and ``unreachable`` once their retry is due).

    Fetch the case URL through ``ctx.fetcher`` (the SSRF-safe fetcher; never open sockets
    yourself), hash what it serves (``ctx.run_cpu`` for decoding) and drop the bytes. Return
    ``fetched`` with the items and their hashes, or ``unreachable`` with a reason and
    ``retry_at``. Media bytes must never be stored or written to disk.
    """


@hookspec
def ntd_match(case: Case, ctx: StageContext) -> StageResult | None:
    """Match stage: consumes cases in ``fetched``.

    Compare the items' hashes with the known-hash lists. Return ``confirmed`` (a match on a list
    with ``trust = "auto"``), ``dismissed`` (e.g. suppressed by a negative list) or
    ``awaiting_assessment`` (an analyst must decide), with the matches recorded on the items.
    """


@hookspec
def ntd_resolve(case: Case, ctx: StageContext) -> StageResult | None:
    """Resolution stage: consumes cases in ``confirmed`` (and due ``unresolved``).

    Find the hosting IPs, network, country, registrar and ranked abuse contacts, and return
    ``resolved`` with ``data={"resolution": {...}}`` or ``unresolved`` with a reason and a
    ``retry_at``.
    """


@hookspec
def ntd_route(case: Case, ctx: StageContext) -> StageResult | None:
    """Routing stage: consumes cases in ``resolved``.

    Decide who must act (hosting provider, registrar, CDN, platform, partner hotline, police,
    Interpol) and return ``routed`` with ``data={"routes": [...]}``, or ``awaiting_routing``
    when an analyst must decide.
    """


@hookspec
def ntd_notify(case: Case, ctx: StageContext) -> StageResult | None:
    """Notice stage: consumes cases in ``routed``.

    Turn the case's routes into notices queued in the outbox (``StageResult.outbox``, committed
    in the same transaction) and return ``noticed``.
    """


@hookspec
def ntd_recheck(case: Case, ctx: StageContext) -> StageResult | None:
    """Re-check stage: consumes ``noticed``, ``monitoring``, ``escalated``, ``reappeared`` and
    ``removed`` cases whose check (``retry_at``) is due.

    Check whether the material is still online through ``ctx.fetcher`` and return the case's
    next state — ``monitoring`` (still online, next check scheduled), ``escalated`` (a ladder
    step queued in ``StageResult.outbox``), ``removed`` (gone; one confirmation check follows),
    ``reappeared`` (back after removal) or ``closed`` — with ``data={"monitoring": {...}}`` and
    ``retry_at`` for the next check.
    """


@hookspec
def ntd_escalate(case: Case, step: dict[str, Any],
                 ctx: StageContext) -> list[dict[str, Any]] | None:
    """Adjust an escalation step of the re-check stage before it is queued.

    ``step`` is ``{"level": N, "step": "deferred"|"reminder"|"upstream"|"authority"|
    "reappeared", "targets": [...], "skipped": [...], "routes": [...]}`` (routes in the routing
    contract). Return extra contract routes to add to the step, and/or ``{"veto": true,
    "recipient_kind": "..."}`` to drop that kind from it; ``None`` for no change. All answers
    are collected; placeholder targets are skipped. May return an awaitable.
    """
