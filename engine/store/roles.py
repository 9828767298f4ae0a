"""The store's role interfaces: one abstract class per concern, each small enough to read.

``engine.store.base.Store`` combines them; ``engine.store.sql.SQLStore`` implements them once
for both backends. A stage or tool that needs one concern can be typed with its role.

Notices: Storage interface for notices (outbox actions, aggregated notices, delivery state).

The notify stage queues one **action** per route in the engine's ``outbox`` table (committed with
the case's move to ``noticed``). The sender **aggregates** waiting actions per recipient into
**notices**, **claims** due notices under a lease (recording ``sending`` and the attempt count
before any byte leaves), and marks each ``sent``, ``queued`` again (retry later) or ``failed``.
Notice states: ``queued``, ``sending``, ``sent``, ``failed``, ``manual`` (a channel nobody can
send automatically, e.g. an ICCAM forward without an ICCAM account: an analyst acts on it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from engine.models import Case, Event, Item

if TYPE_CHECKING:
    from engine.store.records import Commit, HandInOutcome, IntakeOutcome, IntakeRow

NOTICE_STATES = ("queued", "sending", "sent", "failed", "manual", "awaiting_approval")
#: What a notice gate answers for a notice it stops: (new state, next attempt time). The
#: state ``queued`` with a later time defers it (a sending window); ``awaiting_approval``
#: parks it until an admin approves its recipient.
Gate = Callable[[dict[str, Any]], "tuple[str, str] | None"]


class CaseStore(ABC):
    """Cases: intake, reading, and the pipeline's claims, leases and commits."""

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
    def load_cases(self, case_ids: Sequence[str]) -> dict[str, Case]:
        """``load_case`` of many cases in one go, by id (unknown ids are left out)."""

    @abstractmethod
    def events(self, case_id: str) -> list[Event]:
        """A case's trail, oldest first."""

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
                   retry_at: str | None = None, items: Sequence[Item] = ()) -> None:
        """Move one case (analyst actions); ``expect`` lists the states it may move from;
        ``retry_at`` is when its next stage is due (default: at once); ``items`` are stored
        with the move (an analyst's re-fetch, ``ntd fetch``).

        The analyst's move wins over work in flight: a lease on the case is released, so a
        worker's later commit of that case counts as lost (``apply``) instead of undoing it."""


class HashListStore(ABC):
    """Known-hash lists and their entries."""

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
        """Every enabled entry as ``(id, list, hash_type, hash, category)``, streamed
        (entries switched off with ``set_hash_disabled`` are left out)."""

    @abstractmethod
    def add_hashlist_entries(self, name: str, entries: Iterable[tuple[str, str, str,
                                                                     str | None, str | None]],
                             *, now: str, trust: str = "auto", negative: bool = False,
                             source: str | None = None) -> int:
        """Append entries to a list (created if missing), skipping ones already present."""

    @abstractmethod
    def hashlist_generation(self) -> int:
        """A counter that changes whenever any list changes."""


class HashSourceStore(ABC):
    """Hash-source syncs and match-quality controls (``engine.store.sql_hashsources``)."""

    @abstractmethod
    def sync_hashlist(self, name: str, *, source: str, trust: str, negative: bool = False,
                      entries: Iterable[tuple[str, str, str, str, str | None]],
                      removed: Iterable[str] = (), replace: bool = False,
                      cursor: str | None = None, state_source: str | None = None,
                      now: str) -> dict[str, int]:
        """Apply a hash source's changes to a list as a diff keyed by the source's ids;
        returns ``{"added", "updated", "removed", "unchanged"}``."""

    @abstractmethod
    def hashsource_states(self) -> list[dict[str, Any]]:
        """Every synced list's state (source, cursor, last sync and its counts)."""

    @abstractmethod
    def set_hash_disabled(self, list_name: str, value: str, disabled: bool) -> int:
        """Switch the entries of a list holding one hash off or on; returns how many."""

    @abstractmethod
    def disabled_count(self, list_name: str) -> int:
        """How many entries of a list are switched off."""

    @abstractmethod
    def record_entry_hits(self, entry_ids: Iterable[int], url: str, *, now: str,
                          since: str, limit: int) -> dict[int, int]:
        """Record a URL's matches; return entries over ``limit`` distinct URLs since
        ``since`` that are not held yet (``{entry id: count}``)."""

    @abstractmethod
    def hold_entries(self, counts: dict[int, int], *, now: str) -> int:
        """Hold entries for review; returns how many were newly held."""

    @abstractmethod
    def held_entries(self) -> list[dict[str, Any]]:
        """The held entries (metadata, never the hash)."""

    @abstractmethod
    def held_entry_ids(self) -> set[int]:
        """Ids of the held entries."""

    @abstractmethod
    def release_entry(self, entry_id: int) -> bool:
        """Release a held entry; False if it was not held."""


class LookupStore(ABC):
    """The resolution cache (RDAP, DNS, ranges) and the contacts book."""

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


class PrivacyStore(ABC):
    """Sealed reporter data, retention (purging, anonymising, vacuuming) and the audit log."""

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


class NoticeStore(ABC):
    """Notice outbox: actions, aggregated notices, their delivery state."""
    @abstractmethod
    def queue_notice_actions(self, actions: Iterable[dict[str, Any]], *, now: str) -> int:
        """Queue outbox actions outside a stage commit (escalations, imports, benchmarks).

        Each action is a notice payload (``kind = "notice"``) with an optional ``id`` and
        ``case_id``. Stages queue theirs through ``StageResult.outbox`` instead.
        """

    @abstractmethod
    def aggregate_notices(self, *, now: str, window_seconds: float, max_urls: int,
                          sendable: Iterable[str]) -> list[str]:
        """Group waiting outbox actions into notices (one transaction); return the new ids.

        Actions are grouped by (channel, recipient, recipient kind, language). A group is cut
        into notices of at most ``max_urls`` URLs once its oldest action is ``window_seconds``
        old; before that only full notices are cut. Channels not in ``sendable`` produce
        ``manual`` notices.
        """

    @abstractmethod
    def notice_work_due(self, *, now: str, window_seconds: float) -> int:
        """Notices due for sending now plus waiting actions whose window has passed."""

    @abstractmethod
    def claim_notices(self, *, owner: str, limit: int, now: str, lease_seconds: float,
                      gate: Gate | None = None) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due notices to ``owner``, marking them ``sending`` and counting
        the attempt (committed before anything is sent). Each dict carries the notice's columns
        and ``actions`` (the outbox payloads, oldest first).

        ``gate(notice)`` (called in the claim's transaction, before any action is read) may
        stop a notice: it then gets the state and next attempt time the gate answers (its
        ``not_before``), is not counted as an attempt and is not returned."""

    @abstractmethod
    def release_held(self, case_id: str, *, hold: str) -> int:
        """Let a case's outbox actions held for ``hold`` (e.g. ``police``) be aggregated."""

    @abstractmethod
    def drop_held(self, case_id: str, *, hold: str) -> int:
        """Delete a case's outbox actions still held for ``hold`` (the release was declined)."""

    @abstractmethod
    def approve_contact(self, address: str, *, by: str, now: str,
                        note: str | None = None) -> int:
        """Approve an address for notices; its ``awaiting_approval`` notices are queued now.
        Returns how many were."""

    @abstractmethod
    def approved_addresses(self) -> set[str]:
        """Addresses approved for notices: approvals plus every contacts-book address."""

    @abstractmethod
    def awaiting_approval(self) -> list[dict[str, Any]]:
        """Recipients whose notices wait for approval: ``address``, ``notices``, ``urls``,
        ``since`` (the oldest notice), oldest first."""

    @abstractmethod
    def notice_sent(self, notice_id: str, *, owner: str, now: str, receipt: str) -> bool:
        """Mark a leased notice ``sent`` (trail event on its cases); False if the lease was lost."""

    @abstractmethod
    def notice_retry(self, notice_id: str, *, owner: str, now: str, next_attempt_at: str,
                     error: str) -> bool:
        """Requeue a leased notice for ``next_attempt_at`` after a transient failure."""

    @abstractmethod
    def notice_failed(self, notice_id: str, *, owner: str, now: str, error: str) -> bool:
        """Mark a leased notice permanently ``failed`` (trail event on its cases)."""

    @abstractmethod
    def list_notices(self, *, state: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
        """Notices (oldest first) with their case ids, without action payloads."""

    @abstractmethod
    def get_notice(self, notice_id: str) -> dict[str, Any] | None:
        """One notice with its case ids and action payloads."""

    @abstractmethod
    def retry_notice(self, notice_id: str, *, now: str) -> bool:
        """Queue a ``failed`` (or waiting ``queued``) notice for sending now; False if neither."""

    @abstractmethod
    def notice_lease_owners(self) -> list[str]:
        """Owners holding notice leases."""

    @abstractmethod
    def release_notice_owners(self, owners: Iterable[str]) -> int:
        """Drop notice leases of dead owners: their notices become claimable at once."""

    @abstractmethod
    def notice_counts(self) -> dict[str, int]:
        """Number of notices in each state."""


class UserStore(ABC):
    """Web-console accounts and API-token digests (never a password or a token)."""

    @abstractmethod
    def add_user(self, *, name: str, password_hash: str, role: str, country: str | None,
                 now: str) -> str:
        """Create an account; returns its id. A taken name is an ``InputError``."""

    @abstractmethod
    def get_user(self, name: str, *, with_hash: bool = False) -> dict[str, Any] | None:
        """One account by name (``password_hash`` only when asked for)."""

    @abstractmethod
    def get_user_by_id(self, user_id: str) -> dict[str, Any] | None:
        """One account by id, without its password hash."""

    @abstractmethod
    def list_users(self) -> list[dict[str, Any]]:
        """Every account (no hashes) with its number of API tokens, by name."""

    @abstractmethod
    def set_password_hash(self, name: str, password_hash: str) -> bool:
        """Replace an account's password hash; False if there is no such account."""

    @abstractmethod
    def remove_user(self, name: str) -> bool:
        """Delete an account and its tokens; False if there was none."""

    @abstractmethod
    def add_token(self, *, user_id: str, token_hash: str, now: str) -> None:
        """Store the digest of a new API token for an account."""

    @abstractmethod
    def user_for_token(self, token_hash: str, now: str) -> dict[str, Any] | None:
        """The account owning a token digest, or None (use recorded once a minute at most)."""

    @abstractmethod
    def revoke_tokens(self, user_id: str) -> int:
        """Delete every API token of an account; returns how many."""

    @abstractmethod
    def tokens_of(self, user_id: str) -> Iterator[dict[str, Any]]:
        """Creation and last-use times of an account's tokens (never the digests)."""


class StatsStore(ABC):
    """Read-only aggregate queries behind ``engine.stats`` (no URL, host or case id returned)."""

    @abstractmethod
    def stats_notices_available(self) -> bool:
        """True when the notices table (schema 4) is there; else notices count from events."""

    @abstractmethod
    def stats_reports_by_day(self, start: str, end: str) -> list[dict[str, Any]]:
        """Report counts received in [start, end) per (``day``, ``channel``, ``duplicate``)."""

    @abstractmethod
    def stats_case_facts(self, start: str, end: str) -> list[dict[str, Any]]:
        """One row of facts per case first reported in [start, end); no identifiers."""

    @abstractmethod
    def stats_notices_sent(self, start: str, end: str) -> dict[str, int]:
        """Notices sent in [start, end) per recipient kind."""

    @abstractmethod
    def stats_escalation_events(self, start: str, end: str) -> int:
        """Escalation steps (events ``escalat*``) recorded in [start, end)."""

    @abstractmethod
    def stats_first_activity(self) -> str | None:
        """The earliest report time in the store (the start of "all time"), or None."""


class IntakeSourceStore(ABC):
    """Reports handed in by intake sources (``engine.intake_sources``), once per reference.

    Implemented by ``engine.store.sql_intake.SQLIntakeMixin``."""

    @abstractmethod
    def hand_in(self, *, source: str, reference: str, channel: str, at: str,
                rows: Sequence[IntakeRow], rejected: int) -> HandInOutcome:
        """Store one message's reports as one batch in one transaction, unless ``reference``
        (already hashed) of ``source`` was handed in before: then nothing is stored and the
        earlier batch is returned with ``known = True``."""

    @abstractmethod
    def intake_receipt_done(self, *, source: str, reference: str, now: str) -> int:
        """Record that the source gave its receipt for ``reference`` and erase the reporter
        records of that batch (returns how many were erased)."""

    @abstractmethod
    def intake_batch(self, *, source: str, reference: str) -> dict[str, Any] | None:
        """The row of a handed-in reference (``batch_id``, ``created_at``, ``receipt_at``)."""


class IccamStore(ABC):
    """The ICCAM exchange (``plugins/iccam``): linked content items and the export outbox.

    Implemented by ``engine.store.sql_iccam.SQLIccamMixin`` (its docstring: the tables)."""

    @abstractmethod
    def iccam_import(self, batch_id: str, report: dict[str, Any], now: str) -> dict[str, Any]:
        """Open or link the case of one ICCAM report and link its content items."""

    @abstractmethod
    def iccam_import_error(self, report_id: int | None, content_id: int | None, error: str,
                           now: str) -> None:
        """Record an import problem."""

    @abstractmethod
    def iccam_clear_import_errors(self, report_id: int | None) -> None:
        """Forget the import problems of a report that has now been imported."""

    @abstractmethod
    def iccam_cursor(self) -> str | None:
        """The start of the next import window, if recorded."""

    @abstractmethod
    def iccam_set_cursor(self, value: str) -> None:
        """Move the import window's start."""

    @abstractmethod
    def iccam_queue_report(self, case_id: str, now: str, payload: dict[str, Any]) -> bool:
        """Queue the creation of our ICCAM report for a case (False: queued already)."""

    @abstractmethod
    def iccam_plan(self, steps: Sequence[dict[str, Any]], now: str) -> int:
        """Insert planned item steps; existing keys insert nothing. Returns the new ones."""

    @abstractmethod
    def iccam_open_items(self, country: str) -> list[dict[str, Any]]:
        """Linked content items assigned to ``country`` without a final action, with steps."""

    @abstractmethod
    def iccam_notice_facts(self, case_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """First notice sent per case and recipient kind."""

    @abstractmethod
    def iccam_link_export(self, case_id: str, urls: Sequence[dict[str, Any]], now: str) -> None:
        """Record the URLs our report for a case sends."""

    @abstractmethod
    def iccam_report_created(self, step_id: str, *, owner: str, case_id: str, report_id: int,
                             now: str) -> bool:
        """Mark our report created (step sent, report id on the export items)."""

    @abstractmethod
    def iccam_unread_reports(self) -> list[dict[str, Any]]:
        """Our reports whose content ids are not read back yet."""

    @abstractmethod
    def iccam_report_read(self, case_id: str, report_id: int,
                          contents: Sequence[dict[str, Any]], now: str) -> int:
        """Store the content ids ICCAM gave our report's URLs; returns the matches."""

    @abstractmethod
    def iccam_update_item(self, item_id: int, now: str, **fields: Any) -> None:
        """Change an item's assignment or hosting as ICCAM now holds it."""

    @abstractmethod
    def iccam_claim(self, *, owner: str, limit: int, now: str, lease_seconds: float,
                    steps: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Lease due export steps (first unfinished one per content item)."""

    @abstractmethod
    def iccam_finish(self, step_id: str, *, owner: str, now: str, state: str,
                     response: Any = None, error: str | None = None) -> bool:
        """End a leased step (sent, skipped, failed, in_doubt)."""

    @abstractmethod
    def iccam_retry(self, step_id: str, *, owner: str, now: str, next_attempt_at: str,
                    error: str) -> bool:
        """Requeue a leased step after a transient failure."""

    @abstractmethod
    def iccam_lease_owners(self) -> list[str]:
        """Owners holding export-step leases."""

    @abstractmethod
    def iccam_release_owners(self, owners: Iterable[str]) -> int:
        """Drop the export-step leases of dead owners."""

    @abstractmethod
    def iccam_due(self, now: str) -> int:
        """Export steps due now."""

    @abstractmethod
    def iccam_resolve(self, case_id: str, *, now: str, report_id: int | None) -> bool:
        """Settle an in-doubt report step (known report id, or send again)."""

    @abstractmethod
    def iccam_case(self, case_id: str) -> dict[str, Any]:
        """A case's ICCAM links and export steps."""

    @abstractmethod
    def iccam_problems(self) -> list[dict[str, Any]]:
        """Failed and in-doubt export steps and import problems."""

    @abstractmethod
    def iccam_counts(self) -> dict[str, int]:
        """Export steps per state."""

    @abstractmethod
    def stats_iccam_facts(self, start: str, end: str) -> list[dict[str, Any]]:
        """Per-case ICCAM and removal times of the cohort [start, end); no identifiers."""
