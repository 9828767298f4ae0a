"""The records the store's methods take and give besides ``Case``/``Event``: intake rows, intake
outcomes, stage commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.models import StageResult


@dataclass(kw_only=True, slots=True)  # not frozen: a frozen __init__ costs ~1 µs a row
class IntakeRow:
    """One valid line of a submission, ready to store."""

    raw_url: str
    canonical_url: str
    host: str
    domain: str
    line: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # Chat reports only: (reporter id, app, phone MAC, username MAC, sealed record, wrapped key,
    # contact_police) — already encrypted by engine.privacy; stored apart from case data.
    reporter: tuple[str, str | None, str | None, str | None, bytes, bytes, bool] | None = None
    # Media handed in by an intake source (an attached image): its hashes, computed in memory.
    # A new case of such a row starts ``fetched`` with one item carrying them (nothing to
    # fetch: the bytes were never kept).
    media: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class HandInOutcome:
    """What handing in one message did (``Store.hand_in``)."""

    batch: str
    known: bool  # the reference was handed in before: nothing new was stored
    accepted: int
    duplicates: int
    rejected: int


@dataclass(frozen=True, kw_only=True)
class IntakeOutcome:
    """What storing a chunk of intake rows did."""

    accepted: int  # reports that opened a new case
    duplicates: int  # reports linked to a case that was already open
    case_ids: tuple[str, ...] = ()  # one per row, in order


@dataclass(frozen=True, kw_only=True)
class Commit:
    """A stage result to commit for one case held under a lease by ``owner``."""

    case_id: str
    owner: str
    stage: str
    actor: str
    result: StageResult
