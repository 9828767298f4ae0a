"""Storage interface for notices (outbox actions, aggregated notices, delivery state)."""

from __future__ import annotations


class NoticeStore:
    """Abstract notice-outbox methods every backend implements."""
