"""Time in one place: UTC timestamps as sortable ISO-8601 text, and a clock tests can move.

Every timestamp ntd stores is ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so that text order is time order in
both SQLite and PostgreSQL. ``NTD_FAKE_NOW`` (ISO-8601) pins the clock for demos and tests of
schedules; ``NTD_FAKE_NOW=+25h`` (``+N`` with ``m``, ``h`` or ``d``) runs it that far ahead of
the wall clock instead (the lab's "a day later"). Code takes its time from ``Clock.now()``,
never from ``datetime.now()`` directly.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta

_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"
_AHEAD = re.compile(r"\+(\d+(?:\.\d+)?)([mhd])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def fmt(moment: datetime) -> str:
    """Format an aware datetime as ntd's sortable UTC text."""
    return moment.astimezone(UTC).strftime(_FMT)


def parse(text: str) -> datetime:
    """Parse ntd's timestamp text (or any ISO-8601 with offset) into an aware UTC datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|h|d)\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def parse_duration(text: object) -> timedelta:
    """``"30m"``, ``"4h"``, ``"1.5d"`` as a positive ``timedelta``; ``ValueError`` otherwise."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration (a positive number and m, h or d, "
                         "e.g. \"30m\", \"4h\", \"1d\")")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class Clock:
    """Wall clock, or a fixed/advanceable one for tests (``advance``)."""

    def __init__(self, fixed: datetime | None = None) -> None:
        env = (os.environ.get("NTD_FAKE_NOW") or "").strip()
        self._offset = timedelta(0)
        ahead = _AHEAD.fullmatch(env)
        if fixed is None and ahead:
            self._offset = timedelta(seconds=float(ahead[1]) * _UNIT_SECONDS[ahead[2]])
        elif fixed is None and env:
            fixed = parse(env)
        self._fixed = fixed

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        if self._fixed is not None:
            return self._fixed + self._offset
        return datetime.now(UTC) + self._offset

    def now_text(self) -> str:
        """The current time as ntd timestamp text."""
        return fmt(self.now())

    def advance(self, seconds: float) -> None:
        """Move this clock forward (tests and simulations only)."""
        self._offset += timedelta(seconds=seconds)

    @staticmethod
    def monotonic() -> float:
        """A monotonic reading for measuring durations."""
        return time.monotonic()
