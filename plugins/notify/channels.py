"""Delivery channels: what a channel returns, and the registry plugins add channels to.

A channel has a ``name`` (the route's ``channel``), ``async send(prepared) -> Outcome`` and
``async aclose()``. Built-ins: ``email`` (SMTP) and ``api`` (HTTP). Another plugin adds one (a CDN
abuse API, ICCAM) by calling ``register_channel(name, factory)`` at import time, where
``factory(ctx) -> channel``; routes with a channel nobody registered become ``manual`` notices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from plugins.notify.message import Prepared


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one delivery attempt did.

    ``status``: ``sent`` (done; ``detail`` is the receipt), ``retry`` (transient: try again
    later) or ``failed`` (permanent). ``blame_recipient`` marks the address doubtful so the next
    resolution ranks it lower (a bounce, an unknown endpoint), as opposed to our own
    configuration being wrong.
    """

    status: str
    detail: str
    blame_recipient: bool = False


class Channel(Protocol):
    """A way to deliver a prepared notice."""

    name: str

    async def send(self, prepared: Prepared) -> Outcome:
        """Deliver once; never raise for delivery problems (return an ``Outcome``)."""

    async def aclose(self) -> None:
        """Close connections."""


ChannelFactory = Callable[[Any], Channel]
_REGISTRY: dict[str, ChannelFactory] = {}


def register_channel(name: str, factory: ChannelFactory) -> None:
    """Make ``name`` deliverable: ``factory(ctx)`` builds the channel when the sender starts."""
    _REGISTRY[name] = factory


def registered_channels() -> dict[str, ChannelFactory]:
    """Channels added by plugins (name -> factory)."""
    return dict(_REGISTRY)
