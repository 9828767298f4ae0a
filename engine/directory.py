"""Who routing and escalation may contact: the INHOPE directory and ``[routing]`` settings.

The route stage's default policy and the re-check stage's authority step both need the partner
hotlines by country, the national police units, Interpol, the home country and the configured
``[routing.contacts]``; they read them here. The shipped directory
(``engine/data/inhope_directory.json``) holds the public member list with empty contacts:
addresses are configuration.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.routes import ROUTE_CHANNELS, country_code

DIRECTORY_FILE = Path(__file__).resolve().parent / "data" / "inhope_directory.json"
# Per-country takedown deadlines (hours) that apply unless [routing.deadlines] says otherwise.
# NL: the Dutch hosting sector's code of conduct asks for removal within 24 hours.
DEFAULT_DEADLINES: dict[str, int] = {"NL": 24}
# An entry checked longer ago than this is flagged when it routes a case (`ntd route`).
DIRECTORY_MAX_AGE_DAYS = 365

# -- directory -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, slots=True)
class DirectoryEntry:
    """A hotline, police unit or Interpol desk: public name and website; contact is config."""

    name: str
    website: str = ""
    channel: str = "email"
    contact: str = ""
    checked: str = ""  # ISO date the entry was last checked against ``source``
    source: str = ""

    def checked_days_ago(self, today: dt.date) -> int | None:
        """Days since the entry was last checked, or None when it carries no valid date."""
        try:
            return (today - dt.date.fromisoformat(self.checked[:10])).days
        except ValueError:
            return None


@dataclass(frozen=True, kw_only=True)
class Directory:
    """INHOPE member hotlines by country, national police units, Interpol."""

    hotlines: dict[str, tuple[DirectoryEntry, ...]]
    police: dict[str, DirectoryEntry]
    interpol: DirectoryEntry | None
    as_of: str = ""
    source: str = ""

    def hotline(self, country: str) -> DirectoryEntry | None:
        """The primary hotline of ``country`` (first listed), or None for a non-member."""
        entries = self.hotlines.get(country)
        return entries[0] if entries else None

    def entry_for(self, recipient_kind: str, country: str) -> DirectoryEntry | None:
        """The directory entry a route of ``recipient_kind`` (hotline, police, interpol) to
        ``country`` was made from, or None (providers are not in the directory)."""
        if recipient_kind == "hotline":
            return self.hotline(country)
        if recipient_kind == "police":
            return self.police.get(country)
        if recipient_kind == "interpol":
            return self.interpol
        return None

    def stale_entries(self, routes: Iterable[Mapping[str, Any]], today: dt.date,
                      max_age_days: int = DIRECTORY_MAX_AGE_DAYS
                      ) -> list[tuple[Mapping[str, Any], DirectoryEntry, int | None]]:
        """(route, entry, age in days) for each route made from a directory entry checked
        more than ``max_age_days`` ago (or never)."""
        out = []
        for route in routes:
            entry = self.entry_for(str(route.get("recipient_kind")), str(route.get("country")))
            if entry is None:
                continue
            age = entry.checked_days_ago(today)
            if age is None or age > max_age_days:
                out.append((route, entry, age))
        return out


def _entry(raw: Any, where: str) -> DirectoryEntry:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"{where}: expected an object with a 'name'")
    channel = raw.get("channel", "email")
    if channel not in ROUTE_CHANNELS:
        raise ConfigError(f"{where}: channel {channel!r} is not one of "
                          f"{', '.join(ROUTE_CHANNELS)}")
    checked = str(raw.get("checked") or "")
    if checked:
        try:
            dt.date.fromisoformat(checked)
        except ValueError as exc:
            raise ConfigError(f"{where}: checked {checked!r} is not an ISO date "
                              "(YYYY-MM-DD)") from exc
    return DirectoryEntry(name=raw["name"], website=str(raw.get("website") or ""),
                          channel=channel, contact=str(raw.get("contact") or ""),
                          checked=checked, source=str(raw.get("source") or ""))


def load_directory(path: str | Path | None = None) -> Directory:
    """Read and validate a directory file (default: the shipped INHOPE member list)."""
    path = Path(path) if path else DIRECTORY_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"[routing] directory_file: cannot read {path}: "
                          f"{exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"[routing] directory_file: {path} is not JSON: {exc}") from exc
    if not isinstance(raw, Mapping) or raw.get("format") != 1:
        raise ConfigError(f"{path}: not an ntd hotline directory (expected \"format\": 1)")
    hotlines: dict[str, tuple[DirectoryEntry, ...]] = {}
    for code, entries in (raw.get("hotlines") or {}).items():
        cc = country_code(code)
        if cc is None or cc != code:
            raise ConfigError(f"{path}: hotlines: {code!r} is not an ISO 3166 alpha-2 code")
        if isinstance(entries, Mapping):
            entries = [entries]
        hotlines[cc] = tuple(_entry(e, f"{path}: hotlines.{cc}") for e in entries)
    police: dict[str, DirectoryEntry] = {}
    for code, entry in (raw.get("police") or {}).items():
        cc = country_code(code)
        if cc is None or cc != code:
            raise ConfigError(f"{path}: police: {code!r} is not an ISO 3166 alpha-2 code")
        police[cc] = _entry(entry, f"{path}: police.{cc}")
    interpol = raw.get("interpol")
    return Directory(hotlines=hotlines, police=police,
                     interpol=_entry(interpol, f"{path}: interpol") if interpol else None,
                     as_of=str(raw.get("as_of") or ""), source=str(raw.get("source") or ""))


# -- settings ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RoutingSettings:
    """``[routing]`` configuration, validated and ready for the policy."""

    home_country: str = "NL"
    forward_grace_hours: int = 72
    default_deadline_hours: int | None = 72
    registrar_second: bool = True
    deadlines: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    # "hotline:DE" / "police:NL" / "interpol" -> (channel or None, address)
    contacts: dict[str, tuple[str | None, str]] = field(default_factory=dict)

    def deadline(self, country: str) -> int | None:
        """Takedown deadline (hours) for content hosted in ``country``."""
        return self.deadlines.get(country, self.default_deadline_hours)


def check_country(value: Any) -> str | None:
    """Config check of a country option: an ISO 3166 alpha-2 code."""
    return None if country_code(value) == value else "must be an ISO 3166 alpha-2 code, e.g. NL"


def parse_contact(key: str, value: str) -> tuple[str, tuple[str | None, str]]:
    """Validate one ``[routing.contacts]`` entry: ``"police:NL" = "email:unit@example.org"``."""
    kind, _, cc = key.partition(":")
    if kind not in ("hotline", "police", "interpol") or (kind != "interpol"
                                                         and country_code(cc) != cc):
        raise ConfigError(f"[routing.contacts] {key}: expected hotline:CC, police:CC or "
                          "interpol")
    channel, sep, address = value.partition(":")
    if sep and channel in ROUTE_CHANNELS:
        return key, (channel, address)
    return key, (None, value)


def settings_from_config(config: Any) -> RoutingSettings:
    """Build ``RoutingSettings`` from a validated ``engine.config.Config``."""
    sect = config.section("routing")
    deadlines = dict(DEFAULT_DEADLINES)
    for code, hours in config.section("routing.deadlines").items():
        if country_code(code) != code:
            raise ConfigError(f"[routing.deadlines] {code}: expected an ISO 3166 alpha-2 code")
        deadlines[code] = hours
    default_deadline = sect.get("default_deadline_hours", 72)
    contacts = dict(parse_contact(k, v) for k, v in config.section("routing.contacts").items())
    return RoutingSettings(
        home_country=sect.get("home_country") or "NL",
        forward_grace_hours=sect.get("forward_grace_hours", 72),
        default_deadline_hours=default_deadline or None,
        registrar_second=sect.get("registrar_second", True),
        deadlines=deadlines, contacts=contacts)
