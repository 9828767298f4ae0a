"""Anonymised statistics: aggregates, small-count suppression, CSV and PNG charts.

What the hotline publishes is computed here from per-case *facts* the store hands over without
identifiers (``Store.stats_*``): nothing below ever sees a URL, domain, reporter value or case id,
so nothing can leak one. Two populations are used (see docs/statistics.md):

- **activity in the period**: reports received (per channel, duplicates), notices sent and
  escalation steps taken between ``--from`` and ``--to``;
- **the cohort of the period**: cases first reported in the period, and what became of them
  (confirmed, category, hosting country and network, noticed, escalated, removed, time to removal).

Small counts are suppressed in every breakdown: a cell below ``min_count`` is folded into
``"other"``, and a statistic (percentile, share) computed from fewer than ``min_count`` cases is
``null`` with ``"suppressed": true``. Totals without a breakdown are published as they are.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from engine import clock
from engine.errors import ConfigError, InputError

DEFAULT_MIN_COUNT = 5
OTHER = "other"
# Removal windows published by INHOPE and IWF, in hours.
WINDOWS = {"24h": 24.0, "72h": 72.0, "7d": 168.0}
TOP_NETWORKS = 10
CLOCKS = {
    "report": "from the first report to the hotline until removal (INHOPE)",
    "notice": "from the first notice sent to the recipient until removal (IWF)",
}


# -- period ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Period:
    """Inclusive calendar dates; ``None`` is open-ended (all time)."""

    start: date | None = None
    end: date | None = None

    def bounds(self) -> tuple[str, str]:
        """Text bounds [start, end) comparable with ntd timestamps."""
        lo = self.start.isoformat() if self.start else "0000"
        hi = (self.end + timedelta(days=1)).isoformat() if self.end else "9999"
        return lo, hi


def parse_date(text: str | None, flag: str) -> date | None:
    """Parse ``YYYY-MM-DD`` given to ``flag``; errors name the flag."""
    if text is None or text == "":
        return None
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"{flag}: {text!r} is not a date (expected YYYY-MM-DD)") from exc


def parse_period(start: str | None, end: str | None) -> Period:
    """The period of ``--from`` / ``--to`` (inclusive dates; either may be omitted)."""
    period = Period(start=parse_date(start, "--from"), end=parse_date(end, "--to"))
    if period.start and period.end and period.start > period.end:
        raise InputError(f"--from {period.start} is after --to {period.end}")
    return period


# -- small helpers ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) by linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def suppress(counts: Mapping[str, int], min_count: int, *,
             limit: int | None = None) -> dict[str, int]:
    """A breakdown safe to publish: cells below ``min_count`` (and beyond ``limit``) fold into
    ``"other"``, largest first. ``"other"`` shows the folded sum: it names no single key."""
    out: dict[str, int] = {}
    other = int(counts.get(OTHER, 0))
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if key == OTHER or n <= 0:
            continue
        if n < min_count or (limit is not None and len(out) >= limit):
            other += n
        else:
            out[key] = int(n)
    if other:
        out[OTHER] = other
    return out


def _share(part: int, whole: int, min_count: int) -> float | None:
    if whole < max(min_count, 1):
        return None
    return round(part / whole, 4)


def _hours(seconds: float) -> float:
    return round(seconds / 3600.0, 2)


def _seconds_between(later: str | None, earlier: str | None) -> float | None:
    if not later or not earlier:
        return None
    try:
        return (clock.parse(later) - clock.parse(earlier)).total_seconds()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def removal_summary(hours: Sequence[float], min_count: int) -> dict[str, Any]:
    """p50/p90 of removal times in hours, or nulls when fewer than ``min_count`` cases."""
    n = len(hours)
    hidden = n == 0 or n < min_count
    return {"p50": None if hidden else round(percentile(hours, 50) or 0.0, 2),
            "p90": None if hidden else round(percentile(hours, 90) or 0.0, 2),
            "n": n, "suppressed": bool(hidden and n > 0)}


def within_shares(hours: Sequence[float], min_count: int,
                  of: int | None = None) -> dict[str, float | None]:
    """Share removed within 24 h / 72 h / 7 days: of ``of`` cases (the noticed ones), or of the
    removals measured by that clock when ``of`` is None (the "of removed" figures)."""
    whole = len(hours) if of is None else of
    return {label: _share(sum(1 for h in hours if h <= limit), whole, min_count)
            for label, limit in WINDOWS.items()}


# -- per-case facts ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CaseFacts:
    """What statistics need of one case; deliberately no identifier of any kind."""

    created_at: str
    confirmed: bool
    dismissed: bool
    category: str | None
    country: str | None
    asn: str | None
    network: str | None  # the hosting prefix (CIDR), when the resolution had one
    org: str | None
    noticed: bool
    escalations: int
    removed: bool
    hours_from_report: float | None
    hours_from_notice: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CaseFacts:
        """Interpret one ``Store.stats_case_facts`` row."""
        confirmed = bool(row["matched"] or row["verdict_illegal"] or row["has_match"]
                         or row["assessment_verdict"] == "illegal")
        dismissed = not confirmed and bool(row["verdict_not_illegal"] or row["suppressed"]
                                           or row["assessment_verdict"] == "not_illegal")
        category = (row["assessment_category"] or row["verdict_category"]
                    or row["match_category"]) if confirmed else None
        # The monitoring record (re-check stage) is authoritative when present: a case that
        # reappeared has no removal any more. Without one, the trail's ``removed`` event counts.
        if row["has_monitoring"]:
            removed_at = row["removed_at"]
        else:
            removed_at = row["removed_event_at"] if row["state"] != "reappeared" else None
        first_notice = row["first_notice_sent_at"] or row["noticed_at"]
        from_report = from_notice = None
        if removed_at:
            from_report = _number(row["seconds_from_report"])
            if from_report is None:
                from_report = _seconds_between(removed_at, row["created_at"])
            from_notice = _number(row["seconds_from_notice"])
            if from_notice is None and first_notice:
                from_notice = _seconds_between(removed_at, first_notice)
        asn = _number(row["asn"])
        return cls(
            created_at=row["created_at"], confirmed=confirmed, dismissed=dismissed,
            category=str(category) if category else None,
            country=str(row["country"]).upper() if row["country"] else None,
            asn=f"AS{int(asn)}" if asn is not None else None,
            network=str(row["network"]) if row.get("network") else None,
            org=str(row["org"]) if row["org"] else None,
            noticed=bool(first_notice), escalations=int(row["escalations"] or 0),
            removed=bool(removed_at),
            # Removal found before the notice went out counts as immediate, not negative.
            hours_from_report=(None if from_report is None
                               else max(from_report, 0.0) / 3600.0),
            hours_from_notice=(None if from_notice is None
                               else max(from_notice, 0.0) / 3600.0))


def network_key(f: CaseFacts) -> str:
    """The network a case is credited to: its ASN, else its prefix, else ``unknown`` — never
    its organisation's name (one company name can stand for networks in many countries)."""
    return f.asn or f.network or "unknown"


# -- INHOPE's figures (ICCAM) -------------------------------------------------------------------
THREE_DAYS = 72.0


def _inhope_group(rows: list[dict[str, Any]], min_count: int) -> dict[str, Any]:
    def hours(key: str) -> list[float]:
        out = []
        for r in rows:
            seconds = _seconds_between(r[key], r["created_at"])
            if seconds is not None:
                out.append(max(seconds, 0.0) / 3600.0)
        return out

    removal = hours("removed_at")
    return {"cases": len(rows),
            "reported_to_iccam": sum(1 for r in rows if r["iccam_reported_at"]),
            "hours_to_iccam_report": removal_summary(hours("iccam_reported_at"), min_count),
            "hours_to_notice": removal_summary(hours("first_notice_at"), min_count),
            "hours_to_removal": removal_summary(removal, min_count),
            "removed_within_3d": _share(sum(1 for h in removal if h <= THREE_DAYS), len(rows),
                                        min_count)}


def inhope_summary(rows: Iterable[Mapping[str, Any]], min_count: int) -> dict[str, Any]:
    """INHOPE's time-to-takedown figures per hosting country (``Store.stats_iccam_facts``
    rows): hours from receipt at the hotline to our ICCAM report, to the first notice and to
    removal, and the share removed within 3 days of receipt. Countries with fewer than
    ``min_count`` cases fold into ``other``."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    everything = []
    for row in rows:
        entry = dict(row)
        everything.append(entry)
        groups[str(entry["country"]).upper() if entry["country"] else "unknown"].append(entry)
    kept = suppress({k: len(v) for k, v in groups.items()}, min_count)
    by_country: dict[str, Any] = {}
    folded: list[dict[str, Any]] = []
    for key, members in groups.items():
        if key in kept and key != OTHER:
            by_country[key] = _inhope_group(members, min_count)
        else:
            folded.extend(members)
    if folded:
        by_country[OTHER] = _inhope_group(folded, min_count)
    return {"clock": "from receipt at the hotline (the first report) (INHOPE)",
            "all": _inhope_group(everything, min_count),
            "by_country": dict(sorted(by_country.items(),
                                      key=lambda kv: (kv[0] == OTHER, -kv[1]["cases"],
                                                      kv[0])))}


# -- the statistics ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Stats:
    """The published aggregates (``summary``) and what the charts draw.

    ``removal_hours`` holds the individual removal times per clock for the distribution chart;
    it is empty when there are fewer than ``min_count`` removals and never leaves as text.
    """

    summary: dict[str, Any]
    min_count: int
    removal_hours: dict[str, list[float]] = field(default_factory=dict)


def _granularity(first: date | None, last: date | None) -> str:
    if first is None or last is None or (last - first).days <= 92:
        return "day"
    return "week" if (last - first).days <= 731 else "month"


def _bucket(day: str, granularity: str) -> str:
    d = date.fromisoformat(day)
    if granularity == "week":
        return (d - timedelta(days=d.weekday())).isoformat()  # the week's Monday
    if granularity == "month":
        return d.isoformat()[:7]
    return d.isoformat()


def _removal_group(facts: list[CaseFacts], min_count: int) -> dict[str, Any]:
    """Removal figures of a group of noticed cases: shares ``within`` are of the noticed
    cases, ``within_of_removed`` of the removed ones."""
    removed = [f for f in facts if f.removed]
    report = [f.hours_from_report for f in removed if f.hours_from_report is not None]
    notice = [f.hours_from_notice for f in removed if f.hours_from_notice is not None]
    rep = removal_summary(report, min_count)
    noti = removal_summary(notice, min_count)
    return {"noticed": len(facts), "removed": len(removed),
            "p50_hours": rep["p50"], "p90_hours": rep["p90"],
            "within": within_shares(report, min_count, of=len(facts)),
            "within_of_removed": within_shares(report, min_count),
            "p50_hours_from_notice": noti["p50"], "p90_hours_from_notice": noti["p90"],
            "within_from_notice": within_shares(notice, min_count, of=len(facts)),
            "within_from_notice_of_removed": within_shares(notice, min_count)}


def _removal_by(facts: list[CaseFacts], key: Any, min_count: int,
                label: Any = None) -> dict[str, Any]:
    """Removal figures per group of noticed cases; groups under ``min_count`` removals merge
    into ``other``."""
    groups: dict[str, list[CaseFacts]] = defaultdict(list)
    for f in facts:
        groups[key(f) or "unknown"].append(f)
    kept = suppress({k: sum(1 for f in v if f.removed) for k, v in groups.items()}, min_count)
    out: dict[str, Any] = {}
    folded: list[CaseFacts] = []
    for k, v in groups.items():
        if k not in kept or k == OTHER:
            folded.extend(v)
    for k in kept:
        if k == OTHER:
            continue
        entry = _removal_group(groups[k], min_count)
        if label is not None:
            entry = {**label(k, groups[k]), **entry}
        out[k] = entry
    if folded:
        entry = _removal_group(folded, min_count)
        out[OTHER] = {"org": None, "country": None, **entry} if label is not None else entry
    return out


def _network_label(key: str, facts: Iterable[CaseFacts]) -> dict[str, str | None]:
    """The organisation and country most often seen on a network (a label beside its key);
    none for ``unknown`` and ``other``, which are no one network."""
    if key in ("unknown", OTHER):
        return {"org": None, "country": None}
    members = list(facts)
    names = Counter(f.org for f in members if f.org)
    countries = Counter(f.country for f in members if f.country)
    return {"org": names.most_common(1)[0][0] if names else None,
            "country": countries.most_common(1)[0][0] if countries else None}


def compute(store: Any, period: Period, *, min_count: int = DEFAULT_MIN_COUNT,
            today: date | None = None) -> Stats:
    """All published aggregates for ``period`` from ``store`` (read-only)."""
    if min_count < 0:
        raise InputError(f"[stats] min_count must not be negative (got {min_count})")
    lo, hi = period.bounds()

    # Activity: reports received in the period.
    by_day: dict[str, Counter[str]] = defaultdict(Counter)
    by_channel: Counter[str] = Counter()
    reports = duplicates = 0
    for row in store.stats_reports_by_day(lo, hi):
        n = int(row["n"])
        reports += n
        duplicates += n if row["duplicate"] else 0
        by_channel[row["channel"]] += n
        by_day[row["day"]][row["channel"]] += n
    first_day = date.fromisoformat(min(by_day)) if by_day else None
    last_day = date.fromisoformat(max(by_day)) if by_day else None
    granularity = _granularity(period.start or first_day, period.end or last_day)
    series: dict[str, Counter[str]] = defaultdict(Counter)
    for day, channels in by_day.items():
        series[_bucket(day, granularity)].update(channels)
    reports_by_period = {
        bucket: {"total": sum(channels.values()), **suppress(channels, min_count)}
        for bucket, channels in sorted(series.items())}

    # The cohort: cases first reported in the period, and what became of them.
    facts = [CaseFacts.from_row(r) for r in store.stats_case_facts(lo, hi)]
    confirmed = [f for f in facts if f.confirmed]
    noticed = [f for f in facts if f.noticed]
    removed = [f for f in facts if f.removed]
    escalated = [f for f in facts if f.escalations]
    by_country = Counter(f.country or "unknown" for f in confirmed)
    by_category = Counter(f.category or "unspecified" for f in confirmed)
    members: dict[str, list[CaseFacts]] = defaultdict(list)
    for f in confirmed:
        members[network_key(f)].append(f)
    top = suppress({k: len(v) for k, v in members.items()}, min_count, limit=TOP_NETWORKS)
    top_networks = {k: {**_network_label(k, members.get(k, ())), "cases": n}
                    for k, n in top.items()}

    notices_by_kind = store.stats_notices_sent(lo, hi)
    from_report = [f.hours_from_report for f in removed if f.hours_from_report is not None]
    from_notice = [f.hours_from_notice for f in removed if f.hours_from_notice is not None]

    start = period.start or first_day
    end = period.end or today
    summary: dict[str, Any] = {
        "period": {"from": start.isoformat() if start else None,
                   "to": end.isoformat() if end else None},
        "min_count": min_count,
        "reports": reports,
        "duplicates": duplicates,
        "duplicate_share": _share(duplicates, reports, min_count),
        "by_channel": suppress(by_channel, min_count),
        "reports_by_period": {"granularity": granularity, "counts": reports_by_period},
        "cases": len(facts),
        "confirmed": len(confirmed),
        "confirmed_share": _share(len(confirmed), len(facts), min_count),
        "dismissed": sum(1 for f in facts if f.dismissed),
        "by_category": suppress(by_category, min_count),
        "by_country": suppress(by_country, min_count),
        "top_networks": top_networks,
        "cases_noticed": len(noticed),
        "notices_sent": sum(notices_by_kind.values()),
        "notices_by_recipient_kind": suppress(notices_by_kind, min_count),
        "notices_source": ("notices" if store.stats_notices_available() else "events"),
        "escalated": len(escalated),
        "escalations": store.stats_escalation_events(lo, hi),
        "removed": len(removed),
        "removed_share": _share(len(removed), len(noticed), min_count),
        "removal_hours": removal_summary(from_report, min_count),
        # Shares of the NOTICED cases removed within 24 h / 72 h / 7 days; the shares of the
        # removed cases only are the ``..._of_removed`` figures (and say so).
        "removed_within": within_shares(from_report, min_count, of=len(noticed)),
        "removed_within_of_removed": within_shares(from_report, min_count),
        "removal_hours_from_notice": removal_summary(from_notice, min_count),
        "removed_within_from_notice": within_shares(from_notice, min_count,
                                                    of=len(noticed)),
        "removed_within_from_notice_of_removed": within_shares(from_notice, min_count),
        "removal_by_country": _removal_by(noticed, lambda f: f.country, min_count),
        "removal_by_hoster": _removal_by(noticed, network_key, min_count,
                                         label=_network_label),
        "clocks": {"removal_hours": CLOCKS["report"],
                   "removal_hours_from_notice": CLOCKS["notice"]},
        "inhope": inhope_summary(store.stats_iccam_facts(lo, hi), min_count),
    }
    hours = {}
    if len(from_report) >= max(min_count, 1):
        hours["report"] = sorted(from_report)
    if len(from_notice) >= max(min_count, 1):
        hours["notice"] = sorted(from_notice)
    return Stats(summary=summary, min_count=min_count, removal_hours=hours)


def compute_for_runtime(rt: Any, period: Period) -> Stats:
    """``compute`` with ``[stats] min_count`` from the configuration (0: suppress nothing) and
    the runtime's clock."""
    min_count = rt.config.get("stats", "min_count", DEFAULT_MIN_COUNT)
    if isinstance(min_count, bool) or not isinstance(min_count, int):
        raise ConfigError(f"[stats] min_count: expected an integer, got {min_count!r}")
    now: datetime = rt.clock.now()
    return compute(rt.store, period, min_count=min_count, today=now.date())


# -- CSV -------------------------------------------------------------------------------------------
def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _flatten(f"{prefix}/{k}" if prefix else str(k), v)
    else:
        yield prefix, value


def to_rows(summary: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """The summary as flat ``(metric, key, value)`` rows; nested keys join with ``/``."""
    rows: list[tuple[str, str, Any]] = []
    for metric, value in summary.items():
        if isinstance(value, Mapping):
            rows.extend((metric, key, v) for key, v in _flatten("", value))
        else:
            rows.append((metric, "", value))
    return rows


def to_csv(summary: Mapping[str, Any]) -> str:
    """CSV text with a ``metric,key,value`` header; suppressed values are empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("metric", "key", "value"))
    for metric, key, value in to_rows(summary):
        if isinstance(value, bool):
            value = "true" if value else "false"
        writer.writerow((metric, key, "" if value is None else value))
    return out.getvalue()


# -- charts ----------------------------------------------------------------------------------------
CHART_FILES = ("reports_per_period.png", "cases_by_country.png", "time_to_removal.png",
               "removed_within.png")


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator  # deferred: heavy dependency, loaded on first use

    axis.set_major_locator(MaxNLocator(integer=True))  # counts: no 2.5 reports


def _figure(width: float = 8.0, height: float = 4.5) -> Any:
    # The object API with an explicit Agg canvas: no pyplot global state, no display needed.
    try:
        # deferred: heavy dependency, loaded on first use
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure  # deferred: heavy dependency, loaded on first use
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib (pip install matplotlib)") from exc

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11,
            color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _title(stats: Stats, what: str) -> str:
    period = stats.summary["period"]
    return f"{what}\n{period['from'] or '…'} – {period['to'] or '…'}"


def _chart_reports(stats: Stats, path: Path) -> None:
    block = stats.summary["reports_by_period"]
    counts: dict[str, dict[str, int]] = block["counts"]
    fig = _figure(9.0, 4.5)
    ax = fig.add_subplot()
    if not counts:
        _note(ax, "no reports in this period")
    else:
        buckets = list(counts)
        channels = sorted({c for row in counts.values() for c in row if c != "total"},
                          key=lambda c: (c == OTHER, c))
        xs = list(range(len(buckets)))
        bottom = [0] * len(buckets)
        for channel in channels:
            values = [counts[b].get(channel, 0) for b in buckets]
            ax.bar(xs, values, bottom=bottom, label=channel, width=0.8)
            bottom = [a + b for a, b in zip(bottom, values, strict=True)]
        step = max(1, len(buckets) // 12)
        ax.set_xticks(xs[::step], [b for b in buckets][::step], rotation=45, ha="right",
                      fontsize=8)
        ax.set_ylabel("reports")
        _integer_ticks(ax.yaxis)
        ax.legend(title="channel", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(_title(stats, f"Reports per {block['granularity']} by channel "
                               f"(cells < {stats.min_count} folded into 'other')"), fontsize=10)
    fig.savefig(path)


def _chart_countries(stats: Stats, path: Path) -> None:
    by_country: dict[str, int] = stats.summary["by_country"]
    fig = _figure(8.0, max(3.0, 0.45 * len(by_country) + 1.5))
    ax = fig.add_subplot()
    if not by_country:
        _note(ax, "no confirmed cases in this period")
    else:
        names = list(by_country)[::-1]  # largest at the top
        values = [by_country[n] for n in names]
        bars = ax.barh(names, values, color="#4C72B0")
        ax.bar_label(bars, padding=3, fontsize=8)
        ax.set_xlabel("confirmed cases")
        _integer_ticks(ax.xaxis)
        ax.grid(axis="x", alpha=0.3)
    ax.set_title(_title(stats, f"Confirmed cases by hosting country "
                               f"(countries < {stats.min_count} in 'other')"), fontsize=10)
    fig.savefig(path)


_BINS = (0, 6, 12, 24, 48, 72, 168, 336)
_TICK_LABELS = {1: "1 h", 6: "6 h", 24: "24 h", 72: "3 d", 168: "7 d", 720: "30 d", 2160: "90 d"}


def _chart_removal(stats: Stats, path: Path) -> None:
    labels = {"report": "from report (INHOPE)", "notice": "from notice (IWF)"}
    if not stats.removal_hours:
        fig = _figure(8.0, 4.0)
        n = stats.summary["removed"]
        _note(fig.add_subplot(), f"{n} removal(s): fewer than {stats.min_count}, not drawn"
              if n else "no removals measured")
    else:
        fig = _figure(10.0, 4.5)
        hist, cdf = fig.subplots(1, 2)
        edges = [*_BINS, max(_BINS[-1] + 1, *(max(v) + 1 for v in stats.removal_hours.values()))]
        names = [f"{a}-{b}h" for a, b in zip(_BINS, _BINS[1:], strict=False)] + [f">{_BINS[-1]}h"]
        width = 0.8 / len(stats.removal_hours)
        for i, (clock_name, hours) in enumerate(stats.removal_hours.items()):
            counts = [sum(1 for h in hours if lo <= h < hi)
                      for lo, hi in zip(edges, edges[1:], strict=False)]
            # The last bin is closed so the longest removal is counted.
            counts[-1] += sum(1 for h in hours if h == edges[-1])
            xs = [x + i * width for x in range(len(names))]
            hist.bar(xs, counts, width=width, label=labels[clock_name])
            # Log axis: removals take from minutes to weeks. Sub-half-hour values sit at 0.5 h.
            ordered = [max(h, 0.5) for h in sorted(hours)]
            ys = [(k + 1) / len(ordered) for k in range(len(ordered))]
            cdf.step([0.5, *ordered], [0.0, *ys], where="post", label=labels[clock_name])
        hist.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=45,
                        ha="right", fontsize=8)
        _integer_ticks(hist.yaxis)
        hist.set_ylabel("removed cases")
        hist.set_title("Time to removal (distribution)", fontsize=10)
        hist.legend(fontsize=8)
        hist.grid(axis="y", alpha=0.3)
        for label, limit in WINDOWS.items():
            cdf.axvline(limit, color="#999999", linestyle="--", linewidth=0.8)
            cdf.text(limit, 1.03, label, fontsize=8, color="#555555", ha="center")
        longest = max(max(v) for v in stats.removal_hours.values())
        cdf.set_xscale("log")
        cdf.set_xlim(0.5, max(longest * 1.3, 200.0))
        ticks = [t for t in (1, 6, 24, 72, 168, 720, 2160) if t <= max(longest * 1.3, 200.0)]
        cdf.set_xticks(ticks, [_TICK_LABELS[t] for t in ticks])
        cdf.minorticks_off()
        cdf.set_ylim(0, 1.08)
        cdf.set_xlabel("hours to removal")
        cdf.set_ylabel("share of removed cases")
        cdf.set_title("Time to removal (cumulative)", fontsize=10)
        cdf.legend(fontsize=8, loc="lower right")
        cdf.grid(alpha=0.3)
    fig.suptitle(_title(stats, "Time to removal"), fontsize=10)
    fig.savefig(path)


def _chart_within(stats: Stats, path: Path) -> None:
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    series = {"from report (INHOPE)": stats.summary["removed_within"],
              "from notice (IWF)": stats.summary["removed_within_from_notice"]}
    if all(v is None for s in series.values() for v in s.values()):
        _note(ax, f"fewer than {stats.min_count} removals measured: suppressed")
    else:
        width = 0.38
        for i, (name, shares) in enumerate(series.items()):
            xs = [x + i * width for x in range(len(WINDOWS))]
            values = [100.0 * (shares[w] or 0.0) for w in WINDOWS]
            bars = ax.bar(xs, values, width=width, label=name)
            ax.bar_label(bars, labels=["n/a" if shares[w] is None else f"{100 * shares[w]:.0f}%"
                                       for w in WINDOWS], padding=2, fontsize=8)
        ax.set_xticks([x + width / 2 for x in range(len(WINDOWS))],
                      [f"within {w}" for w in WINDOWS])
        ax.set_ylim(0, 110)
        ax.set_ylabel("% of noticed cases")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(_title(stats, "Share of noticed cases removed within 24 h / 72 h / 7 days"),
                 fontsize=10)
    fig.savefig(path)


def plot(stats: Stats, directory: str | Path) -> list[Path]:
    """Write the PNG charts into ``directory`` (created if missing); return their paths.

    Charts draw the published (suppressed) aggregates only; the removal-time distribution is drawn
    only when at least ``min_count`` removals were measured by that clock.
    """
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--plot: cannot create {out}: {exc.strerror or exc}") from exc
    makers = (_chart_reports, _chart_countries, _chart_removal, _chart_within)
    paths = []
    for name, make in zip(CHART_FILES, makers, strict=True):
        path = out / name
        try:
            make(stats, path)
        except OSError as exc:
            raise InputError(f"--plot: cannot write {path}: {exc.strerror or exc}") from exc
        paths.append(path)
    return paths
