"""Anonymised statistics, written once for both backends (read-only aggregate queries).

Mixed into ``engine.store.sql.SQLStore``; rows come back as dicts with the same column names and
value types on both backends (JSON fields as their JSON type, flags as 0/1 integers). Every
method only reads. None of them returns a URL, host, domain, reporter value or case id: rows
are per-case *facts* (times, state, category, hosting network) or counts, so the statistics
layer (``engine.stats``) never holds anything it could leak.

Time bounds are ntd timestamp text (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), compared as text: ``start``
is inclusive, ``end`` exclusive (``engine.stats`` passes ``'0000'`` / ``'9999'`` for "all time").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store.dialect import Dialect

# Per-case facts of the cases first reported in [start, end). One row per case, no identifiers.
# Confirmation, verdicts, notices, removals and escalations come from the append-only trail;
# category, hosting network and removal clocks from case data (``match``, ``assessment``,
# ``resolution``, ``monitoring``), which retention keeps when it anonymises a case.
_CASE_FACTS = """
WITH cohort AS (
    SELECT id, state, created_at FROM cases WHERE created_at >= ? AND created_at < ?
), ev AS (
    SELECT e.case_id,
           max(CASE WHEN e.action IN ('matched', 'confirmed') THEN 1 ELSE 0 END) AS matched,
           max(CASE WHEN e.action = 'verdict' AND {verdict} = 'illegal'
               THEN 1 ELSE 0 END) AS verdict_illegal,
           max(CASE WHEN e.action = 'verdict' AND {verdict} = 'not_illegal'
               THEN 1 ELSE 0 END) AS verdict_not_illegal,
           max(CASE WHEN e.action = 'suppressed' THEN 1 ELSE 0 END) AS suppressed,
           max(CASE WHEN e.action = 'verdict' THEN {category} END)
               AS verdict_category,
           min(CASE WHEN e.action = 'noticed' THEN e.at END) AS noticed_at,
           max(CASE WHEN e.action = 'removed' THEN e.at END) AS removed_event_at,
           sum(CASE WHEN e.action LIKE 'escalat%' THEN 1 ELSE 0 END) AS escalations
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
       CASE WHEN m.value IS NOT NULL THEN 1 ELSE 0 END AS has_match,
       {m_category} AS match_category,
       {a_verdict} AS assessment_verdict,
       {a_category} AS assessment_category,
       {r_country} AS country,
       {r_asn} AS asn,
       {r_network} AS network,
       {r_org} AS org,
       CASE WHEN mo.value IS NOT NULL THEN 1 ELSE 0 END AS has_monitoring,
       {mo_removed_at} AS removed_at,
       {mo_seconds_to_removal_from_report} AS seconds_from_report,
       {mo_seconds_to_removal_from_notice} AS seconds_from_notice,
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


def _case_facts_sql(dialect: Dialect, *, with_notices: bool) -> str:
    fields = {"verdict": dialect.json_text("e.detail", "verdict"),
              "category": dialect.json_text("e.detail", "category")}
    for alias, key in (("m", "category"), ("a", "verdict"), ("a", "category"), ("r", "country"),
                       ("r", "asn"), ("r", "network"), ("r", "org"), ("mo", "removed_at"),
                       ("mo", "seconds_to_removal_from_report"),
                       ("mo", "seconds_to_removal_from_notice")):
        fields[f"{alias}_{key}"] = dialect.json_value(f"{alias}.value", key)
    if with_notices:
        fields.update(first_sent_column="fs.first_sent", first_sent_join=_FIRST_SENT_JOIN)
    else:
        fields.update(first_sent_column="NULL", first_sent_join="")
    return _CASE_FACTS.format(**fields)


class SQLStatsMixin:
    """Aggregate queries of the SQL store used by ``engine.stats``."""

    if TYPE_CHECKING:  # provided by SQLStore; never defined here at run time (MRO)
        dialect: Dialect

        def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]: ...

        def _table_columns(self, table: str) -> set[str]: ...

    def _stats_has_columns(self, table: str, columns: tuple[str, ...]) -> bool:
        """Whether ``table`` exists with all ``columns`` (older schemas lack the notices)."""
        return set(columns) <= self._table_columns(table)

    def stats_notices_available(self) -> bool:
        """True when the notices table (schema 4) is there; else notices count from events."""
        return (self._stats_has_columns("notices", ("id", "state", "sent_at", "recipient_kind"))
                and self._stats_has_columns("outbox", ("notice_id", "case_id")))

    def stats_reports_by_day(self, start: str, end: str) -> list[dict[str, Any]]:
        """Report counts received in [start, end) per (``day``, ``channel``, ``duplicate``)."""
        return self.query(
            "SELECT substr(received_at, 1, 10) AS day, channel, duplicate, count(*) AS n"
            " FROM reports WHERE received_at >= ? AND received_at < ?"
            " GROUP BY day, channel, duplicate ORDER BY day, channel", (start, end))

    def stats_case_facts(self, start: str, end: str) -> list[dict[str, Any]]:
        """One row of facts per case first reported in [start, end); no identifiers.

        Columns: created_at, state, matched, verdict_illegal, verdict_not_illegal, suppressed,
        verdict_category, noticed_at, removed_event_at, escalations, has_match, match_category,
        assessment_verdict, assessment_category, country, asn, network, org, has_monitoring,
        removed_at,
        seconds_from_report, seconds_from_notice, first_notice_sent_at.
        """
        sql = _case_facts_sql(self.dialect, with_notices=self.stats_notices_available())
        return self.query(sql, (start, end))

    def stats_notices_sent(self, start: str, end: str) -> dict[str, int]:
        """Notices sent in [start, end) per recipient kind.

        Falls back to counting ``noticed`` events (kind ``unknown``) on a schema without the
        notices table.
        """
        if not self.stats_notices_available():
            rows = self.query("SELECT 'unknown' AS kind, count(*) AS n FROM events"
                              " WHERE action = 'noticed' AND at >= ? AND at < ?", (start, end))
        else:
            rows = self.query(
                "SELECT recipient_kind AS kind, count(*) AS n FROM notices"
                " WHERE state = 'sent' AND sent_at >= ? AND sent_at < ?"
                " GROUP BY recipient_kind", (start, end))
        return {str(r["kind"]): int(r["n"]) for r in rows if r["n"]}

    def stats_escalation_events(self, start: str, end: str) -> int:
        """Escalation steps (events ``escalat*``) recorded in [start, end)."""
        rows = self.query("SELECT count(*) AS n FROM events WHERE action LIKE 'escalat%'"
                          " AND at >= ? AND at < ?", (start, end))
        return int(rows[0]["n"])

    def stats_first_activity(self) -> str | None:
        """The earliest report time in the store (the start of "all time"), or None."""
        rows = self.query("SELECT min(received_at) AS first FROM reports")
        return rows[0]["first"] if rows else None
