"""Web intake on ``engine.intake``: one anonymous URL, or an analyst's uploaded batch.

Both use the same canonicalisation and rejection reasons as ``ntd submit``. A batch is parsed and
validated completely before anything is stored, so an unreadable body (CSV without a ``url``
column, a broken JSON array) stores nothing; per-line rejections (a line that is not UTF-8, too
long, JSON nested too deep, an unclosed CSV quote, a bad URL) are reported while the good lines
are stored, exactly like ``ntd submit --json``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock
from engine.errors import InputError
from engine.intake import SubmitResult, clean_metadata, preview
from engine.intake_formats import Record, read_records
from engine.store import IntakeRow, Store
from engine.urls import canonicalize

WEBFORM = "webform"
# Content types of a batch body and the intake format each means (None: detect from content).
BATCH_TYPES: dict[str, str | None] = {
    "text/plain": None, "text/csv": "csv", "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson", "application/jsonl": "ndjson", "application/json": "json",
}


@dataclass(frozen=True, kw_only=True)
class WebReport:
    """What storing one anonymous report did (nothing here identifies the reporter)."""

    case_id: str
    duplicate: bool


def row_for_url(raw: Any, line: int = 1) -> IntakeRow:
    """Canonicalise one submitted URL into an intake row; ``InputError`` says why not."""
    if not isinstance(raw, str) or not raw.strip():
        raise InputError("missing url")
    canonical = canonicalize(raw)
    return IntakeRow(raw_url=raw.strip(), canonical_url=canonical.url, host=canonical.host,
                     domain=canonical.domain, line=line)


def submit_webform(store: Store, raw_url: str, clock: Clock) -> WebReport:
    """Store one web-form report as its own batch (source ``webform``; no reporter data)."""
    row = row_for_url(raw_url)
    now = clock.now_text()
    batch = store.create_batch(channel=WEBFORM, source=WEBFORM, at=now)
    outcome = store.add_reports(batch, WEBFORM, now, [row])
    store.finish_batch(batch, accepted=outcome.accepted, duplicates=outcome.duplicates,
                       rejected=0)
    return WebReport(case_id=outcome.case_ids[0], duplicate=bool(outcome.duplicates))


def _row_or_reason(record: Record, channel: str) -> tuple[IntakeRow | None, str | None]:
    if record.error is not None:
        return None, record.error
    try:
        row = row_for_url(record.url, record.line)
    except InputError as exc:
        return None, exc.message
    return IntakeRow(raw_url=row.raw_url, canonical_url=row.canonical_url, host=row.host,
                     domain=row.domain, line=row.line,
                     metadata=clean_metadata(record.fields, channel)), None


def parse_batch(body: bytes, fmt: str | None, *, channel: str,
                name: str = "upload") -> tuple[list[IntakeRow], list[dict[str, Any]]]:
    """Valid rows and per-line rejections of a batch body; ``InputError`` if unreadable."""
    rows: list[IntakeRow] = []
    rejected: list[dict[str, Any]] = []
    for record in read_records(io.BytesIO(body), name, fmt):
        row, reason = _row_or_reason(record, channel)
        if row is None:
            rejected.append({"line": record.line, "input": preview(record.url),
                             "reason": reason or "invalid"})
        else:
            rows.append(row)
    return rows, rejected


def submit_batch(store: Store, rows: list[IntakeRow], rejected: list[dict[str, Any]], *,
                 channel: str, source: str, clock: Clock) -> SubmitResult:
    """Store parsed rows as one batch; the result is ``ntd submit --json``'s object."""
    batch = store.create_batch(channel=channel, source=source, at=clock.now_text())
    result = SubmitResult(batch=batch, rejected=rejected)
    try:
        # One transaction for the whole body: a storage failure leaves no half batch behind.
        outcome = store.add_reports(batch, channel, clock.now_text(), rows)
        result.accepted, result.duplicates = outcome.accepted, outcome.duplicates
    finally:
        store.finish_batch(batch, accepted=result.accepted, duplicates=result.duplicates,
                           rejected=len(rejected))
    return result
