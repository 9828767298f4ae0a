"""What a notice channel is: the contract between the notice sender and whoever delivers.

The built-in notify stage delivers through channels named like a route's ``channel``: its own
``email`` (SMTP) and ``api`` (HTTP), and any a plugin adds with ``ntd_notice_channels`` (the
``iccam`` channel of the ICCAM plugin). A channel gets a prepared notice — ``prepared.notice`` is
the claimed notice with its ``actions`` (the allow-listed outbox payloads, each with its
``case_id``) — and answers with a ``DeliveryOutcome``; it never raises for delivery problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class DeliveryOutcome:
    """What one delivery attempt did.

    ``status``: ``sent`` (done; ``detail`` is the receipt), ``retry`` (transient: try again
    later) or ``failed`` (permanent). ``blame_recipient`` marks the address doubtful so the next
    resolution ranks it lower (a bounce, an unknown endpoint), as opposed to our own
    configuration being wrong.
    """

    status: str
    detail: str
    blame_recipient: bool = False


class NoticeChannel(Protocol):
    """A way to deliver a prepared notice (``name`` = the routes' ``channel``)."""

    name: str

    async def send(self, prepared: Any) -> DeliveryOutcome:
        """Deliver once; never raise for delivery problems (return a ``DeliveryOutcome``)."""

    async def aclose(self) -> None:
        """Close connections."""
