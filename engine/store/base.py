"""The storage interface every backend implements (SQLite now, PostgreSQL next).

Stages never see SQL: they read ``Case`` records and return ``StageResult``s, and the engine calls
the methods below. All methods are synchronous and each write is one transaction; the pipeline runs
them on a dedicated thread (``engine.store.async_store``) so the event loop never blocks on I/O.
Backend-specific SQL lives only in the backend's module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from engine.models import Case, Event, StageResult
from engine.store.base_notices import NoticeStore


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


def claim_candidates_sql(states: Sequence[str], now: str, limit: int,
                         mark: str = "?") -> tuple[str, list[Any]]:
    """The cases a claim may take, as SQL (``id, updated_at`` rows) and its parameters.

    Per state, two walks of the ``cases_claim`` index in claim order: cases without a retry
    time, and cases whose retry time has come. Each stops after ``limit`` unleased cases, so a
    claim costs the same with 100 or 100,000 cases waiting (one ``ORDER BY`` over several
    states made the database sort them all). ``mark`` is the backend's parameter marker.
    """
    lease = f"(lease_owner IS NULL OR lease_until < {mark})"
    parts: list[str] = []
    params: list[Any] = []
    for state in states:
        for n, retry in enumerate(("retry_at IS NULL", f"retry_at <= {mark}")):
            parts.append(
                f"SELECT * FROM (SELECT id, updated_at FROM cases WHERE state = {mark} AND {retry}"
                f" AND {lease} ORDER BY updated_at, id LIMIT {mark}) AS c{len(parts)}")
            params += [state, *([now] if n else []), now, limit]
    return " UNION ALL ".join(parts), params


class Store(NoticeStore, ABC):
    """Case store: cases, reports, items, events, per-case data and leases."""

    url: str

    # -- schema --------------------------------------------------------------------------------
    @abstractmethod
    def migrate(self) -> int:
        """Bring the schema to the newest version; return that version."""

    @abstractmethod
    def schema_version(self) -> int:
        """The schema version the database is at (0 when empty)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection(s)."""

    @abstractmethod
    def clone(self) -> Store:
        """Another store on the same database with its own connection (for reader threads)."""

    # -- intake --------------------------------------------------------------------------------
    @abstractmethod
    def create_batch(self, *, channel: str, source: str, at: str) -> str:
        """Start a submission batch; returns its id."""

    @abstractmethod
    def add_reports(self, batch_id: str, channel: str, at: str,
                    rows: Sequence[IntakeRow]) -> IntakeOutcome:
        """Store reports (one transaction), opening a case per canonical URL not already open."""

    @abstractmethod
    def finish_batch(self, batch_id: str, *, accepted: int, duplicates: int,
                     rejected: int) -> None:
        """Record a batch's totals."""

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Around a large intake: backends may defer maintenance work (nothing by default)."""
        yield

    # -- reading -------------------------------------------------------------------------------
    @abstractmethod
    def get_case(self, case_id: str, *, events: bool = True) -> dict[str, Any] | None:
        """A case as JSON-able dict (reports, items, data fields and, optionally, events)."""

    @abstractmethod
    def list_cases(self, *, state: str | None = None, limit: int | None = None,
                   offset: int = 0) -> list[dict[str, Any]]:
        """Cases (oldest first) without events."""

    @abstractmethod
    def count_by_state(self) -> dict[str, int]:
        """Number of cases in each state."""

    @abstractmethod
    def load_case(self, case_id: str) -> Case:
        """The ``Case`` record handed to stage hooks."""

    @abstractmethod
    def events(self, case_id: str) -> list[Event]:
        """A case's trail, oldest first."""

    # -- pipeline ------------------------------------------------------------------------------
    @abstractmethod
    def claim(self, states: Iterable[str], *, limit: int, owner: str, lease_seconds: float,
              now: str) -> list[str]:
        """Lease up to ``limit`` due, unleased cases in ``states`` to ``owner``; oldest first."""

    @abstractmethod
    def due_count(self, states: Iterable[str], now: str) -> int:
        """How many cases in ``states`` are due and unleased (what ``claim`` could take)."""

    @abstractmethod
    def release(self, case_ids: Iterable[str], owner: str) -> int:
        """Give back leases held by ``owner`` without changing state (requeue)."""

    @abstractmethod
    def release_owners(self, owners: Iterable[str]) -> int:
        """Drop every lease held by the given owners (dead workers)."""

    @abstractmethod
    def lease_owners(self) -> dict[str, int]:
        """Owners holding leases and how many each holds."""

    @abstractmethod
    def apply(self, commits: Sequence[Commit], now: str) -> list[str]:
        """Commit stage results in one transaction; return ids whose lease had been lost.

        A result whose case is no longer leased to its owner is dropped (another worker took
        over after the lease expired), so a stage's effect is committed once.
        """

    @abstractmethod
    def park(self, states: Iterable[str], stage: str, now: str) -> int:
        """Mark cases waiting for a stage nobody implements (state kept, reason set, one event)."""

    @abstractmethod
    def unpark(self, stage: str, now: str) -> int:
        """Clear the parked mark of ``stage``'s cases (a plugin for it is now installed)."""

    @abstractmethod
    def transition(self, case_id: str, *, state: str, stage: str, actor: str, action: str,
                   now: str, reason: str | None = None, detail: dict[str, Any] | None = None,
                   data: dict[str, Any] | None = None, expect: Iterable[str] | None = None,
                   ) -> None:
        """Move one case (analyst actions); ``expect`` lists the states it may move from.

        The analyst's move wins over work in flight: a lease on the case is released, so a
        worker's later commit of that case counts as lost (``apply``) instead of undoing it."""

    # -- known-hash lists ----------------------------------------------------------------------
    @abstractmethod
    def import_hashlist(self, *, name: str, source: str | None, trust: str, negative: bool,
                        thresholds: dict[str, int], entries: Iterable[tuple[str, str, str,
                                                                          str | None,
                                                                          str | None]],
                        now: str) -> int:
        """Store a list (replacing one of the same name) in one transaction; returns entries.

        ``entries`` yields ``(hash_type, hash, category, label, source)``. Bumps the hash-list
        generation so running matchers reload.
        """

    @abstractmethod
    def hashlists(self) -> list[dict[str, Any]]:
        """Metadata of every list (never the entries)."""

    @abstractmethod
    def remove_hashlist(self, name: str) -> bool:
        """Delete a list and its entries; False if there was none."""

    @abstractmethod
    def hashlist_entries(self) -> Iterator[tuple[int, str, str, str, str]]:
        """Every entry as ``(id, list, hash_type, hash, category)``, streamed."""

    @abstractmethod
    def add_hashlist_entries(self, name: str, entries: Iterable[tuple[str, str, str,
                                                                     str | None, str | None]],
                             *, now: str, trust: str = "auto", negative: bool = False,
                             source: str | None = None) -> int:
        """Append entries to a list (created if missing), skipping ones already present."""

    @abstractmethod
    def hashlist_generation(self) -> int:
        """A counter that changes whenever any list changes."""

    # -- lookup cache, contacts book -----------------------------------------------------------
    @abstractmethod
    def cache_get(self, namespace: str, key: str, now: str) -> Any | None:
        """A cached JSON value that has not expired, else None."""

    @abstractmethod
    def cache_put(self, namespace: str, key: str, value: Any, expires_at: str) -> None:
        """Store a JSON value until ``expires_at``."""

    @abstractmethod
    def cache_items(self, namespace: str, now: str) -> list[tuple[str, Any]]:
        """Every unexpired ``(key, value)`` of a namespace (e.g. to rebuild a range index)."""

    @abstractmethod
    def contacts_add(self, *, match_kind: str, match_value: str, scope: str, channel: str,
                     address: str, priority: int = 0, note: str | None = None,
                     now: str) -> int:
        """Add an entry to the contacts book; returns its id."""

    @abstractmethod
    def contacts_list(self) -> list[dict[str, Any]]:
        """Every contacts-book entry."""

    @abstractmethod
    def contacts_remove(self, contact_id: int) -> bool:
        """Remove one entry; False if there was none."""

    @abstractmethod
    def contact_failed(self, address: str, error: str, now: str) -> None:
        """Record a bounce or permanent failure of an address."""

    @abstractmethod
    def contact_failures(self, addresses: Iterable[str]) -> dict[str, int]:
        """Failure counts of the given addresses (absent = 0)."""

    # -- reporter data (chat channel), audit -----------------------------------------------------
    @abstractmethod
    def reporters(self, *, phone_mac: str | None = None, username_mac: str | None = None,
                  case_id: str | None = None) -> list[dict[str, Any]]:
        """Reporter records (sealed) matching a lookup MAC or a case."""

    @abstractmethod
    def erase_reporters(self, reporter_ids: Iterable[str]) -> int:
        """Delete reporter records and their keys (shredding them)."""

    @abstractmethod
    def restrict_reporters(self, reporter_ids: Iterable[str], restricted: bool) -> int:
        """Freeze (or unfreeze) processing of reporter records."""

    @abstractmethod
    def feedback_due(self) -> list[dict[str, Any]]:
        """Reporter records whose case is processed and whose feedback is not yet given."""

    @abstractmethod
    def feedback_sent(self, case_id: str, now: str) -> int:
        """Mark feedback given for every reporter of a case."""

    @abstractmethod
    def purge_reporters(self, *, now: str, max_hours: float, dry_run: bool = False) -> int:
        """Delete reporter data that is processed with feedback given, or past the maximum."""

    @abstractmethod
    def anonymise_cases(self, *, now: str, closed_days: float, max_days: float,
                        dry_run: bool = False) -> int:
        """Reduce identifying case data of finished (or very old) cases to the domain."""

    @abstractmethod
    def vacuum(self) -> None:
        """Rewrite the database so deleted values leave no trace (and truncate the WAL)."""

    @abstractmethod
    def audit(self, *, actor: str, action: str, obj: str, now: str,
              detail: dict[str, Any] | None = None) -> None:
        """Append to the audit log (never personal values)."""

    @abstractmethod
    def audit_log(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The audit log, oldest first."""

