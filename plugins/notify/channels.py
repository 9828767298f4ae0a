"""Delivery channels: what a channel returns, and the registry plugins add channels to.

A channel has a ``name`` (the route's ``channel``), ``async send(prepared) -> Outcome`` and
``async aclose()``. Built-ins: ``email`` (SMTP) and ``api`` (HTTP). Another plugin adds one (a CDN
abuse API, ICCAM) with the hook ``ntd_notice_channels(ctx)`` (or, inside this package, by calling
``register_channel(name, factory)`` at import time, where ``factory(ctx) -> channel``); routes with
a channel nobody provides become ``manual`` notices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.delivery import DeliveryOutcome, NoticeChannel

#: One delivery attempt's result (its home is ``engine.delivery``, the contract plugins see).
Outcome = DeliveryOutcome
#: A way to deliver a prepared notice (``engine.delivery.NoticeChannel``).
Channel = NoticeChannel

ChannelFactory = Callable[[Any], Channel]
_REGISTRY: dict[str, ChannelFactory] = {}


def register_channel(name: str, factory: ChannelFactory) -> None:
    """Make ``name`` deliverable: ``factory(ctx)`` builds the channel when the sender starts."""
    _REGISTRY[name] = factory


def registered_channels() -> dict[str, ChannelFactory]:
    """Channels added by plugins (name -> factory)."""
    return dict(_REGISTRY)
