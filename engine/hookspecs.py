"""Hook specifications: the contract between the ntd engine and its plugins.

Every ntd stage is a pluggy hook. Built-in stages (``plugins/``) and third-party plugins implement
the hooks the same way, import what they need from ``engine.api`` and register through the
entry-point group ``ntd.plugins``::

    # your plugin's pyproject.toml
    [project.entry-points."ntd.plugins"]
    my_hotline = "my_hotline_ntd.rules"

::

    # my_hotline_ntd/rules.py
    from engine.api import Case, StageContext, StageResult, hookimpl

    @hookimpl
    async def ntd_fetch(case: Case, ctx: StageContext) -> StageResult | None:
        ...

General rules:

- Every hook name carries the ``ntd_`` prefix. A plugin implements any subset; a misspelt hook
  name is rejected at start-up, naming the plugin.
- Hooks are plain functions that return a value **or an awaitable**: the engine awaits what it
  gets, so an implementation may be ``async def`` — except where a hook says it must be
  synchronous (set-up and command-line hooks).
- Because pluggy calls hooks synchronously, "first answer wins" hooks are *not* declared
  ``firstresult``: the engine calls implementations one at a time in pluggy's order (last
  registered first; ``tryfirst=True`` / ``trylast=True`` respected), awaits each, and stops at the
  first answer that is not ``None``. It records which plugin answered in the case's event trail
  (``actor``). Hooks whose answers are "all collected" call every implementation.
- An exception in a stage hook does not crash the run: the case stays in its state with an
  ``error`` event naming the plugin and is retried with exponential backoff; after 5 attempts it
  becomes ``failed``.
- Plugins never open sockets themselves: outbound HTTP goes through ``ctx.fetcher`` (SSRF-safe)
  and CPU-heavy work through ``await ctx.run_cpu(fn, *args, timeout=...)`` (a process pool
  whose workers are stopped past the deadline or over their memory share: ``WorkerError``).
- Block a plugin by its entry-point name with ``NTD_DISABLE_PLUGINS=name1,name2``; ``ntd plugins``
  lists what is loaded and which hooks each plugin implements.
- The types in the signatures below (``Resolution``, ``Route``, ``JurisdictionProposal``, ...) are
  importable from ``engine.api``; at run time they are plain dicts.

``docs/hooks.md`` is generated from this module (``python -m engine.hookspecs_doc``) and a test
fails when it is stale; every hook's docstring says where it sits, each argument (``:param:``)
and the answer (``:returns:``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine
    from typing import Any

    import click

    from engine.api import (
        Case,
        Config,
        ConfigSchema,
        ContactCandidate,
        DnsFacts,
        EscalationAnswer,
        EscalationStep,
        FeedbackOutcome,
        IntakeSource,
        JurisdictionProposal,
        MaybeAwaitable,
        NoticeChannel,
        NoticeText,
        ReporterFields,
        Resolution,
        StageContext,
        StageResult,
        StoredNotice,
        Verdict,
    )
    from engine.hash_sources import HashSource
    from engine.store import Store

hookspec = pluggy.HookspecMarker("ntd")


# --------------------------------------------------------------------------------------------
# Start-up and configuration
# --------------------------------------------------------------------------------------------


@hookspec
def ntd_config_schema() -> ConfigSchema:  # type: ignore[empty-body]
    """Declare the configuration sections this plugin reads.

    Called at start-up, before anything else. Sections from all plugins are merged with the
    engine's own; a section declared by two plugins is an error. ``ntd.toml`` is validated against
    the merged schema, so unknown keys, wrong types and failed checks fail loudly, naming the key
    (exit code 2). Nested TOML tables are sections with dotted names (``"my_hotline.deadlines"``);
    a section whose schema has the key ``"*"`` accepts free keys validated by that option. Secrets
    never go in the file: declare an option ending in ``_env`` that names an environment variable
    and read it with ``engine.api.secret_from_env``. Read values with
    ``ctx.config.section("my_hotline")``. All answers are collected. Must be synchronous.

    :returns: ``{"section": {"key": Option(type=int, default=3, check=positive)}}``.
    """


@hookspec
def ntd_startup(ctx: StageContext) -> MaybeAwaitable[None]:
    """Called once when the engine starts a run, after configuration is validated.

    Use it to open clients, load indexes and validate external files (the built-in route plugin
    loads its hotline directory here, so a broken file stops the start instead of failing every
    case). Keep per-run state in ``ctx.state["<your plugin>"]``. All implementations are called;
    may return an awaitable. Raising ``engine.api.NtdError`` aborts the start with that message.

    :param ctx: the run's context (configuration, clock, store, fetcher, CPU pool).
    :returns: nothing (or an awaitable of nothing).
    """


@hookspec
def ntd_shutdown(ctx: StageContext) -> MaybeAwaitable[None]:
    """Called once when a run ends (also after SIGTERM): close what ``ntd_startup`` opened.

    All implementations are called; may return an awaitable. Must not raise for things already
    closed.

    :param ctx: the run's context, the same object ``ntd_startup`` received.
    :returns: nothing (or an awaitable of nothing).
    """


@hookspec
def ntd_service(ctx: StageContext, stop: asyncio.Event) -> Coroutine[Any, Any, None] | None:
    """Return a coroutine to run beside the stages during ``ntd run`` (e.g. the notice sender).

    Called once per run; all implementations are called and each coroutine runs for the whole
    run. Work in small
    units and check ``stop`` between them; when it is set, finish the current unit of work and
    return soon after. Pair it with ``ntd_pending_work`` so ``--until-idle`` waits for it. The hook
    itself is a plain function (the coroutine it returns is scheduled, not awaited in turn).

    :param ctx: the run's context.
    :param stop: an ``asyncio.Event`` set when the run ends (idle in ``--until-idle`` mode, or
        SIGTERM).
    :returns: a coroutine to run, or ``None`` to run nothing.
    """


@hookspec
def ntd_pending_work(ctx: StageContext) -> MaybeAwaitable[int]:  # type: ignore[empty-body]
    """How many units of work a service has that are due now.

    Called whenever ``ntd run --until-idle`` checks whether it is done: the run stops only when
    every stage and every service reports nothing due, so implement it together with
    ``ntd_service``. All implementations are called; may return an awaitable.

    :param ctx: the run's context.
    :returns: the number of due units (an int, or an awaitable of one).
    """


@hookspec
def ntd_deliver(ctx: StageContext) -> MaybeAwaitable[int]:  # type: ignore[empty-body]
    """Deliver now what a one-shot command queued (``ntd recheck --due`` calls it after its
    sweep, so the escalation notices it queued go out without a running sender).

    All implementations are called; may return an awaitable. A long-running ``ntd run`` does
    not call it: its ``ntd_service`` coroutines deliver.

    :param ctx: the command's context.
    :returns: how many units were delivered (an int, or an awaitable of one).
    """


@hookspec
def ntd_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``ntd`` command line.

    Called when the command line starts; all implementations are called. The run's runtime is
    reachable through ``click.get_current_context().find_root().obj.runtime()`` (``.store``,
    ``.clock``, ``.config``, ``.pm``). Guard against double registration (``if "my-cmd" in
    cli.commands: return``) and add benchmarks to the existing group ``cli.commands["bench"]``.
    Must be synchronous::

        @hookimpl
        def ntd_register_commands(cli):
            @cli.command("my-report")
            def my_report():
                ...

    :param cli: the ``ntd`` command group (a ``click.Group``).
    :returns: nothing.
    """


@hookspec
def ntd_intake_sources(ctx: StageContext) -> MaybeAwaitable[list[IntakeSource] | None]:
    """Offer long-running intake sources: a mailbox, a chat bot, a webhook receiver.

    Called once per ``ntd run`` (the sources run beside the stages; ``--until-idle`` polls
    each once and waits for what it hands in) and by ``ntd intake run NAME`` (one source
    alone; ``--once`` for one pass). All answers are collected; names must be unique. A source
    (``engine.api.IntakeSource``; ``engine.api.PollingSource`` is a base) has a ``name``,
    ``async poll(desk)`` (hand in what is waiting, return how many messages), ``async
    run(desk, stop)`` (until ``stop`` is set) and ``async aclose()``. It hands every message
    in with the one call ``await desk.hand_in(reports, channel=..., reference=...,
    reporter=..., app=...)`` (``engine.api.IntakeDesk``, ``docs/intake.md``): URLs or media
    bytes (hashed in memory, never stored), the reporter's fields (sealed apart from case
    data), and a reference that makes the message unique (handing it in again stores
    nothing); it answers the batch id and counts for the source's receipt. A source that
    answered its reporter calls ``await desk.receipt_given(reference)``: the reporter records
    are purged then. Never log reporter fields. May return an awaitable.

    :param ctx: the run's context (configuration: ``ctx.config.section("intake.<name>")``).
    :returns: a list of sources, or ``None`` for none.
    """


# --------------------------------------------------------------------------------------------
# Analyst decisions
# --------------------------------------------------------------------------------------------


@hookspec
def ntd_verdict_recorded(case: Case, verdict: Verdict, category: str | None, learn: bool,
                         actor: str, store: Store, now: str) -> None:
    """Called after an analyst's verdict (``ntd verdict CASE illegal|not_illegal``) is committed.

    Typical use: share the verdict with a partner system, or — like the built-in ``hashmatch``
    plugin — learn the item hashes when ``learn`` is true (it adds them to the local list
    ``analyst``, or to the negative list ``analyst-benign`` for ``not_illegal``). All
    implementations are called; return values are ignored. Must be synchronous.

    :param case: the case as it was before the verdict.
    :param verdict: ``illegal`` or ``not_illegal``.
    :param category: the category the analyst gave (e.g. ``baseline``), or ``None``.
    :param learn: true when the analyst asked to remember the item hashes (``--learn``) so the
        next copy is recognised without human exposure.
    :param actor: who decided (``analyst:<name>``).
    :param store: the synchronous store (``engine.store.Store``).
    :param now: the time of the verdict (ntd timestamp text).
    :returns: nothing (ignored).
    """


@hookspec
def ntd_send_feedback(reporter: ReporterFields, app: str | None, case_id: str,
                      outcome: FeedbackOutcome) -> bool | None:
    """Give a chat reporter feedback on their report (e.g. a reply in the chat app).

    Called by ``ntd purge`` (and ``ntd run --daemon``) for every reporter due feedback; all
    implementations are called. Without such a plugin, feedback is listed by ``ntd feedback
    --due`` and confirmed by analysts with ``ntd feedback CASE --sent``. This is the only hook
    that ever sees reporter data: never log, store, forward or cache the fields, nor put them in
    exception messages. Must be synchronous.

    :param reporter: the decrypted reporter fields (``username``, ``first_name``, ``last_name``,
        ``phone``).
    :param app: the chat app the report came from (e.g. ``signal``), or ``None``.
    :param case_id: the case the report belongs to.
    :param outcome: what became of the report (``{"state": "removed"}``).
    :returns: ``True`` when the feedback was sent (the reporter data is then purged at the next
        ``ntd purge``); ``None`` or ``False`` when it was not.
    """


# --------------------------------------------------------------------------------------------
# Stage helpers: hooks the built-in stages call so plugins can extend them
# --------------------------------------------------------------------------------------------


@hookspec
def ntd_contact_sources(host: str, resolution: Resolution,
                        ctx: StageContext) -> MaybeAwaitable[list[ContactCandidate] | None]:
    """Add abuse-contact candidates for a host (e.g. from the Abusix DNS contact DB).

    Called by the resolve stage after DNS/RDAP. All answers are collected, merged and ranked
    with the built-in sources; the hotline's contacts book still wins. Unusable entries are
    dropped with a note; a plugin that raises is logged and noted, and the case still resolves.
    If your routing rules need a contact the resolution lacks, add it here: routing plugins
    cannot rescue a case whose contacts are missing. May return an awaitable.

    :param host: the host name being resolved.
    :param resolution: the resolution so far (contract shape of ``ntd resolve --json``; a copy:
        add contacts by returning them, not by editing it).
    :param ctx: the run's context.
    :returns: a list of contacts shaped like ``{"scope": "hosting", "channel": "email",
        "address": "...", "source": "<your source>", "confidence": 0.0-1.0}``, or ``None``.
    """


@hookspec
def ntd_host_addresses(host: str, ctx: StageContext) -> MaybeAwaitable[DnsFacts | None]:
    """Resolve a host's addresses again, now (DNS only: no registry lookups).

    Called by the re-check stage at every check that finds the material online, to notice
    content whose host moved to another network (``docs/rechecks.md``); the built-in resolve
    plugin answers with its DNS resolver (``[resolve.hosts]`` first, then ``[resolve]
    dns_server`` or the system's). First non-None answer wins; may return an awaitable. Must
    not raise for DNS failures: they are answers (``dns_outcome``).

    :param host: the case's host name (or IP literal).
    :param ctx: the run's context.
    :returns: the DNS part of a resolution (``host``, ``ips``, ``cnames``, ``dns_outcome``,
        ``dns_source``), or ``None`` for "no opinion".
    """


@hookspec
def ntd_hash_sources(config: Config) -> list[HashSource] | None:
    """Offer hash sources: remote hash sets to sync, match-time lookups, file formats.

    Called by the built-in match plugin when it needs its sources (``ntd hashlist sync NAME``,
    ``ntd hashlist import --format``, the daemon's sync loop, the match stage's remote
    lookups); all answers are collected, and two sources of one name are an error. A source
    is an ``engine.api.HashSource``: its ``name`` is its section ``[hashsource.NAME]`` (declare
    it in your ``ntd_config_schema``) and what it can do is said by ``can_sync`` (then ``async
    sync(ctx, cursors)`` returns ``ListChanges``, applied as a diff so a second sync changes
    only what changed), ``can_lookup`` (``async lookup(ctx, hashes)`` returns
    ``RemoteMatch`` records) and ``formats`` (``read_file(format, path)``). Credentials come
    from environment variables the section names; never log them or put them in errors
    (``docs/hash-sources.md``). Must be synchronous (the sources' methods are coroutines).

    :param config: the validated configuration (read your ``[hashsource.NAME]`` section).
    :returns: the sources to add (configured or not: ``enabled`` says), or ``None``.
    """


@hookspec
def ntd_notice_channels(ctx: StageContext) -> list[NoticeChannel] | None:
    """Add ways to deliver notices: a channel per route ``channel`` name (e.g. ``iccam``).

    Called by the built-in notify stage when its sender starts (``ntd run``, ``ntd notices
    send``); all answers are collected, and a channel replaces a built-in one of the same
    name. A channel (``engine.api.NoticeChannel``) has a ``name``, ``async send(prepared)``
    returning an ``engine.api.DeliveryOutcome`` (``sent``, ``retry`` or ``failed``; it never
    raises for delivery problems) and ``async aclose()``. ``prepared.notice`` is the claimed
    notice; its ``actions`` are the allow-listed outbox payloads, each with its ``case_id``.
    Routes whose channel nobody provides become ``manual`` notices. Must be synchronous (the
    channels' methods are coroutines).

    :param ctx: the run's context.
    :returns: the channels to add, or ``None``.
    """


@hookspec
def ntd_notice_text(notice: StoredNotice, config: Config) -> NoticeText | None:
    """The text a notice says, rendered as it is (or was) sent, for the analyst's case page.

    Called by the console's case page for each notice of the case; all implementations are
    called and the first answer that is not ``None`` is shown. ``notice`` is the store's notice
    (``get_notice``: recipient, channel, language, ``actions`` with their ``case_id``). The
    built-in notify stage renders its templates exactly as its sender does. Must be synchronous
    and must not send anything.

    :param notice: the notice with its actions.
    :param config: the run's configuration (``engine.config.Config``).
    :returns: ``{"subject": ..., "text": ...}``, or ``None`` when this plugin does not render
        notices of this kind.
    """


@hookspec
def ntd_jurisdiction_actions(
        case: Case, resolution: Resolution,
        ctx: StageContext) -> MaybeAwaitable[list[JurisdictionProposal] | None]:
    """Propose routing actions for a resolved case (partner hotlines' country rules).

    Called by the route stage for every resolved case; all answers are collected and merged by
    the documented precedence (``docs/writing-plugins.md``): the most specific country rule
    first, then explicit ``priority``, the built-in default policy last. Each proposal is a dict
    with ``action`` (notice | forward | report), ``recipient_kind``, ``target``, ``channel``,
    ``country``, ``deadline_hours``, ``reason`` and ``rule`` (the rule's name, recorded as
    ``decided_by = "<plugin>:<rule>"``); a proposal with ``"veto": true`` removes the actions of
    its ``recipient_kind`` proposed by others (e.g. a country where only police may be
    contacted). Reporter data is never available here. May return an awaitable.

    :param case: the resolved case (read-only; never holds reporter data).
    :param resolution: the case's resolution — your own copy: changing it affects nobody.
    :param ctx: the run's context.
    :returns: a list of proposals, or ``None`` for "no opinion". A malformed proposal is a
        ``RoutingError`` naming the plugin and rule.
    """


# --------------------------------------------------------------------------------------------
# Pipeline stages: one hook per stage, first non-None answer wins
#
# Every stage hook receives the case (``engine.api.Case``, read-only) and the run's
# ``StageContext`` and returns an ``engine.api.StageResult`` (or an awaitable of one) naming
# the case's next state, or ``None`` to let the next plugin answer. The engine commits the result
# atomically with the state change; until then, no other stage sees the case. A stage that no
# plugin implements parks its cases (they keep their state, get the reason ``waiting for a
# plugin that implements the <stage> stage`` and a ``parked`` event) until one is installed.
# --------------------------------------------------------------------------------------------


@hookspec
def ntd_fetch(case: Case, ctx: StageContext) -> MaybeAwaitable[StageResult | None]:
    """Fetch stage: consumes cases in ``new`` (and ``unreachable`` once their retry is due).

    Fetch the case URL through ``ctx.fetcher`` (the SSRF-safe fetcher; never open sockets
    yourself), hash what it serves (``ctx.run_cpu`` for decoding) and drop the bytes. Media bytes
    must never be stored or written to disk. Return ``None`` to let another plugin (e.g. the
    built-in one) handle the case — useful for a plugin that fetches only from one special
    platform. First non-None answer wins; may return an awaitable.

    :param case: the case to fetch (``case.url``).
    :param ctx: the run's context.
    :returns: ``fetched`` with the items and their hashes (``items=[Item(...)]``), or
        ``unreachable`` with a reason and ``retry_at``; ``None`` to pass.
    """


@hookspec
def ntd_match(case: Case, ctx: StageContext) -> MaybeAwaitable[StageResult | None]:
    """Match stage: consumes cases in ``fetched``.

    Compare the items' hashes with the known-hash lists. First non-None answer wins; may return
    an awaitable.

    :param case: the fetched case (``case.items`` carry the hashes).
    :param ctx: the run's context.
    :returns: ``confirmed`` (a match on a list with ``trust = "auto"``), ``dismissed`` (e.g.
        suppressed by a negative list) or ``awaiting_assessment`` (an analyst must decide), with
        the matches recorded on the items (``items=[replace(item, matches=[...])]``); ``None`` to
        pass.
    """


@hookspec
def ntd_resolve(case: Case, ctx: StageContext) -> MaybeAwaitable[StageResult | None]:
    """Resolution stage: consumes cases in ``confirmed`` (and due ``unresolved``).

    Find the hosting IPs, network, country, registrar and ranked abuse contacts. To *add*
    contacts rather than replace the stage, implement ``ntd_contact_sources`` instead. First
    non-None answer wins; may return an awaitable.

    :param case: the confirmed case (``case.host`` is the host to resolve).
    :param ctx: the run's context.
    :returns: ``resolved`` with ``data={"resolution": {...}}`` (a ``Resolution``,
        ``docs/resolution.md``), or ``unresolved`` with a reason and a ``retry_at``; ``None`` to
        pass.
    """


@hookspec
def ntd_route(case: Case, ctx: StageContext) -> MaybeAwaitable[StageResult | None]:
    """Routing stage: consumes cases in ``resolved``.

    Decide who must act (hosting provider, registrar, CDN, platform, partner hotline, police,
    Interpol). The built-in ``route_inhope`` implements it; replace it only if your hotline's whole
    routing practice differs — to add country rules, implement ``ntd_jurisdiction_actions``.
    First non-None answer wins; may return an awaitable.

    :param case: the resolved case (``case.data["resolution"]``).
    :param ctx: the run's context.
    :returns: ``routed`` with ``data={"routes": [...], "escalation": [...]}`` (a
        ``RouteDecision``, ``docs/routing.md``), or ``awaiting_routing`` when an analyst must
        decide; ``None`` to pass.
    """


@hookspec
def ntd_notify(case: Case, ctx: StageContext) -> MaybeAwaitable[StageResult | None]:
    """Notice stage: consumes cases in ``routed``.

    Turn the case's routes into notices queued in the outbox (``StageResult.outbox``, committed
    in the same transaction as the state change). Routes whose target is symbolic
    (``police:NL``, ``interpol``: no contact configured) must not be sent. First non-None answer
    wins; may return an awaitable.

    :param case: the routed case (``case.data["routes"]``).
    :param ctx: the run's context.
    :returns: ``noticed`` with one ``NoticeAction`` per route in ``outbox`` and ``retry_at`` =
        the first re-check; ``None`` to pass.
    """


@hookspec
def ntd_recheck(case: Case, ctx: StageContext) -> MaybeAwaitable[StageResult | None]:
    """Re-check stage: consumes ``noticed``, ``monitoring``, ``escalated``, ``reappeared`` and
    ``removed`` cases whose check (``retry_at``) is due.

    Check whether the material is still online through ``ctx.fetcher``. Use the routes'
    ``deadline_hours`` and the ``escalation`` plan (``docs/routing.md``) to decide when to
    escalate. First non-None answer wins; may return an awaitable.

    :param case: the case to check (``case.data["monitoring"]`` holds the previous checks).
    :param ctx: the run's context.
    :returns: the case's next state — ``monitoring`` (still online, next check scheduled),
        ``escalated`` (a ladder step queued in ``StageResult.outbox``), ``removed`` (gone; one
        confirmation check follows), ``reappeared`` (back after removal) or ``closed`` — with
        ``data={"monitoring": {...}}`` and ``retry_at`` for the next check; ``None`` to pass.
    """


@hookspec
def ntd_escalate(case: Case, step: EscalationStep,
                 ctx: StageContext) -> MaybeAwaitable[list[EscalationAnswer] | None]:
    """Adjust an escalation step of the re-check stage before it is queued.

    Called by the re-check stage before it queues a step (deferred, reminder, upstream,
    authority, reappeared; ``docs/rechecks.md``). All answers are collected; placeholder targets
    are skipped, never sent. May return an awaitable.

    :param case: the case being escalated (read-only).
    :param step: ``{"level": N, "step": NAME, "targets": [...], "skipped": [...], "routes":
        [...]}`` where ``NAME`` is ``deferred``, ``reminder``, ``upstream``, ``authority`` or
        ``reappeared`` (routes in the routing contract).
    :param ctx: the run's context.
    :returns: extra contract routes to add to the step, and/or ``{"veto": true,
        "recipient_kind": "..."}`` to drop that kind from it; ``None`` for no change.
    """
