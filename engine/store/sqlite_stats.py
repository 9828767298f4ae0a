"""SQLite part of the store for anonymised statistics (read-only aggregate queries).

Mixed into ``SQLiteStore``. Every method only reads. None of them returns a URL, host, domain,
reporter value or case id: rows are per-case *facts* (times, state, category, hosting network) or
counts, so the statistics layer (``engine.stats``) never holds anything it could leak.

Time bounds are ntd timestamp text (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), compared as text: ``start``
is inclusive, ``end`` exclusive (``engine.stats`` passes ``'0000'`` / ``'9999'`` for "all time").
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

# Per-case facts of the cases first reported in [start, end). One row per case, no identifiers.
# Confirmation, verdicts, notices, removals and escalations come from the append-only trail;
# category, hosting network and removal clocks from case data (``match``, ``assessment``,
# ``resolution``, ``monitoring``), which retention keeps when it anonymises a case.
_CASE_FACTS = """
WITH cohort AS (
    SELECT id, state, created_at FROM cases WHERE created_at >= ? AND created_at < ?
), ev AS (
    SELECT e.case_id,
           max(e.action IN ('matched', 'confirmed')) AS matched,
           max(e.action = 'verdict' AND json_extract(e.detail, '$.verdict') = 'illegal')
               AS verdict_illegal,
           max(e.action = 'verdict' AND json_extract(e.detail, '$.verdict') = 'not_illegal')
               AS verdict_not_illegal,
           max(e.action = 'suppressed') AS suppressed,
           max(CASE WHEN e.action = 'verdict' THEN json_extract(e.detail, '$.category') END)
               AS verdict_category,
           min(CASE WHEN e.action = 'noticed' THEN e.at END) AS noticed_at,
           max(CASE WHEN e.action = 'removed' THEN e.at END) AS removed_event_at,
           sum(e.action LIKE 'escalat%') AS escalations
    FROM events e JOIN cohort c ON c.id = e.case_id
    GROUP BY e.case_id
)
SELECT c.created_at, c.state,
       coalesce(ev.matched, 0) AS matched,
       coalesce(ev.verdict_illegal, 0) AS verdict_illegal,
       coalesce(ev.verdict_not_illegal, 0) AS verdict_not_illegal,
       coalesce(ev.suppressed, 0) AS suppressed,
       ev.verdict_category,
       ev.noticed_at, ev.removed_event_at,
       coalesce(ev.escalations, 0) AS escalations,
       m.value IS NOT NULL AS has_match,
       json_extract(m.value, '$.category') AS match_category,
       json_extract(a.value, '$.verdict') AS assessment_verdict,
       json_extract(a.value, '$.category') AS assessment_category,
       json_extract(r.value, '$.country') AS country,
       json_extract(r.value, '$.asn') AS asn,
       json_extract(r.value, '$.org') AS org,
       mo.value IS NOT NULL AS has_monitoring,
       json_extract(mo.value, '$.removed_at') AS removed_at,
       json_extract(mo.value, '$.seconds_to_removal_from_report') AS seconds_from_report,
       json_extract(mo.value, '$.seconds_to_removal_from_notice') AS seconds_from_notice,
       {first_sent_column} AS first_notice_sent_at
FROM cohort c
LEFT JOIN ev ON ev.case_id = c.id{first_sent_join}
LEFT JOIN case_data m ON m.case_id = c.id AND m.key = 'match'
LEFT JOIN case_data a ON a.case_id = c.id AND a.key = 'assessment'
LEFT JOIN case_data r ON r.case_id = c.id AND r.key = 'resolution'
LEFT JOIN case_data mo ON mo.case_id = c.id AND mo.key = 'monitoring'
"""

# The first notice actually sent for each case (IWF clock), through the outbox action it rode
# in. One grouped pass joined to the cohort: outbox has no case_id index, so a per-case
# subquery would scan it once per case.
_FIRST_SENT_JOIN = """
LEFT JOIN (SELECT o.case_id, min(n.sent_at) AS first_sent
           FROM outbox o JOIN notices n ON n.id = o.notice_id
           WHERE n.sent_at IS NOT NULL AND o.case_id IS NOT NULL
           GROUP BY o.case_id) fs ON fs.case_id = c.id"""


class SQLiteStatsMixin:
    """Aggregate queries of the SQLite store used by ``engine.stats``."""

    if TYPE_CHECKING:  # provided by SQLiteStore; never defined here at run time (MRO)
        conn: sqlite3.Connection

        def _read(self, sql: str, params: Any = ()) -> list[sqlite3.Row]: ...

    def _stats_has_columns(self, table: str, columns: tuple[str, ...]) -> bool:
        """Whether ``table`` exists with all ``columns`` (older schemas lack the notices)."""
        found = {r[1] for r in self._read(f"PRAGMA table_info({table})")}
        return set(columns) <= found

    def stats_notices_available(self) -> bool:
        """True when the notices table (schema 4) is there; else notices count from events."""
        return (self._stats_has_columns("notices", ("id", "state", "sent_at", "recipient_kind"))
                and self._stats_has_columns("outbox", ("notice_id", "case_id")))

    def stats_reports_by_day(self, start: str, end: str) -> list[sqlite3.Row]:
        """Report counts received in [start, end) per (``day``, ``channel``, ``duplicate``)."""
        return self._read(
            "SELECT substr(received_at, 1, 10) AS day, channel, duplicate, count(*) AS n"
            " FROM reports WHERE received_at >= ? AND received_at < ?"
            " GROUP BY day, channel, duplicate ORDER BY day, channel", (start, end))

    def stats_case_facts(self, start: str, end: str) -> list[sqlite3.Row]:
        """One row of facts per case first reported in [start, end); no identifiers.

        Columns: created_at, state, matched, verdict_illegal, verdict_not_illegal, suppressed,
        verdict_category, noticed_at, removed_event_at, escalations, has_match, match_category,
        assessment_verdict, assessment_category, country, asn, org, has_monitoring, removed_at,
        seconds_from_report, seconds_from_notice, first_notice_sent_at.
        """
        if self.stats_notices_available():
            sql = _CASE_FACTS.format(first_sent_column="fs.first_sent",
                                     first_sent_join=_FIRST_SENT_JOIN)
        else:
            sql = _CASE_FACTS.format(first_sent_column="NULL", first_sent_join="")
        return self._read(sql, (start, end))

    def stats_notices_sent(self, start: str, end: str) -> dict[str, int]:
        """Notices sent in [start, end) per recipient kind.

        Falls back to counting ``noticed`` events (kind ``unknown``) on a schema without the
        notices table.
        """
        if not self.stats_notices_available():
            rows = self._read("SELECT 'unknown' AS kind, count(*) AS n FROM events"
                              " WHERE action = 'noticed' AND at >= ? AND at < ?", (start, end))
        else:
            rows = self._read(
                "SELECT recipient_kind AS kind, count(*) AS n FROM notices"
                " WHERE state = 'sent' AND sent_at >= ? AND sent_at < ?"
                " GROUP BY recipient_kind", (start, end))
        return {str(r["kind"]): int(r["n"]) for r in rows if r["n"]}

    def stats_escalation_events(self, start: str, end: str) -> int:
        """Escalation steps (events ``escalat*``) recorded in [start, end)."""
        rows = self._read("SELECT count(*) AS n FROM events WHERE action LIKE 'escalat%'"
                          " AND at >= ? AND at < ?", (start, end))
        return int(rows[0]["n"])

    def stats_first_activity(self) -> str | None:
        """The earliest report time in the store (the start of "all time"), or None."""
        rows = self._read("SELECT min(received_at) AS first FROM reports")
        return rows[0]["first"] if rows else None
