"""The public plugin API: the one module a partner plugin imports.

Everything a plugin needs is here — the hook marker, the records a hook receives and returns,
the run context, configuration options and their checks, the errors to raise — plus a
``TypedDict`` for every contract shape the hooks pass around (a resolution, a route, a contact,
a jurisdiction proposal, an escalation step, ...)::

    from engine.api import JurisdictionProposal, Resolution, StageContext, hookimpl

    @hookimpl
    def ntd_jurisdiction_actions(case, resolution: Resolution,
                                 ctx: StageContext) -> list[JurisdictionProposal] | None:
        ...

The shapes are those the built-in stages produce and consume (``docs/resolution.md``,
``docs/routing.md``, ``docs/rechecks.md``, ``docs/notices.md``). They are plain ``dict`` at run
time: the ``TypedDict`` classes only tell a type checker (and a reader) which keys exist. A key
marked ``NotRequired`` may be absent; every other key is always present in what ntd hands a
plugin, though its value may be ``None`` where the type says so. Plugins should still read
optional facts with ``.get`` — a resolution recorded by an older ntd may lack newer keys.

The hash types (``HashType``, ``HASH_TYPES``, ``hash_type``: ``docs/hash-types.md``) let a
plugin that brings hashes — a hash source, an intake that carries them — check and compare them
the way ntd does: ``hash_type("pdq").validate(value)`` normalises or raises ``ValueError``.

This module sits on top of the engine: it imports ``engine.models``, ``engine.context``,
``engine.config``, ``engine.errors`` and ``engine.media.signals``, and none of those (nor
``engine.store``) imports it, so no import cycle runs through it. It never imports
``plugins``: the built-in stages are plugins like any other. Tests of a plugin use
``engine.testing``.
"""

# No ``from __future__ import annotations`` here, unlike the rest of ntd: on Python 3.11 a
# TypedDict whose annotations are strings reports every key as required at run time
# (``__required_keys__`` cannot see ``NotRequired`` inside a string), and plugins and ntd's
# tests read those sets. Every name used below is defined before it is used.
from collections.abc import Awaitable
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict, TypeVar, get_args

from engine import hookimpl
from engine.clock import Clock
from engine.config import Config, Option, non_negative, one_of, positive, secret_from_env
from engine.context import StageContext
from engine.delivery import DeliveryOutcome, NoticeChannel
from engine.errors import (
    ConfigError,
    DeliveryError,
    FetchError,
    HashlistError,
    InputError,
    NtdError,
    PluginError,
    ResolutionError,
    RoutingError,
    StageError,
    StorageError,
    WorkerError,
)
from engine.hash_sources import HashSource, ListChanges, RemoteMatch, SourceEntry
from engine.intake_sources import (
    MEDIA_SCHEME,
    HandInResult,
    IncomingReport,
    IntakeDesk,
    IntakeSource,
    PollingSource,
)
from engine.media.signals import HASH_TYPES, HashType, hash_type
from engine.models import CLOSED_STATES, STATES, Case, Item, StageResult
from engine.routes import UNKNOWN_COUNTRY, is_placeholder

T = TypeVar("T")

#: A hook may return a value or an awaitable of it; the engine awaits what it gets.
MaybeAwaitable: TypeAlias = T | Awaitable[T]

#: What ``ntd_config_schema`` returns: ``{"section": {"key": Option(...)}}``.
ConfigSchema: TypeAlias = dict[str, dict[str, Option]]

# --------------------------------------------------------------------------------------------
# Vocabularies (the allowed values of contract keys)
# --------------------------------------------------------------------------------------------

#: What a route asks of its recipient: a takedown notice (to a provider), a forward (to a
#: partner hotline) or a report (to police / Interpol).
Action: TypeAlias = Literal["notice", "forward", "report"]
#: Who a route goes to.
RecipientKind: TypeAlias = Literal["hosting", "registrar", "cdn", "platform", "hotline",
                                   "police", "interpol"]
#: How a route is delivered (``iccam``: a forward through ICCAM, by country).
RouteChannel: TypeAlias = Literal["email", "api", "iccam", "form"]
#: Whose abuse desk a contact is.
ContactScope: TypeAlias = Literal["hosting", "registrar", "cdn", "platform", "upstream"]
#: How a contact is reached.
ContactChannel: TypeAlias = Literal["email", "form", "api"]
#: The steps of the re-check stage's escalation (``deferred``: a step of the routing plan).
EscalationStepName: TypeAlias = Literal["deferred", "reminder", "upstream", "authority",
                                        "reappeared", "moved"]
#: An analyst's verdict (``ntd verdict``).
Verdict: TypeAlias = Literal["illegal", "not_illegal", "ignore"]

ACTIONS: tuple[str, ...] = get_args(Action)
RECIPIENT_KINDS: tuple[str, ...] = get_args(RecipientKind)
ROUTE_CHANNELS: tuple[str, ...] = get_args(RouteChannel)
CONTACT_SCOPES: tuple[str, ...] = get_args(ContactScope)
CONTACT_CHANNELS: tuple[str, ...] = get_args(ContactChannel)
ESCALATION_STEPS: tuple[str, ...] = get_args(EscalationStepName)

# --------------------------------------------------------------------------------------------
# Resolution: who hosts a URL, who registered its domain, whom to notify (docs/resolution.md)
# --------------------------------------------------------------------------------------------


class ContactCandidate(TypedDict):
    """An abuse contact a plugin offers through ``ntd_contact_sources``.

    The resolve stage validates it (an unusable one is dropped with a note), clamps
    ``confidence`` to 0–1 (0.5 when absent) and ranks it with the built-in sources.
    """

    scope: ContactScope
    channel: ContactChannel
    address: str  # an e-mail address, or an http(s) URL for ``form`` / ``api``
    source: NotRequired[str]  # your source's name (default ``plugin``; never ``book``)
    confidence: NotRequired[float]
    note: NotRequired[str]


class Contact(TypedDict):
    """A ranked abuse contact in a resolution (``resolution["contacts"]``, best first)."""

    scope: ContactScope
    channel: ContactChannel
    address: str
    source: str  # book, rdap, rules, guess, analyst, or a plugin's source name
    confidence: float  # 0–1, halved per recorded delivery failure
    note: NotRequired[str]
    failures: NotRequired[int]  # recorded delivery failures of the address
    plugin: NotRequired[str]  # the plugin that supplied it (plugin sources)


class Registrar(TypedDict):
    """The registrar of a case's domain, from domain RDAP (``resolution["registrar"]``)."""

    name: str | None
    iana_id: str | None
    abuse_email: str | None
    abuse_phone: str | None
    registry: str | None  # the RDAP base URL that answered
    created: str | None  # registration time (RDAP event ``registration``)
    status: list[str]
    domain: str | None


class DnsFacts(TypedDict):
    """The DNS part of a resolution."""

    host: str
    ips: list[str]  # A/AAAA addresses; the first one is looked up in RDAP
    cnames: list[str]
    dns_outcome: str  # ok, nxdomain, servfail, timeout, no_answer
    dns_source: str  # dns, static (``[resolve.hosts]``), literal (an IP host)


class NetworkFacts(TypedDict):
    """The network part of a resolution: who holds the first IP address (IP RDAP)."""

    asn: int | None
    network: str | None  # the CIDR of the range holding the first address
    network_name: str | None
    network_handle: str | None
    org: str | None
    country: str | None  # the network's country: what routing uses (ISO 3166 alpha-2)
    abuse_phones: list[str]
    rdap_source: str | None


class IntermediaryFacts(TypedDict):
    """The CDN in front of a site and the shared-hosting platform it lives on, if any."""

    cdn: str | None  # the CDN's name, e.g. "Cloudflare"
    platform: str | None  # the platform's name, e.g. "Blogger"
    platform_rule: str | None  # the host-name rule that matched the platform


class Origin(TypedDict):
    """The origin host behind a CDN, once the CDN or an analyst reveals it (``ntd origin``).

    Routing then routes the origin's hosting by ``country`` with these contacts; the CDN is
    still noticed and the domain's registrar contacts stay valid.
    """

    country: str
    contacts: list[Contact]
    countries: NotRequired[list[str]]
    ips: NotRequired[list[str]]
    asn: NotRequired[int | None]
    at: NotRequired[str]  # when it was recorded


class Resolution(DnsFacts, NetworkFacts, IntermediaryFacts):
    """A case's ``resolution`` (``case.data["resolution"]``, ``ntd resolve URL --json``).

    Written by the resolve stage; read by routing (``ntd_jurisdiction_actions``), contact
    sources (the resolution so far), notices and re-checks.
    """

    domain: str | None  # the registrable domain (None for an IP host)
    registrar: Registrar | None  # None when the lookup failed (a line in ``notes`` says why)
    contacts: list[Contact]  # ranked, best first
    notes: list[str]
    resolved_at: str
    countries: NotRequired[list[str]]  # countries of all hosting IPs (a conflict if several)
    origin: NotRequired[Origin]


# --------------------------------------------------------------------------------------------
# Routing: who must act (docs/routing.md)
# --------------------------------------------------------------------------------------------


class Route(TypedDict):
    """One route of a case (``case.data["routes"]``, ``ntd route CASE --json``).

    Routes carry exactly these keys; ``target`` is symbolic (``police:NL``, ``hotline:XX``,
    ``interpol``) when no contact is configured, and such a target is never sent.
    """

    action: Action
    recipient_kind: RecipientKind
    target: str  # address, form/API URL, ``iccam:XX``, or a symbolic target
    channel: RouteChannel
    country: str  # ISO 3166 alpha-2 of the route; ``ZZ`` when unknown
    deadline_hours: int | None  # takedown deadline for the re-check stage; None for reports
    decided_by: str  # ``<plugin>:<rule>`` (``analyst:<name>`` after ``ntd route --to``)
    reason: str


class JurisdictionProposal(TypedDict):
    """A proposal returned by ``ntd_jurisdiction_actions`` (a partner hotline's country rule).

    ``action``, ``target``, ``channel`` and ``country`` are required unless the proposal is a
    pure veto (``veto`` without ``action``). A malformed proposal is a ``RoutingError`` naming
    the plugin and rule: it is never skipped silently.
    """

    rule: str  # letters, digits, ``.``, ``_``, ``-``; recorded as ``<plugin>:<rule>``
    recipient_kind: RecipientKind
    action: NotRequired[Action]
    target: NotRequired[str]
    channel: NotRequired[RouteChannel]
    country: NotRequired[str]
    deadline_hours: NotRequired[int | None]
    reason: NotRequired[str]  # default: the rule name
    applies_to: NotRequired[str | list[str]]  # country code(s) the rule is specific to
    priority: NotRequired[int]  # higher wins within a precedence tier (default 0)
    veto: NotRequired[bool]  # removes other plugins' proposals of this recipient kind
    after_hours: NotRequired[int | None]  # defer: joins the escalation plan


class PlanStep(TypedDict):
    """One step of a case's escalation plan (``case.data["escalation"]``), written by routing.

    Either ``{"after_hours": N, "when": "still_online", "route": Route}`` — send ``route`` if the
    material is still online N hours after the notices — or ``{"when": "origin_known", "then":
    "reroute", "reason": ...}`` — route a CDN case again once its origin is known.
    """

    when: Literal["still_online", "origin_known"]
    after_hours: NotRequired[int]
    route: NotRequired[Route]
    then: NotRequired[Literal["reroute"]]
    reason: NotRequired[str]


class RouteDecision(TypedDict):
    """What the route stage stores (``StageResult.data`` of ``ntd_route``)."""

    routes: list[Route]
    escalation: NotRequired[list[PlanStep]]


# --------------------------------------------------------------------------------------------
# Notices and re-checks (docs/notices.md, docs/rechecks.md)
# --------------------------------------------------------------------------------------------


class NoticeEntry(TypedDict):
    """One URL a notice lists: the reported URL or a matched media URL."""

    url: str
    hashes: dict[str, str]  # by hash type name (``HASH_TYPES``): those known
    classification: str  # e.g. INHOPE ``baseline`` / ``national``
    detection_method: str  # ``hash_match`` or ``manual_review``
    first_seen: str
    host: str
    ip: str | None


class EscalationMarker(TypedDict):
    """Marks an outbox action queued by an escalation step."""

    level: int
    step: EscalationStepName


class NoticeAction(TypedDict):
    """One outbox action (``StageResult.outbox``): a route of a case, as a notice payload.

    Allow-listed content only: never reporter data, never media. The sender aggregates
    actions per recipient into notices.
    """

    id: str
    kind: Literal["notice"]
    version: int
    case_id: str
    reference: str  # ``<reference_prefix>-<case id>``
    action: Action
    recipient_kind: RecipientKind
    recipient: str  # the route's target
    channel: str
    country: str | None
    language: str  # ``nl`` or ``en``
    deadline_hours: int | None
    decided_by: str | None
    domain: str
    asn: int | None
    hosting_country: str | None
    registrar: str | None
    entries: list[NoticeEntry]
    url_count: int
    escalation: NotRequired[EscalationMarker]


class StepTarget(TypedDict):
    """A recipient of an escalation step, as the trail records it."""

    recipient_kind: str | None
    target: str | None
    channel: str | None


class SkippedTarget(TypedDict):
    """A recipient an escalation step could not send to, and why."""

    target: str | None
    recipient_kind: str | None
    why: str


class EscalationStep(TypedDict):
    """The step ``ntd_escalate`` may adjust before the re-check stage queues it."""

    level: int  # 1 for the first step taken; 0 for a reappearance
    step: EscalationStepName
    targets: list[StepTarget]
    skipped: list[SkippedTarget]
    routes: list[Route]  # what is about to be sent


class EscalationRoute(TypedDict):
    """A route an ``ntd_escalate`` implementation adds to a step.

    Without ``decided_by`` the route is recorded as ``<plugin>:<rule>`` (``rule`` defaulting
    to ``escalate``). Placeholder targets are skipped, not sent.
    """

    action: Action
    recipient_kind: RecipientKind
    target: str
    channel: RouteChannel
    country: NotRequired[str]
    deadline_hours: NotRequired[int | None]
    reason: NotRequired[str]
    decided_by: NotRequired[str]
    rule: NotRequired[str]


class EscalationVeto(TypedDict):
    """An ``ntd_escalate`` answer that drops every route of a recipient kind from the step."""

    veto: Literal[True]
    recipient_kind: RecipientKind


#: One element of an ``ntd_escalate`` answer.
EscalationAnswer: TypeAlias = EscalationRoute | EscalationVeto


class MonitoredItem(TypedDict, total=False):
    """The re-check state of one confirmed item (``monitoring["items"][url]``)."""

    kind: str
    state: Literal["online", "removed", "unreachable"]
    reason: str
    status: int | None
    checked_at: str
    last_online_at: str | None
    removed_at: str | None
    unreachable_checks: int
    seconds_to_removal_from_report: int | None
    seconds_to_removal_from_notice: int | None
    found_at: str  # where a moved media item was found on the page
    page_status: int | None
    page_carries_media: bool
    reappeared_at: str


class MonitoringStep(TypedDict):
    """An escalation step taken, as ``monitoring["steps"]`` records it."""

    level: int
    step: EscalationStepName
    at: str
    targets: list[StepTarget]
    skipped: list[SkippedTarget]


class Monitoring(TypedDict, total=False):
    """A case's ``monitoring`` field, written by the re-check stage.

    The first six keys are the contract; the others are the stage's own bookkeeping.
    """

    next_check_at: str | None
    checks: int
    removed_at: str | None
    seconds_to_removal_from_report: int | None
    seconds_to_removal_from_notice: int | None
    escalation_level: int
    first_check_at: str
    last_check_at: str
    last_outcome: Literal["online", "removed", "unreachable", "reappeared", "missing",
                          "moved"]
    noticed_at: str
    first_notice_at: str | None
    first_notice_source: Literal["notice_sent", "noticed"]
    ladder_position: int
    next_escalation_at: str | None
    plan_done: list[int]
    reappearances: int
    misses: list[str]  # checks that found every confirmed item gone (removal confirmation)
    moves: int  # how often the host moved to another network while monitored
    last_move_at: str | None
    move_unrouted: str  # why routing could not decide for the host's new location
    steps: list[MonitoringStep]
    items: dict[str, MonitoredItem]


# ICCAM's classification of illegal material (docs/workbench.md); nothing has a default.
# ("class" is a Python keyword: the functional form keeps the key.)
Classification = TypedDict("Classification", {
    "class": Literal["baseline", "national", "doubtful"],
    "age": Literal["ND", "IN", "PP", "PU"],
    "gender": Literal["UN", "FE", "MA", "BO"],
    "virtual": bool, "user_generated": bool, "child_modelling": bool})


class Assessment(TypedDict):
    """An analyst's verdict on a case (``case.data["assessment"]``, ``ntd verdict``)."""

    verdict: Verdict
    category: str | None
    by: str  # ``analyst:<name>``
    at: str
    classification: NotRequired[Classification]  # illegal verdicts from the workbench
    answers: NotRequired[dict[str, str | bool]]  # the hotline's [assessment.questions]
    verified_by: NotRequired[str]  # the second analyst ([assessment] verify)


class StoredNotice(TypedDict):
    """A notice as the store keeps it (``Store.get_notice``): its recipient, delivery state and
    the allow-listed actions it carries (``ntd_notice_text``)."""

    id: str
    recipient: str
    channel: str
    recipient_kind: str
    country: str | None
    language: str
    state: str
    attempts: int
    actions: list[NoticeAction]
    case_ids: list[str]


class NoticeText(TypedDict):
    """A notice's rendered subject and plain text (``ntd_notice_text``)."""

    subject: str
    text: str


class CaseData(TypedDict, total=False):
    """Named fields of ``Case.data`` (what stages set through ``StageResult.data``)."""

    resolution: Resolution
    routes: list[Route]
    escalation: list[PlanStep]
    monitoring: Monitoring
    resolution_history: list[dict[str, Any]]  # resolutions replaced when the host moved
    match: dict[str, Any]  # the match stage's summary of a confirmed case
    assessment: Assessment
    mirror_hashes: Any  # hashes of mirrors of the matched media (the fetch stage)


# --------------------------------------------------------------------------------------------
# Reporters (the only hook that ever sees reporter data: ntd_send_feedback)
# --------------------------------------------------------------------------------------------


class ReporterFields(TypedDict, total=False):
    """A chat reporter's decrypted fields. Never log, store or forward them."""

    username: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None


class FeedbackOutcome(TypedDict):
    """What became of a report, for the reporter's feedback (``ntd_send_feedback``)."""

    state: str | None  # the case's state, e.g. ``removed`` or ``closed``


__all__ = [
    # hooks and records
    "hookimpl", "Case", "Item", "StageResult", "StageContext", "STATES", "CLOSED_STATES",
    "DeliveryOutcome", "NoticeChannel",
    "HashSource", "ListChanges", "RemoteMatch", "SourceEntry",
    "Clock", "MaybeAwaitable",
    # configuration
    "Config", "ConfigSchema", "Option", "positive", "non_negative", "one_of", "secret_from_env",
    # hash types
    "HashType", "HASH_TYPES", "hash_type",
    # errors
    "NtdError", "ConfigError", "InputError", "PluginError", "StorageError", "StageError",
    "FetchError", "HashlistError", "ResolutionError", "RoutingError", "DeliveryError",
    "WorkerError",
    # vocabularies
    "Action", "RecipientKind", "RouteChannel", "ContactScope", "ContactChannel",
    "EscalationStepName", "Verdict", "ACTIONS", "RECIPIENT_KINDS", "ROUTE_CHANNELS",
    "CONTACT_SCOPES", "CONTACT_CHANNELS", "ESCALATION_STEPS", "UNKNOWN_COUNTRY",
    "is_placeholder",
    # contract shapes
    "ContactCandidate", "Contact", "Registrar", "DnsFacts", "NetworkFacts",
    "IntermediaryFacts", "Origin", "Resolution", "Route", "JurisdictionProposal", "PlanStep",
    "RouteDecision", "NoticeEntry", "EscalationMarker", "NoticeAction", "StepTarget",
    "Classification", "StoredNotice", "NoticeText",
    "SkippedTarget", "EscalationStep", "EscalationRoute", "EscalationVeto",
    "EscalationAnswer", "MonitoredItem", "MonitoringStep", "Monitoring", "Assessment", "CaseData",
    "ReporterFields", "FeedbackOutcome",
    # intake sources (docs/intake.md)
    "IntakeSource", "PollingSource", "IntakeDesk", "IncomingReport", "HandInResult",
    "MEDIA_SCHEME",
]
