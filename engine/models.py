"""Records that move between the store, the pipeline and plugins.

A **case** exists once per canonical URL while it is open; each submission is a **report** linked
to it. A case holds **items** (the URL itself, or media found on its page) with their hashes and
matches. Every change of state is an **event** in an append-only trail. Plugins return a
``StageResult`` that the engine commits atomically with the case's new state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The case lifecycle (see docs/lifecycle.md). States only move forward; failure states carry a
# reason and a retry time and re-enter the stage that produced them when the time comes.
STATES = (
    "new", "fetched", "unreachable", "awaiting_assessment", "confirmed", "dismissed",
    "resolved", "unresolved", "routed", "awaiting_routing", "held_for_police", "noticed",
    "monitoring",
    "removed", "escalated", "reappeared", "closed", "anonymised", "failed",
)
# A case in one of these states is finished: a new report of its URL opens a new case.
CLOSED_STATES = frozenset({"dismissed", "closed", "anonymised"})

# Report fields that identify a reporter. They never enter case data: web-form reports drop them,
# chat reports hand them to the separate, encrypted reporter store.
REPORTER_FIELDS = frozenset({"app", "username", "first_name", "last_name", "phone",
                             "contact_police"})
PERSONAL_FIELDS = REPORTER_FIELDS | frozenset({
    "email", "e_mail", "mail", "ip", "ip_address", "remote_addr", "name", "full_name",
    "reporter", "reporter_name", "reporter_email", "telephone", "tel", "mobile", "address",
    "user_agent", "cookie",
})
# ``mail`` and ``police``: reports that came in by mail (engine.intake_sources), from anyone
# allowed or from a sender the hotline lists as police.
CHANNELS = ("analyst", "webform", "chat", "partner", "mail", "police")


@dataclass(frozen=True, kw_only=True)
class Event:
    """One entry of a case's append-only trail."""

    at: str
    stage: str
    actor: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as in ``ntd case ID --json``."""
        return {"at": self.at, "stage": self.stage, "actor": self.actor,
                "action": self.action, "detail": self.detail}


@dataclass(frozen=True, kw_only=True)
class Item:
    """Something fetched for a case: the URL itself or media found on its page."""

    url: str
    kind: str = "url"  # "url" (the reported URL) or "media" (found on a page)
    status: int | None = None
    content_type: str | None = None
    size: int | None = None
    final_url: str | None = None
    error: str | None = None
    hashes: dict[str, Any] = field(default_factory=dict)
    matches: list[dict[str, Any]] = field(default_factory=list)
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as in ``ntd case ID --json``."""
        return {"id": self.id, "url": self.url, "kind": self.kind, "status": self.status,
                "content_type": self.content_type, "size": self.size,
                "final_url": self.final_url, "error": self.error, "hashes": self.hashes,
                "matches": self.matches}


@dataclass(frozen=True, kw_only=True)
class Case:
    """A case as plugins see it (read-only; changes go through ``StageResult``)."""

    id: str
    url: str
    canonical_url: str
    host: str
    domain: str
    state: str
    state_reason: str | None
    created_at: str
    updated_at: str
    retry_at: str | None = None
    attempts: int = 0
    items: tuple[Item, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class StageResult:
    """What a stage hook returns: the case's next state plus what to store with it.

    ``items`` replace stored items with the same URL; ``data`` sets named case fields such as
    ``resolution`` or ``routes`` (JSON-able values); ``outbox`` queues notices in the same
    transaction. ``retry_at`` schedules the case to re-enter the stage (failure states).
    """

    state: str
    action: str
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    retry_at: datetime | None = None
    actor: str | None = None  # defaults to the deciding plugin's name
