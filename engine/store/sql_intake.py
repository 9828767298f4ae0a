"""Reports handed in by intake sources, written once for both backends.

Mixed into ``engine.store.sql.SQLStore``; the role interface is
``engine.store.roles.IntakeSourceStore``.

``intake_refs`` holds one row per handed-in message: the source's name, the SHA-256 of the
source's reference (never the reference itself: a Message-ID can name the sender's host), the
batch it became and when the source confirmed its receipt. The batch, its reports, their sealed
reporter records and the reference row are written in one transaction, so a source that dies
mid-message and hands the same message in again after a restart stores it exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from engine.ids import new_id
from engine.store.records import HandInOutcome, IntakeOutcome, IntakeRow

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class SQLIntakeMixin:
    """Intake-source methods of the SQL store."""

    if TYPE_CHECKING:  # provided by SQLStore; never defined here at run time (MRO)

        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self, sql: str, params: Any = ()) -> list[Any]: ...

        def _lock(self, conn: Any, name: str) -> None: ...

        def _add_reports_in(self, conn: Any, batch_id: str, channel: str, at: str,
                            rows: Sequence[IntakeRow]) -> IntakeOutcome: ...

        def erase_reporters(self, reporter_ids: Iterable[str]) -> int: ...

    def hand_in(self, *, source: str, reference: str, channel: str, at: str,
                rows: Sequence[IntakeRow], rejected: int) -> HandInOutcome:
        with self._write() as conn:
            self._lock(conn, "intake")
            known = conn.execute(
                "SELECT b.id, b.accepted, b.duplicates, b.rejected FROM intake_refs r"
                " JOIN batches b ON b.id = r.batch_id WHERE r.source = ? AND r.reference = ?",
                (source, reference)).fetchone()
            if known is not None:
                return HandInOutcome(batch=known["id"], known=True,
                                     accepted=known["accepted"] or 0,
                                     duplicates=known["duplicates"] or 0,
                                     rejected=known["rejected"] or 0)
            batch = new_id("B")
            conn.execute("INSERT INTO batches(id, channel, source, created_at) VALUES (?,?,?,?)",
                         (batch, channel, source, at))
            outcome = (self._add_reports_in(conn, batch, channel, at, rows) if rows
                       else IntakeOutcome(accepted=0, duplicates=0))
            conn.execute("UPDATE batches SET accepted=?, duplicates=?, rejected=? WHERE id=?",
                         (outcome.accepted, outcome.duplicates, rejected, batch))
            conn.execute("INSERT INTO intake_refs(source, reference, batch_id, created_at)"
                         " VALUES (?,?,?,?)", (source, reference, batch, at))
        return HandInOutcome(batch=batch, known=False, accepted=outcome.accepted,
                             duplicates=outcome.duplicates, rejected=rejected)

    def intake_batch(self, *, source: str, reference: str) -> dict[str, Any] | None:
        rows = self._read("SELECT batch_id, created_at, receipt_at FROM intake_refs"
                          " WHERE source = ? AND reference = ?", (source, reference))
        return dict(rows[0]) if rows else None

    def intake_receipt_done(self, *, source: str, reference: str, now: str) -> int:
        with self._write() as conn:
            row = conn.execute("SELECT batch_id FROM intake_refs WHERE source = ? AND"
                               " reference = ?", (source, reference)).fetchone()
            if row is None:
                return 0
            conn.execute("UPDATE intake_refs SET receipt_at = ? WHERE source = ? AND"
                         " reference = ?", (now, source, reference))
            ids = [r["id"] for r in conn.execute(
                "SELECT p.id FROM reporters p JOIN reports r ON r.id = p.report_id"
                " WHERE r.batch_id = ?", (row["batch_id"],))]
        return self.erase_reporters(ids) if ids else 0
