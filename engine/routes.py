"""The route contract shared by the stages that route, notify and escalate.

A **route** (``ntd route CASE --json``, ``docs/routing.md``) names who must act on a case:
exactly ``ROUTE_KEYS``. Routing writes them, the notice stage turns them into outbox actions and
the re-check stage's escalation ladder sends them again or further up. A *placeholder* target
(``police:NL``, ``hotline:DE``, ``interpol``) stands for a recipient whose contact is not
configured: it is never sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

ACTIONS = ("notice", "forward", "report")
RECIPIENT_KINDS = ("hosting", "registrar", "cdn", "platform", "hotline", "police", "interpol")
ROUTE_CHANNELS = ("email", "api", "iccam", "form")
# The route contract (``ntd route CASE --json``): exactly these keys, in this order.
ROUTE_KEYS = ("action", "recipient_kind", "target", "channel", "country", "deadline_hours",
              "decided_by", "reason")
UNKNOWN_COUNTRY = "ZZ"  # ISO 3166 user-assigned code: "unknown or unspecified"

_COUNTRY = re.compile(r"[A-Z]{2}")
_PLACEHOLDER = re.compile(r"(?:police|hotline)(?::[A-Za-z]{2})?|interpol", re.IGNORECASE)


def is_placeholder(target: Any) -> bool:
    """True for a symbolic target routing uses when no contact is configured (never sent)."""
    text = str(target or "").strip()
    return not text or bool(_PLACEHOLDER.fullmatch(text))


def country_code(value: Any) -> str | None:
    """An ISO 3166-1 alpha-2 code in upper case, or None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if _COUNTRY.fullmatch(code) else None


def contract_routes(routes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy routes keeping exactly the contract keys (defence in depth before storing)."""
    return [{key: route.get(key) for key in ROUTE_KEYS} for route in routes]


def split_sendable(routes: Iterable[Mapping[str, Any]]
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(sendable, skipped)``: placeholders and repeats of a (channel, target) are skipped."""
    sendable: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for route in routes:
        target = str(route.get("target") or "")
        if is_placeholder(target):
            skipped.append({"target": target or None, "recipient_kind": route.get(
                "recipient_kind"), "why": "no contact configured (placeholder target)"})
            continue
        key = (str(route.get("channel") or "email"), target.lower())
        if key in seen:
            continue
        seen.add(key)
        sendable.append({k: route.get(k) for k in ROUTE_KEYS})
    return sendable, skipped
