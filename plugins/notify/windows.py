"""Sending windows and approved contacts: the gate a notice passes before it is sent.

``[notices] send_window = "Mon-Fri 09:00-17:00"`` keeps notices to hosters, registrars and
platforms inside the recipient's working hours, in the time zone of the recipient's country
(its first zone in the IANA table), skipping that country's public holidays (the ``holidays``
package) and ``[notices] blocked_days``. Police and INTERPOL notices are never held by a window.
A notice outside its window stays ``queued`` with ``not_before`` (and its next attempt) set to
the window's next opening. With ``[notices] require_approval = true`` a notice to an address
that neither the contacts book nor an admin approved (``ntd contacts approve``) waits in
``awaiting_approval``.

The gate runs inside the claim's transaction (``Store.claim_notices(gate=...)``), so a notice is
never sent by one worker while another defers it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from engine import clock
from engine.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Recipient kinds no window holds and no approval is asked for (authorities we report to).
AUTHORITY_KINDS = frozenset({"police", "interpol"})
#: Recipient kinds whose addresses come from lookups (RDAP, WHOIS, platform tables).
LOOKUP_KINDS = frozenset({"hosting", "registrar", "cdn", "platform"})
_WINDOW = re.compile(r"^\s*(?P<d1>[a-z]{3})(?:\s*-\s*(?P<d2>[a-z]{3}))?\s+"
                     r"(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})\s*$")
_SEARCH_DAYS = 30  # a window never opens later than this: the configuration is wrong


@dataclass(frozen=True, kw_only=True)
class Window:
    """Opening hours: on ``days`` (0 = Monday), from ``start`` to ``end`` local time."""

    days: frozenset[int]
    start: time
    end: time | None  # None: until midnight ("24:00")

    def contains(self, local: datetime) -> bool:
        """Whether ``local`` (naive local time) is inside the window."""
        if local.weekday() not in self.days:
            return False
        moment = local.time()
        return self.start <= moment and (self.end is None or moment < self.end)


def parse_window(text: str) -> list[Window]:
    """``"Mon-Fri 09:00-17:00"``, several joined by commas (``"Mon-Fri 09:00-17:00, Sat
    10:00-12:00"``). Raises ``ConfigError`` with the reason."""
    windows = []
    for part in text.lower().split(","):
        found = _WINDOW.match(part)
        if not found:
            raise ConfigError(f"[notices] send_window {text!r}: expected e.g. "
                              "\"Mon-Fri 09:00-17:00\"")
        d1, d2 = found["d1"], found["d2"] or found["d1"]
        if d1 not in DAYS or d2 not in DAYS:
            raise ConfigError(f"[notices] send_window {text!r}: days are {', '.join(DAYS)}")
        first, last = DAYS.index(d1), DAYS.index(d2)
        days = range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)]
        h1, m1, h2, m2 = (int(found[k]) for k in ("h1", "m1", "h2", "m2"))
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ConfigError(f"[notices] send_window {text!r}: not a time of day")
        start, end = time(h1, m1), None if h2 == 24 else time(h2, m2)
        if end is not None and end <= start:
            raise ConfigError(f"[notices] send_window {text!r}: a window ends after it starts")
        windows.append(Window(days=frozenset(days), start=start, end=end))
    return windows


def check_window(value: Any) -> str | None:
    """Config check of ``send_window``."""
    try:
        parse_window(value)
    except ConfigError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def check_days(value: Any) -> str | None:
    """Config check of ``blocked_days`` (ISO dates)."""
    for day in value:
        try:
            date.fromisoformat(str(day))
        except ValueError:
            return f"{day!r} is not a date (YYYY-MM-DD)"
    return None


@lru_cache(maxsize=512)
def country_zone(country: str | None) -> ZoneInfo:
    """The (first) IANA time zone of a country; UTC when unknown."""
    import pytz  # deferred: only the country → zone table is needed, when a window is set

    zones = pytz.country_timezones.get((country or "").upper())
    return ZoneInfo(zones[0]) if zones else ZoneInfo("UTC")


@lru_cache(maxsize=512)
def _holidays(country: str | None, year: int) -> frozenset[date]:
    import holidays  # deferred: loads every country's calendar module on first use

    try:
        return frozenset(holidays.country_holidays((country or "").upper(), years=year))
    except NotImplementedError:  # a country the package has no calendar for
        return frozenset()


class SendingRules:
    """Decides, for a claimed notice, whether it may go now (``gate``)."""

    def __init__(self, *, window: str | None, blocked_days: Iterable[str] = (),
                 public_holidays: bool = True, require_approval: bool = False,
                 approved: Iterable[str] = ()) -> None:
        self.windows = parse_window(window) if window else []
        self.blocked = frozenset(date.fromisoformat(str(d)) for d in blocked_days)
        self.public_holidays = public_holidays
        self.require_approval = require_approval
        self.approved = {a.lower() for a in approved}

    @property
    def active(self) -> bool:
        """Whether any rule can stop a notice."""
        return bool(self.windows or self.blocked or self.require_approval)

    def closed_on(self, day: date, country: str | None) -> bool:
        """Whether no notice goes out on ``day`` (blocked, or a public holiday there)."""
        return day in self.blocked or (self.public_holidays and bool(self.windows)
                                       and day in _holidays(country, day.year))

    def next_open(self, now: datetime, country: str | None) -> datetime:
        """``now`` if a notice to ``country`` may go now, else when it next may (UTC)."""
        if not self.windows and not self.blocked:
            return now
        zone = country_zone(country)
        local = now.astimezone(zone)
        windows = self.windows or [Window(days=frozenset(range(7)), start=time(0), end=None)]
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if self.closed_on(day, country):
                continue
            for start in sorted(w.start for w in windows if day.weekday() in w.days):
                candidate = datetime.combine(day, start, tzinfo=zone)
                if offset == 0 and any(w.contains(local.replace(tzinfo=None)) for w in windows
                                       if day.weekday() in w.days):
                    return now
                if candidate > local:
                    return candidate.astimezone(now.tzinfo)
        raise ConfigError(f"no sending window opens within {_SEARCH_DAYS} days "
                          "([notices] send_window / blocked_days)")

    def gate(self, notice: dict[str, Any], now: datetime) -> tuple[str, str] | None:
        """``None`` to send ``notice`` now, else ``(state, not_before)``."""
        kind = notice.get("recipient_kind")
        if kind in AUTHORITY_KINDS:
            return None
        if (self.require_approval and kind in LOOKUP_KINDS
                and str(notice.get("recipient", "")).lower() not in self.approved):
            return ("awaiting_approval", clock.fmt(now))
        opens = self.next_open(now, notice.get("country"))
        return None if opens <= now else ("queued", clock.fmt(opens))
