"""Built-in re-check stage: is noticed material still online? Escalate, or record its removal.

``ntd_recheck`` consumes cases in ``noticed``, ``monitoring``, ``escalated``, ``reappeared`` (and
``removed`` when the engine lets the stage confirm removals) whose check is due. Per check:

1. every **confirmed item** (a non-negative match; all media items when an analyst confirmed
   the case) is fetched again through ``ctx.fetcher`` (SSRF-safe), hashed in memory, compared
   with its stored hashes (exact SHA-256, else pHash/PDQ within a radius) and the bytes dropped;
   a media item missing at its own URL is also looked for on the reported page (moved media);
2. an item is ``removed`` on HTTP 404/410/451, DNS NXDOMAIN, different content at its URL
   (``replaced``), a page instead of the media (``soft_404``) or ``unreachable_checks``
   consecutive unreachable checks; ``online`` when the same content is served;
3. the case is removed when all its confirmed items are: ``removed`` (confirmation check
   ``confirm_removal_hours`` later) then ``closed``; content back after removal → ``reappeared``
   (original recipients noticed again, ladder restarts);
4. still online when escalation is due → one step of the ladder (``plugins.recheck.escalation``)
   queued in the outbox with the state change (``escalated``), else ``monitoring``.

The case's ``monitoring`` field holds the contract keys (``next_check_at``, ``checks``,
``removed_at``, ``seconds_to_removal_from_report``, ``seconds_to_removal_from_notice``,
``escalation_level``) plus per-item detail and the steps taken. Docs: ``docs/rechecks.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine import pipeline
from engine.api import StageContext
from engine.clock import Clock, fmt, parse, parse_duration
from engine.config import Option, non_negative, positive
from engine.directory import load_directory, settings_from_config
from engine.errors import FetchError, WorkerError
from engine.ids import new_id
from engine.media.items import IMAGE_TYPES, hash_bytes
from engine.media.signals import PERCEPTUAL_TYPES, SHA256, default_radii
from engine.models import Case, Item, StageResult
from engine.notice_content import build_action
from engine.plugin_manager import call_all, call_first
from engine.routes import split_sendable
from plugins.recheck.escalation import LADDER_STEPS, Step, check_ladder, next_step, reappeared_step

PLUGIN = "recheck"
GONE_STATUSES = frozenset({404, 410, 451})
DEFAULT_CONFIRM = {"misses": 1, "apart_minutes": 5.0}
# A host's addresses are asked once a minute at most per run: a sweep checks many cases of one
# host within seconds, and one DNS answer serves them all.
LOCATE_CACHE_SECONDS = 60.0


def _fraction(value: Any) -> str | None:
    return None if 0 <= value < 1 else "must be at least 0 and below 1"


def check_schedule(value: Any) -> str | None:
    """Config check of ``[recheck] schedule``: a list of durations (``"1h"``, ``"30m"``)."""
    if not isinstance(value, list):
        return 'must be a list of durations, e.g. ["1h", "4h", "12h", "24h"]'
    for n, step in enumerate(value, 1):
        try:
            parse_duration(step)
        except ValueError as exc:
            return f"step {n}: {exc}"
    return None


def check_confirm(value: Any) -> str | None:
    """Config check of ``[recheck] confirm``: ``{misses = N, apart_minutes = M}``."""
    if not isinstance(value, dict):
        return "must be a table, e.g. {misses = 3, apart_minutes = 5}"
    unknown = sorted(set(value) - set(DEFAULT_CONFIRM))
    if unknown:
        return f"unknown key(s) {unknown} (known: misses, apart_minutes)"
    misses = value.get("misses", 1)
    if isinstance(misses, bool) or not isinstance(misses, int) or misses < 1:
        return f"misses must be a whole number of at least 1 (got {misses!r})"
    apart = value.get("apart_minutes", 0)
    if isinstance(apart, bool) or not isinstance(apart, int | float) or apart < 0:
        return f"apart_minutes must be a number of at least 0 (got {apart!r})"
    return None


SCHEMA: dict[str, dict[str, Option]] = {
    "recheck": {
        "interval_hours": Option(type=float, default=24.0, check=positive,
                                 help="time between two checks of a case (when no schedule)"),
        "schedule": Option(type=list, default=[], check=check_schedule,
                           help='gaps between checks from the notice on, e.g. ["1h", "4h", '
                                '"12h", "24h"]; the last one repeats; empty = interval_hours'),
        "confirm": Option(type=dict, default=dict(DEFAULT_CONFIRM), check=check_confirm,
                          help="removed only after `misses` checks find it gone, at least "
                               "`apart_minutes` apart"),
        "re_resolve": Option(type=bool, default=True,
                             help="resolve the host again at each check that finds the "
                                  "material online; re-route it when it left the network"),
        "jitter": Option(type=float, default=0.1, check=_fraction,
                         help="spread checks by ± this fraction of the interval"),
        "escalation_interval_hours": Option(type=float, default=24.0, check=positive,
                                            help="time between two escalation steps"),
        "ladder": Option(type=list, default=list(LADDER_STEPS), check=check_ladder,
                         help="escalation steps in order: reminder, upstream, authority"),
        "unreachable_checks": Option(type=int, default=3, check=positive,
                                     help="consecutive unreachable checks that count as "
                                          "removed"),
        "confirm_removal_hours": Option(type=float, default=24.0, check=non_negative,
                                        help="check a removed case once more after this "
                                             "before closing it; 0 = close at once"),
        # one per perceptual hash type: phash_radius, pdq_radius
        **{f"{t.name}_radius": Option(type=int, default=t.default_radius, check=non_negative,
                                      help=f"{t.label} Hamming radius of the same content")
           for t in PERCEPTUAL_TYPES},
        "max_media_per_page": Option(type=int, default=50, check=positive,
                                     help="media looked at on a page when an item moved"),
        "per_host_concurrency": Option(type=int, default=2, check=positive,
                                       help="cases of one host checked at the same time"),
    },
}


@dataclass(frozen=True, kw_only=True)
class RecheckSettings:
    """``[recheck]`` configuration."""

    interval_hours: float = 24.0
    jitter: float = 0.1
    escalation_interval_hours: float = 24.0
    ladder: tuple[str, ...] = LADDER_STEPS
    unreachable_checks: int = 3
    confirm_removal_hours: float = 24.0
    #: Hamming radius per perceptual hash type (``<name>_radius`` in the configuration).
    radii: Mapping[str, int] = field(default_factory=default_radii)
    max_media_per_page: int = 50
    per_host_concurrency: int = 2
    #: ``[recheck] schedule`` in hours (empty: ``interval_hours`` after every check).
    schedule_hours: tuple[float, ...] = ()
    confirm_misses: int = 1
    confirm_apart_minutes: float = 5.0
    re_resolve: bool = True

    def gap_hours(self, checks: int) -> float:
        """Hours from check number ``checks`` (1 = the first) to the next one: the schedule's
        step ``checks`` (its step 0 is notice → first check), the last step repeating."""
        if self.schedule_hours:
            return self.schedule_hours[min(checks, len(self.schedule_hours) - 1)]
        return self.interval_hours

    @classmethod
    def from_config(cls, config: Any) -> RecheckSettings:
        """Settings from a validated ``engine.config.Config`` (defaults where absent)."""
        sect = dict(config.section(PLUGIN))
        if "ladder" in sect:
            sect["ladder"] = tuple(sect["ladder"])
        radii = default_radii()
        for name in radii:
            if sect.get(f"{name}_radius") is not None:
                radii[name] = sect[f"{name}_radius"]
        schedule = tuple(parse_duration(step).total_seconds() / 3600
                         for step in sect.pop("schedule", None) or ())
        confirm = {**DEFAULT_CONFIRM, **(sect.pop("confirm", None) or {})}
        known = set(cls.__dataclass_fields__) - {"radii"}
        return cls(radii=radii, schedule_hours=schedule, confirm_misses=int(confirm["misses"]),
                   confirm_apart_minutes=float(confirm["apart_minutes"]),
                   **{k: v for k, v in sect.items() if k in known and v is not None})


@dataclass
class SharedAnswers:
    """A hook's answer per host, shared by the cases of one host for ``LOCATE_CACHE_SECONDS``
    (a sweep checks many cases of one host within seconds: one answer serves them all), with
    one lookup in flight per host (the others wait for it rather than ask themselves)."""

    answers: dict[str, tuple[float, Any]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def get(self, key: str, hook: str, **kwargs: Any) -> Any:
        """The answer of ``hook`` for host ``key`` (called with ``kwargs``, incl. ``ctx``)."""
        async with self.locks.setdefault(key, asyncio.Lock()):
            hit = self.answers.get(key)
            if hit is not None and Clock.monotonic() - hit[0] < LOCATE_CACHE_SECONDS:
                return hit[1]
            answer, _plugin = await call_first(kwargs["ctx"].pm, hook, **kwargs)
            self.answers[key] = (Clock.monotonic(), answer)
            return answer


@dataclass
class _RunState:
    settings: RecheckSettings
    counts: Counter[str] = field(default_factory=Counter)
    hosts: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    authority: tuple[str, frozenset[str], dict[str, tuple[str | None, str]]] | None = None
    seen: dict[str, set[str]] = field(default_factory=dict)
    located: SharedAnswers = field(default_factory=SharedAnswers)  # DNS per host
    reresolved: SharedAnswers = field(default_factory=SharedAnswers)  # ntd_resolve

    def count(self, outcome: str, case_id: str) -> None:
        """Count ``case_id`` once under ``outcome`` however often a sweep checks it (a removal
        and its confirmation check may both fall due in one sweep)."""
        cases = self.seen.setdefault(outcome, set())
        if case_id not in cases:
            cases.add(case_id)
            self.counts[outcome] += 1


def run_state(ctx: StageContext) -> _RunState:
    """This run's settings, outcome counters and per-host gates (created on first use)."""
    state = ctx.state.get(PLUGIN)
    if state is None:
        state = ctx.state[PLUGIN] = _RunState(RecheckSettings.from_config(ctx.config))
    return state


def removal_confirmable() -> bool:
    """Whether the engine's recheck stage consumes ``removed`` (needed for a confirmation)."""

    stage = next((s for s in pipeline.STAGES if s.name == PLUGIN), None)
    return stage is not None and "removed" in stage.consumes


# -- comparing content -------------------------------------------------------------------------
def same_content(expected: Mapping[str, Any], got: Mapping[str, Any], *,
                 radii: Mapping[str, int] | None = None) -> bool:
    """True when ``got`` is the same material as ``expected``: SHA-256, else a perceptual hash
    within its radius (``radii`` by hash type; default: the types' default radii)."""
    sha = SHA256.name
    if expected.get(sha) and expected.get(sha) == got.get(sha):
        return True
    for kind in PERCEPTUAL_TYPES:
        a, b = expected.get(kind.name), got.get(kind.name)
        if not (a and b):
            continue
        try:
            if kind.matches(str(a), str(b), (radii or {}).get(kind.name)):
                return True
        except ValueError:
            continue  # a malformed stored hash is no evidence of the same content
    return False


@dataclass(frozen=True, kw_only=True)
class Observation:
    """What one URL served at this check (never the bytes)."""

    status: int | None = None
    error: str | None = None
    content_type: str | None = None
    hashes: dict[str, Any] = field(default_factory=dict)
    media: tuple[str, ...] = ()  # media URLs on an HTML page


class Probe:
    """Fetches of one case's check, each URL at most once; hashing only as far as needed."""

    def __init__(self, ctx: StageContext, settings: RecheckSettings,
                 expected: list[Mapping[str, Any]]):
        self.ctx = ctx
        self.settings = settings
        self.expected_sha = {e.get(SHA256.name) for e in expected if e.get(SHA256.name)}
        self.cache: dict[str, Observation] = {}
        self.fetches = 0

    async def observe(self, url: str, *, page: bool = False) -> Observation:
        """Fetch ``url`` (cached per check); HTML pages list their media when ``page``."""
        if url in self.cache:
            return self.cache[url]
        self.fetches += 1
        try:
            resp = await self.ctx.fetcher.fetch(url)
        except FetchError as exc:
            obs = Observation(error=exc.reason or "error")
            self.cache[url] = obs
            return obs
        hashes: dict[str, Any] = {}
        media: tuple[str, ...] = ()
        if 200 <= resp.status < 300:
            sha = SHA256.compute(resp.body)
            hashes = {SHA256.name: sha}
            # Perceptual hashes only when the bytes differ from every expected item: a still-
            # online copy is recognised by SHA-256 without decoding the image.
            if resp.content_type in IMAGE_TYPES and sha not in self.expected_sha:
                try:
                    hashes = await self.ctx.run_cpu(
                        hash_bytes, resp.body, resp.content_type,
                        timeout=self.ctx.config.get("fetch", "hash_seconds", 30.0))
                except WorkerError:  # stopped for time or memory: compare by SHA-256 alone
                    pass
                hashes.pop("error", None)
            elif page and resp.content_type == "text/html":
                # (scanned in the CPU pool under the fetch stage's parse budget, as at first)
                # deferred: pulls in lxml and tldextract, loaded on first use
                from engine.media.html_media import scan_page_off_loop

                scan = await scan_page_off_loop(self.ctx, resp.body, resp.final_url or url,
                                                limit=self.settings.max_media_per_page)
                media = tuple(scan.urls)
        obs = Observation(status=resp.status, content_type=resp.content_type, hashes=hashes,
                          media=media)
        self.cache[url] = obs  # resp.body is dropped here: bytes are never kept
        return obs


def classify(obs: Observation, item: Item, settings: RecheckSettings) -> tuple[str, str]:
    """``(state, reason)`` of one item from what its URL served: online/removed/unreachable."""
    if obs.error is not None:
        return ("removed", obs.error) if obs.error == "dns_nxdomain" else \
            ("unreachable", obs.error)
    assert obs.status is not None
    if obs.status in GONE_STATUSES:
        return "removed", f"http_{obs.status}"
    if 200 <= obs.status < 300:
        if not item.hashes:
            return "online", "served (no hashes to compare)"
        if same_content(item.hashes, obs.hashes, radii=settings.radii):
            return "online", "same content"
        if obs.content_type == "text/html" and item.content_type != "text/html":
            return "removed", "soft_404"
        return "removed", "replaced"
    return "unreachable", f"http_{obs.status}"


def confirmed_items(case: Case) -> list[Item]:
    """The items whose removal counts: matched ones, or all media after an analyst verdict."""
    matched = [i for i in case.items if any(not m.get("negative") for m in i.matches)]
    if matched:
        return matched
    if case.data.get("assessment"):
        media = [i for i in case.items if i.kind == "media"]
        if media:
            return media
    page = [i for i in case.items if i.kind == "url"]
    return page or [Item(url=case.canonical_url, kind="url")]


async def check_items(case: Case, items: list[Item], ctx: StageContext,
                      settings: RecheckSettings) -> tuple[dict[str, dict[str, Any]], Probe]:
    """Observe every confirmed item once: ``{url: {"state", "reason", ...}}``."""
    probe = Probe(ctx, settings, [i.hashes for i in items])
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        own = await probe.observe(item.url, page=item.url == case.canonical_url)
        state, reason = classify(own, item, settings)
        result: dict[str, Any] = {"state": state, "reason": reason, "status": own.status}
        if state != "online" and item.kind == "media":
            page = await probe.observe(case.canonical_url, page=True)
            result["page_status"] = page.status if page.error is None else page.error
            for url in page.media:
                if url == item.url:
                    continue
                other = await probe.observe(url)
                if other.status is not None and 200 <= other.status < 300 and same_content(
                        item.hashes, other.hashes, radii=settings.radii):
                    result.update(state="online", reason="found on the page", found_at=url)
                    break
            else:
                if page.status is not None and 200 <= page.status < 300:
                    result["page_carries_media"] = False
        out[item.url] = result
    return out, probe


# -- time and schedule -------------------------------------------------------------------------
def _seconds(later: datetime, earlier: str | datetime | None) -> int | None:
    if earlier is None:
        return None
    start = parse(earlier) if isinstance(earlier, str) else earlier
    return max(0, int((later - start).total_seconds()))


def jittered_hours(case_id: str, checks: int, hours: float, jitter: float) -> float:
    """``hours`` spread by ± ``jitter`` — deterministic per case and check (reproducible)."""
    if not jitter:
        return hours
    digest = hashlib.blake2b(f"{case_id}:{checks}".encode(), digest_size=8).digest()
    unit = int.from_bytes(digest, "big") / 2 ** 64 * 2 - 1  # in [-1, 1)
    return hours * (1 + jitter * unit)


def _deadline_hours(routes: list[dict[str, Any]]) -> float | None:
    hours = [r["deadline_hours"] for r in routes
             if isinstance(r.get("deadline_hours"), int | float) and r["deadline_hours"] > 0]
    return float(min(hours)) if hours else None


async def _notice_times(case: Case, ctx: StageContext, mon: dict[str, Any]) -> None:
    """Fill ``noticed_at`` and ``first_notice_at`` (IWF clock) from the case's trail.

    The first notice is the earliest ``notice_sent`` event; until one exists the ``noticed``
    event (notices queued) stands in and the trail is read again at the next check.
    """
    if mon.get("first_notice_source") == "notice_sent" and mon.get("noticed_at"):
        return
    events = await ctx.store.events(case.id)
    noticed = [e.at for e in events if e.action == "noticed"]
    sent = [e.at for e in events if e.action == "notice_sent"]
    mon["noticed_at"] = min(noticed) if noticed else mon.get("noticed_at") or case.updated_at
    if sent:
        mon["first_notice_at"], mon["first_notice_source"] = min(sent), "notice_sent"
    elif noticed:
        mon["first_notice_at"], mon["first_notice_source"] = min(noticed), "noticed"


def _authority_context(ctx: StageContext, state: _RunState
                       ) -> tuple[str, frozenset[str], dict[str, tuple[str | None, str]]]:
    """Home country, member countries and ``[routing.contacts]`` (from the route plugin)."""
    if state.authority is None:
        home: str = "NL"
        members: frozenset[str] = frozenset()
        contacts: dict[str, tuple[str | None, str]] = {}
        try:

            routing = settings_from_config(ctx.config)
            home, contacts = routing.home_country, dict(routing.contacts)
            path = ctx.config.get("routing", "directory_file") or None
            members = frozenset(load_directory(path).hotlines)
        except Exception as exc:  # routing not installed or misconfigured: police only
            ctx.log.warning("recheck: routing settings unavailable (%s); authority step "
                            "falls back to the home police", exc)
        state.authority = (home, members, contacts)
    return state.authority


def _first_escalation(case: Case, mon: Mapping[str, Any], routes: list[dict[str, Any]],
                      s: RecheckSettings, now_text: str) -> str:
    """When the first ladder step is due: the first check (the deadline, as the notify stage
    schedules it) — with a ``schedule``, checks come sooner, so the route deadline after the
    notice."""
    deadline = _deadline_hours(routes)
    if s.schedule_hours and deadline and mon.get("noticed_at"):
        return fmt(parse(mon["noticed_at"]) + timedelta(hours=deadline))
    return case.retry_at or now_text


# -- escalation hook (optional hookspec ntd_escalate) ------------------------------------------
async def _plugin_step(case: Case, step: Step, level: int, ctx: StageContext) -> Step:
    """Let ``ntd_escalate`` implementations add routes to, or veto kinds of, a step."""
    if not hasattr(ctx.pm.hook, "ntd_escalate"):
        return step

    answers = await call_all(ctx.pm, "ntd_escalate", case=case,
                             step={**step.detail(level), "routes": [dict(r) for r in
                                                                    step.routes]}, ctx=ctx)
    routes = list(step.routes)
    skipped = list(step.skipped)
    for answer, plugin in answers:
        for proposal in answer or ():
            if not isinstance(proposal, Mapping):
                continue
            if proposal.get("veto"):
                kind = proposal.get("recipient_kind")
                dropped = [r for r in routes if r.get("recipient_kind") == kind]
                routes = [r for r in routes if r.get("recipient_kind") != kind]
                skipped += [{"target": r.get("target"), "recipient_kind": kind,
                             "why": f"vetoed by {plugin}"} for r in dropped]
                continue
            more, skip = split_sendable([{**proposal, "decided_by": proposal.get(
                "decided_by") or f"{plugin}:{proposal.get('rule') or 'escalate'}"}])
            routes += more
            skipped += skip
    return Step(name=step.name, routes=routes, skipped=skipped,
                plan_indexes=step.plan_indexes, advances_ladder=step.advances_ladder)


def _outbox(case: Case, step: Step, level: int, ctx: StageContext) -> list[dict[str, Any]]:
    """Outbox actions for a step: the notify plugin's payload plus the escalation marker."""

    prefix = ctx.config.get("notices", "reference_prefix", "NTD") or "NTD"
    return [{"id": new_id("A"), **build_action(case, route, reference_prefix=prefix),
             "escalation": {"level": level, "step": step.name}} for route in step.routes]


# -- moved content -----------------------------------------------------------------------------
BRIEF_KEYS = ("ips", "asn", "network", "org", "country")


def brief(resolution: Mapping[str, Any]) -> dict[str, Any]:
    """Where a resolution places the host (addresses, network, country), for the trail."""
    return {k: resolution.get(k) for k in BRIEF_KEYS}


def left_network(ips: list[str], old: Mapping[str, Any]) -> bool:
    """True when none of ``ips`` is an address or inside the prefix of the noticed resolution
    ``old`` (a candidate move: only a registry lookup can tell the new network)."""
    if set(ips) & {str(ip) for ip in old.get("ips") or ()}:
        return False
    try:
        net = ipaddress.ip_network(str(old.get("network")), strict=False)
    except ValueError:  # no or no usable prefix: the registry lookup decides
        return True
    for ip in ips:
        try:
            if ipaddress.ip_address(ip) in net:
                return False
        except ValueError:
            continue
    return True


def same_network(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Same ASN and prefix (a value missing on either side does not tell them apart)."""
    for key in ("asn", "network"):
        if old.get(key) and new.get(key) and str(old[key]) != str(new[key]):
            return False
    return True


@dataclass(frozen=True, kw_only=True)
class Located:
    """What re-resolving a case's host found: nothing to do, a new resolution, or a move."""

    resolution: dict[str, Any] | None = None  # the new resolution, when there is one
    moved: bool = False
    note: str | None = None  # why nothing changed, for the trail


async def locate(case: Case, ctx: StageContext, state: _RunState) -> Located | None:
    """Resolve the host again; a full re-resolution (``ntd_resolve``) only when its addresses
    left the noticed network. None: nothing to compare or nothing changed."""
    old = case.data.get("resolution")
    if not isinstance(old, Mapping) or not (old.get("ips") or old.get("network")):
        return None
    facts = await state.located.get(case.host, "ntd_host_addresses", host=case.host, ctx=ctx)
    ips = [str(ip) for ip in (facts.get("ips") or () if isinstance(facts, Mapping) else ())]
    if not ips or not left_network(ips, old):
        return None  # no answer (the fetch tells whether it is gone) or still there
    result = await state.reresolved.get(case.host, "ntd_resolve", case=case, ctx=ctx)
    new = result.data.get("resolution") if isinstance(result, StageResult) else None
    if not isinstance(new, dict):
        why = getattr(result, "reason", None) or "no resolve plugin"
        return Located(note=f"addresses {', '.join(ips)} left the noticed network; "
                            f"re-resolution failed ({why})")
    if same_network(old, new):
        return Located(resolution=new, note="addresses changed within the noticed network")
    return Located(resolution=new, moved=True)


def _shifted_plan(plan: list[Any], hours: float) -> list[Any]:
    """A routing plan made at a move: its ``after_hours`` count from the move, while the
    re-check stage counts them from the first notice (the takedown clock)."""
    out = []
    for step in plan:
        if isinstance(step, Mapping) and isinstance(step.get("after_hours"), int | float):
            step = {**step, "after_hours": round(float(step["after_hours"]) + hours, 4)}
        out.append(step)
    return out


async def _move(case: Case, ctx: StageContext, located: Located, mon: dict[str, Any],
                now: datetime, routes: list[dict[str, Any]], s: RecheckSettings
                ) -> tuple[dict[str, Any], dict[str, Any], Step | None, Case]:
    """Record a move and route the new hoster: ``(data, detail, step, moved case)``.

    The old resolution and routes go to ``resolution_history``; routing (``ntd_route``) runs
    on the new resolution; recipients noticed before are not noticed again; the takedown
    clock (``first_notice_at``) is kept and the ladder restarts for the new recipients.
    """
    old = case.data.get("resolution") or {}
    new = located.resolution or {}
    now_text = fmt(now)
    moved = dataclasses.replace(case, data={**case.data, "resolution": new})
    history = [*(case.data.get("resolution_history") or []),
               {"at": now_text, "resolution": old, "routes": routes}]
    data: dict[str, Any] = {"resolution": new, "resolution_history": history}
    detail: dict[str, Any] = {"moved": {"from": brief(old), "to": brief(new)}}
    mon.update(moves=int(mon.get("moves") or 0) + 1, last_move_at=now_text,
               last_outcome="moved")
    answer, _plugin = await call_first(ctx.pm, "ntd_route", case=moved, ctx=ctx)
    if not isinstance(answer, StageResult) or answer.state != "routed":
        why = getattr(answer, "reason", None) or "no route plugin"
        mon["move_unrouted"] = why
        detail["routing"] = f"not routed ({why}): the old routes stay; route it by hand"
        return data, detail, None, moved
    mon.pop("move_unrouted", None)
    new_routes = [r for r in answer.data.get("routes") or [] if isinstance(r, dict)]
    before = {(r.get("recipient_kind"), str(r.get("target") or "").lower()) for r in routes}
    fresh = [r for r in new_routes
             if (r.get("recipient_kind"), str(r.get("target") or "").lower()) not in before]
    sendable, skipped = split_sendable(fresh)
    skipped += [{"target": r.get("target"), "recipient_kind": r.get("recipient_kind"),
                 "why": "noticed before the move"} for r in new_routes if r not in fresh]
    noticed_at = parse(mon.get("noticed_at") or case.updated_at)
    elapsed = max(0.0, (now - noticed_at).total_seconds() / 3600)
    data.update(routes=new_routes,
                escalation=_shifted_plan(list(answer.data.get("escalation") or []), elapsed))
    deadline = _deadline_hours(new_routes) or s.escalation_interval_hours
    mon.update(ladder_position=0, plan_done=[],
               next_escalation_at=fmt(now + timedelta(hours=deadline)))
    detail["routing"] = answer.detail.get("policy") if isinstance(answer.detail, dict) else None
    return data, detail, Step(name="moved", routes=sendable, skipped=skipped,
                              advances_ladder=False), moved


# -- the stage ---------------------------------------------------------------------------------


def _result(mon: dict[str, Any], state: str, action: str, retry_at: datetime | None,
            detail: dict[str, Any], *, reason: str | None = None,
            outbox: list[dict[str, Any]] | None = None,
            data: dict[str, Any] | None = None) -> StageResult:
    mon["next_check_at"] = fmt(retry_at) if retry_at is not None else None
    detail["next_check_at"] = mon["next_check_at"]
    return StageResult(state=state, action=action, reason=reason, detail=detail,
                       data={**(data or {}), "monitoring": mon}, retry_at=retry_at,
                       outbox=outbox or [])


async def recheck_case(case: Case, ctx: StageContext) -> StageResult:
    """Check one due case and return its next state (the ``ntd_recheck`` hook)."""
    state = run_state(ctx)
    s = state.settings
    now = ctx.clock.now()
    now_text = fmt(now)
    mon: dict[str, Any] = dict(case.data.get("monitoring") or {})
    items_mon: dict[str, dict[str, Any]] = {k: dict(v) for k, v in
                                            (mon.get("items") or {}).items()}
    await _notice_times(case, ctx, mon)
    items = confirmed_items(case)
    gate = state.hosts.setdefault(case.host, asyncio.Semaphore(s.per_host_concurrency))
    async with gate:  # politeness: few checks of one host at a time
        seen, probe = await check_items(case, items, ctx, s)

    removed_before = case.state == "removed"
    for item in items:
        obs = seen[item.url]
        rec = items_mon.setdefault(item.url, {"kind": item.kind, "removed_at": None,
                                              "unreachable_checks": 0})
        rec.update({"checked_at": now_text, "reason": obs["reason"], "status": obs["status"]})
        for key in ("found_at", "page_status", "page_carries_media"):
            rec.pop(key, None)
            if key in obs:
                rec[key] = obs[key]
        if obs["state"] == "online":
            if rec.get("state") == "removed":
                rec["reappeared_at"] = now_text
            rec.update(state="online", last_online_at=now_text, removed_at=None,
                       unreachable_checks=0, seconds_to_removal_from_report=None,
                       seconds_to_removal_from_notice=None)
        elif rec.get("state") == "removed":
            pass  # still not online: the first removal time stands
        elif obs["state"] == "removed" or (
                rec.get("unreachable_checks", 0) + 1 >= s.unreachable_checks):
            reason = obs["reason"] if obs["state"] == "removed" else \
                f"unreachable ({obs['reason']}) on {rec.get('unreachable_checks', 0) + 1} checks"
            rec.update(state="removed", reason=reason, removed_at=now_text,
                       seconds_to_removal_from_report=_seconds(now, case.created_at),
                       seconds_to_removal_from_notice=_seconds(now, mon.get("first_notice_at")))
        else:
            rec.update(state="unreachable",
                       unreachable_checks=rec.get("unreachable_checks", 0) + 1)

    states = [items_mon[i.url]["state"] for i in items]
    checks = int(mon.get("checks") or 0) + 1
    mon.update(checks=checks, last_check_at=now_text, items=items_mon,
               escalation_level=int(mon.get("escalation_level") or 0))
    mon.setdefault("first_check_at", now_text)
    mon.setdefault("steps", [])
    routes = [r for r in case.data.get("routes") or [] if isinstance(r, dict)]
    detail: dict[str, Any] = {"check": checks, "fetches": probe.fetches,
                              "items": {u: {"state": r["state"], "reason": r.get("reason")}
                                        for u, r in items_mon.items() if u in seen}}

    if all(st == "removed" for st in states):
        if not removed_before and s.confirm_misses > 1:
            # Removed only after N checks found it gone, at least M minutes apart (a check
            # sooner than that after the last miss does not count).
            misses = list(mon.get("misses") or [])
            apart = timedelta(minutes=s.confirm_apart_minutes)
            if not misses or now - parse(misses[-1]) >= apart:
                misses.append(now_text)
            mon["misses"] = misses
            if len(misses) < s.confirm_misses:
                mon["last_outcome"] = "missing"
                state.count("missing", case.id)
                detail.update(misses=len(misses), misses_needed=s.confirm_misses)
                return _result(mon, "monitoring", "missing", max(now, parse(misses[-1])
                                                                  + apart), detail)
        removed_at = max(items_mon[i.url]["removed_at"] for i in items)
        mon.update(removed_at=removed_at, last_outcome="removed",
                   seconds_to_removal_from_report=_seconds(parse(removed_at), case.created_at),
                   seconds_to_removal_from_notice=_seconds(parse(removed_at),
                                                           mon.get("first_notice_at")))
        state.count("removed", case.id)
        detail.update(removed_at=removed_at,
                      seconds_to_removal_from_report=mon["seconds_to_removal_from_report"],
                      seconds_to_removal_from_notice=mon["seconds_to_removal_from_notice"])
        if removed_before:
            return _result(mon, "closed", "closed", None, detail,
                           reason="removal confirmed")
        if s.confirm_removal_hours > 0 and removal_confirmable():
            retry = now + timedelta(hours=s.confirm_removal_hours)
            return _result(mon, "removed", "removed", retry, detail)
        return _result(mon, "closed", "removed", None, detail)

    mon.update(removed_at=None, seconds_to_removal_from_report=None,
               seconds_to_removal_from_notice=None, misses=[])
    interval = jittered_hours(case.id, checks, s.gap_hours(checks), s.jitter)
    next_check = now + timedelta(hours=interval)
    if "online" not in states:
        mon["last_outcome"] = "unreachable"
        state.count("unreachable", case.id)
        return _result(mon, "monitoring", "unreachable", next_check, detail)

    state.count("still_online", case.id)
    located = await locate(case, ctx, state) if s.re_resolve and not removed_before else None
    if located is not None and located.note:
        detail["location"] = located.note
    if located is not None and located.moved:
        data, more, move_step, moved = await _move(case, ctx, located, mon, now, routes, s)
        detail.update(more)
        outbox: list[dict[str, Any]] = []
        if move_step is not None:
            level = mon["escalation_level"]
            move_step = await _plugin_step(moved, move_step, level, ctx)
            mon["steps"] = [*mon["steps"], {**move_step.detail(level), "at": now_text}]
            detail["step"] = move_step.detail(level)
            outbox = _outbox(moved, move_step, level, ctx)
        state.count("moved", case.id)
        return _result(mon, "monitoring", "moved", next_check, detail, outbox=outbox,
                       data=data)
    if located is not None and located.resolution is not None:
        extra_data: dict[str, Any] = {"resolution": located.resolution}
    else:
        extra_data = {}
    if removed_before:
        # Back after removal: the original recipients hear again and the ladder restarts.
        step = await _plugin_step(case, reappeared_step(routes), 0, ctx)
        deadline = _deadline_hours(routes) or s.interval_hours
        mon.update(last_outcome="reappeared", escalation_level=0, ladder_position=0,
                   reappearances=int(mon.get("reappearances") or 0) + 1,
                   next_escalation_at=fmt(now + timedelta(hours=deadline)))
        mon["steps"] = [*mon["steps"], {**step.detail(0), "at": now_text}]
        state.count("reappeared", case.id)
        detail["step"] = step.detail(0)
        return _result(mon, "reappeared", "reappeared", now + timedelta(hours=deadline),
                       detail, outbox=_outbox(case, step, 0, ctx), data=extra_data)

    mon["last_outcome"] = "online"
    due_at = mon.get("next_escalation_at") or _first_escalation(case, mon, routes, s, now_text)
    ladder_due = now >= parse(due_at)
    home, members, contacts = _authority_context(ctx, state)
    noticed_at = parse(mon.get("noticed_at") or case.updated_at)
    position = int(mon.get("ladder_position") or 0)
    found = next_step(ladder=s.ladder, position=position if ladder_due else len(s.ladder),
                      plan=case.data.get("escalation") or [],
                      plan_done=mon.get("plan_done") or [], noticed_at=noticed_at, now=now,
                      routes=routes, resolution=case.data.get("resolution"),
                      home_country=home, member_countries=members, contacts=contacts,
                      deadline_hours=int(_deadline_hours(routes) or 0) or None)
    if found is None:
        if ladder_due and position >= len(s.ladder):
            detail["ladder"] = "exhausted"
        return _result(mon, "monitoring", "still_online", next_check, detail, data=extra_data)
    level = mon["escalation_level"] + 1
    step = await _plugin_step(case, found, level, ctx)
    record = {**step.detail(level), "at": now_text}
    mon.update(escalation_level=level, steps=[*mon["steps"], record])
    if step.advances_ladder:
        mon.update(ladder_position=position + 1,
                   next_escalation_at=fmt(now + timedelta(hours=s.escalation_interval_hours)))
    if step.plan_indexes:
        mon["plan_done"] = sorted({*(mon.get("plan_done") or []), *step.plan_indexes})
    state.count("escalated", case.id)
    detail["step"] = step.detail(level)
    return _result(mon, "escalated", f"escalated_{step.name}", next_check, detail,
                   outbox=_outbox(case, step, level, ctx), data=extra_data)
