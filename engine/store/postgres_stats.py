"""PostgreSQL part of the store for anonymised statistics (read-only aggregate queries).

Mixed into ``PostgresStore``; mirrors ``engine.store.sqlite_stats`` row for row (same column
names, same value types: JSON fields come back as their JSON type, flags as 0/1 integers). No
method returns a URL, host, domain, reporter value or case id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# ``col::json -> 'k'`` yields the JSON value (psycopg loads it: numbers stay numbers, like
# SQLite's json_extract); ``->>`` yields text for comparisons.
_CASE_FACTS = """
WITH cohort AS (
    SELECT id, state, created_at FROM cases WHERE created_at >= %(start)s AND created_at < %(end)s
), ev AS (
    SELECT e.case_id,
           max(CASE WHEN e.action IN ('matched', 'confirmed') THEN 1 ELSE 0 END) AS matched,
           max(CASE WHEN e.action = 'verdict' AND e.detail::json ->> 'verdict' = 'illegal'
               THEN 1 ELSE 0 END) AS verdict_illegal,
           max(CASE WHEN e.action = 'verdict' AND e.detail::json ->> 'verdict' = 'not_illegal'
               THEN 1 ELSE 0 END) AS verdict_not_illegal,
           max(CASE WHEN e.action = 'suppressed' THEN 1 ELSE 0 END) AS suppressed,
           max(CASE WHEN e.action = 'verdict' THEN e.detail::json ->> 'category' END)
               AS verdict_category,
           min(CASE WHEN e.action = 'noticed' THEN e.at END) AS noticed_at,
           max(CASE WHEN e.action = 'removed' THEN e.at END) AS removed_event_at,
           sum(CASE WHEN e.action LIKE 'escalat%%' THEN 1 ELSE 0 END) AS escalations
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
       (m.value IS NOT NULL)::int AS has_match,
       m.value::json -> 'category' AS match_category,
       a.value::json -> 'verdict' AS assessment_verdict,
       a.value::json -> 'category' AS assessment_category,
       r.value::json -> 'country' AS country,
       r.value::json -> 'asn' AS asn,
       r.value::json -> 'org' AS org,
       (mo.value IS NOT NULL)::int AS has_monitoring,
       mo.value::json -> 'removed_at' AS removed_at,
       mo.value::json -> 'seconds_to_removal_from_report' AS seconds_from_report,
       mo.value::json -> 'seconds_to_removal_from_notice' AS seconds_from_notice,
       {first_sent_column} AS first_notice_sent_at
FROM cohort c
LEFT JOIN ev ON ev.case_id = c.id{first_sent_join}
LEFT JOIN case_data m ON m.case_id = c.id AND m.key = 'match'
LEFT JOIN case_data a ON a.case_id = c.id AND a.key = 'assessment'
LEFT JOIN case_data r ON r.case_id = c.id AND r.key = 'resolution'
LEFT JOIN case_data mo ON mo.case_id = c.id AND mo.key = 'monitoring'
"""

_FIRST_SENT_JOIN = """
LEFT JOIN (SELECT o.case_id, min(n.sent_at) AS first_sent
           FROM outbox o JOIN notices n ON n.id = o.notice_id
           WHERE n.sent_at IS NOT NULL AND o.case_id IS NOT NULL
           GROUP BY o.case_id) fs ON fs.case_id = c.id"""


class PostgresStatsMixin:
    """Aggregate queries of the PostgreSQL store used by ``engine.stats``."""

    if TYPE_CHECKING:  # provided by PostgresStore; never defined here at run time (MRO)
        def _read(self, sql: str, params: Any = ()) -> list[Any]: ...

    def _stats_has_columns(self, table: str, columns: tuple[str, ...]) -> bool:
        """Whether ``table`` exists (on the search path) with all ``columns``."""
        found = {r["attname"] for r in self._read(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
            " AND attnum > 0 AND NOT attisdropped", (table,))}
        return set(columns) <= found

    def stats_notices_available(self) -> bool:
        """True when the notices table (schema 4) is there; else notices count from events."""
        return (self._stats_has_columns("notices", ("id", "state", "sent_at", "recipient_kind"))
                and self._stats_has_columns("outbox", ("notice_id", "case_id")))

    def stats_reports_by_day(self, start: str, end: str) -> list[dict[str, Any]]:
        """Report counts received in [start, end) per (``day``, ``channel``, ``duplicate``)."""
        return self._read(
            "SELECT substr(received_at, 1, 10) AS day, channel, duplicate, count(*) AS n"
            " FROM reports WHERE received_at >= %s AND received_at < %s"
            " GROUP BY day, channel, duplicate ORDER BY day, channel", (start, end))

    def stats_case_facts(self, start: str, end: str) -> list[dict[str, Any]]:
        """One row of facts per case first reported in [start, end); no identifiers.

        Same columns as ``SQLiteStatsMixin.stats_case_facts``.
        """
        if self.stats_notices_available():
            sql = _CASE_FACTS.format(first_sent_column="fs.first_sent",
                                     first_sent_join=_FIRST_SENT_JOIN)
        else:
            sql = _CASE_FACTS.format(first_sent_column="NULL", first_sent_join="")
        return self._read(sql, {"start": start, "end": end})

    def stats_notices_sent(self, start: str, end: str) -> dict[str, int]:
        """Notices sent in [start, end) per recipient kind (``noticed`` events without notices).
        """
        if not self.stats_notices_available():
            rows = self._read("SELECT 'unknown' AS kind, count(*) AS n FROM events"
                              " WHERE action = 'noticed' AND at >= %s AND at < %s", (start, end))
        else:
            rows = self._read(
                "SELECT recipient_kind AS kind, count(*) AS n FROM notices"
                " WHERE state = 'sent' AND sent_at >= %s AND sent_at < %s"
                " GROUP BY recipient_kind", (start, end))
        return {str(r["kind"]): int(r["n"]) for r in rows if r["n"]}

    def stats_escalation_events(self, start: str, end: str) -> int:
        """Escalation steps (events ``escalat*``) recorded in [start, end)."""
        rows = self._read("SELECT count(*) AS n FROM events WHERE action LIKE 'escalat%%'"
                          " AND at >= %s AND at < %s", (start, end))
        return int(rows[0]["n"])

    def stats_first_activity(self) -> str | None:
        """The earliest report time in the store (the start of "all time"), or None."""
        rows = self._read("SELECT min(received_at) AS first FROM reports")
        return rows[0]["first"] if rows else None
