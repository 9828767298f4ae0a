"""Storage interface for notices (outbox actions, aggregated notices, delivery state).

The notify stage queues one **action** per route in the engine's ``outbox`` table (committed with
the case's move to ``noticed``). The sender **aggregates** waiting actions per recipient into
**notices**, **claims** due notices under a lease (recording ``sending`` and the attempt count
before any byte leaves), and marks each ``sent``, ``queued`` again (retry later) or ``failed``.
Notice states: ``queued``, ``sending``, ``sent``, ``failed``, ``manual`` (a channel nobody can
send automatically, e.g. an ICCAM forward: an analyst acts on it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

NOTICE_STATES = ("queued", "sending", "sent", "failed", "manual")


class NoticeStore(ABC):
    """Abstract notice-outbox methods every backend implements."""

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
    def claim_notices(self, *, owner: str, limit: int, now: str,
                      lease_seconds: float) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due notices to ``owner``, marking them ``sending`` and counting
        the attempt (committed before anything is sent). Each dict carries the notice's columns
        and ``actions`` (the outbox payloads, oldest first)."""

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
