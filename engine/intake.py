"""Intake: read submitted URL files, canonicalise each URL, store reports in chunks.

Formats: plain text (one URL a line; blank lines and ``#`` comments skipped), CSV (a ``url``
column; other columns kept as report metadata), a JSON array of objects or strings, NDJSON (one
object with a ``url`` field a line). The format comes from the file name (``.txt .csv .json
.ndjson .jsonl``) or, for ``-`` (stdin) and other names, from the first non-blank character.
Files stream in chunks, so 100k lines never sit in memory at once (JSON arrays are the exception:
use NDJSON for large batches). Reading is ``engine.intake_formats``: every line ends stored or
rejected with its line number and reason (an over-long line, a line that is not UTF-8, JSON
nested too deep, an unclosed CSV quote are rejected lines, never a failed file); an unreadable
file or unknown format raises ``InputError``.

Privacy: fields that identify a reporter (``PERSONAL_FIELDS``) never reach case data. Web-form
reports keep no reporter data at all; chat-reporter fields are sealed by ``engine.privacy``
for the separate encrypted reporter store.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.clock import Clock
from engine.errors import InputError
from engine.ids import new_id
from engine.intake_formats import Record, open_binary, read_records
from engine.logs import register_sensitive
from engine.models import CHANNELS, PERSONAL_FIELDS
from engine.store import IntakeRow, Store
from engine.urls import canonicalize

CHUNK = 10000


@dataclass
class SubmitResult:
    """Totals of one ``ntd submit`` (the JSON it prints)."""

    batch: str
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The interface-contract JSON object."""
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": self.rejected, "batch": self.batch}


def clean_metadata(fields: dict[str, Any], channel: str) -> dict[str, Any]:
    """Report metadata without anything that identifies a reporter.

    Keys are compared case-insensitively; values must be JSON scalars (others are dropped).
    """
    del channel  # every channel drops personal fields from case data; chat splits them off
    out = {}
    for key, value in fields.items():
        k = str(key).strip().lower()
        if k in PERSONAL_FIELDS or not k:
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[k] = value
    return out


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Intake allocates hundreds of thousands of short-lived, acyclic row tuples: the cyclic
    collector ran over and over on them (8 % of a 100k-URL submission). Reference counting
    still frees them; the collector resumes afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def submit_files(
    store: Store,
    names: Iterable[str],
    *,
    channel: str = "analyst",
    fmt: str | None = None,
    clock: Clock | None = None,
    progress: Callable[[int], None] | None = None,
    keep_case_ids: bool = False,
) -> SubmitResult:
    """Read, validate and store every record of ``names`` as one batch.

    ``progress`` is called with the number of records handled so far after each chunk.
    """
    if channel not in CHANNELS:
        raise InputError(f"--channel: unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
    clock = clock or Clock()
    names = list(names)
    # Open every file first: an unreadable file fails the whole submission before anything is
    # stored, so a typo in the file list never leaves half a batch behind.
    handles = [(name, open_binary(name)) for name in names]
    vault = None
    if channel == "chat":
        # deferred: pulls in cryptography, loaded on first use
        from engine.privacy import ReporterVault, load_master_key

        vault = ReporterVault(load_master_key(getattr(store, "path", None)))
    batch = store.create_batch(channel=channel, source=",".join(names), at=clock.now_text())
    result = SubmitResult(batch=batch)
    done = 0
    multi = len(names) > 1
    with store.bulk_load(), _cyclic_gc_paused():
        try:
            for name, fh in handles:
                chunk: list[IntakeRow] = []
                with fh:
                    for record in read_records(fh, name, fmt):
                        row = _row_or_reject(record, name, channel, result, multi=multi,
                                             vault=vault)
                        if row is not None:
                            chunk.append(row)
                        done += 1
                        if len(chunk) >= CHUNK:
                            _flush(store, batch, channel, clock, chunk, result, keep_case_ids)
                            chunk = []
                            if progress:
                                progress(done)
                    _flush(store, batch, channel, clock, chunk, result, keep_case_ids)
                    if progress:
                        progress(done)
        finally:
            store.finish_batch(batch, accepted=result.accepted, duplicates=result.duplicates,
                               rejected=len(result.rejected))
    return result


def _row_or_reject(record: Record, name: str, channel: str, result: SubmitResult, *,
                   multi: bool, vault: Any = None) -> IntakeRow | None:
    reason = record.error
    canonical = None
    reporter = None
    if reason is None and vault is not None:
        reporter, reason = _seal_reporter(record.fields, vault)
    if reason is None:
        if not isinstance(record.url, str) or not record.url.strip():
            reason = "missing url"
        else:
            try:
                canonical = canonicalize(record.url)
            except InputError as exc:
                reason = exc.message
    if reason is not None or canonical is None:
        entry: dict[str, Any] = {"line": record.line, "input": preview(record.url),
                                 "reason": reason or "invalid"}
        if multi:
            entry["file"] = name
        result.rejected.append(entry)
        return None
    return IntakeRow(raw_url=record.url.strip(), canonical_url=canonical.url,
                     host=canonical.host, domain=canonical.domain, line=record.line,
                     metadata=clean_metadata(record.fields, channel), reporter=reporter)


def _seal_reporter(fields: dict[str, Any], vault: Any) -> tuple[Any, str | None]:
    """Encrypt a chat report's reporter fields; (row tuple or None, rejection reason)."""
    # deferred: pulls in cryptography, loaded on first use
    from engine.privacy import APPS, reporter_fields

    data = reporter_fields(fields)
    if not data:
        return None, None
    app = data.get("app", "").strip().lower() or None
    if app is not None and app not in APPS:
        return None, f"field 'app': unknown chat app (known: {', '.join(APPS)})"

    register_sensitive(*(str(v) for k, v in data.items() if k != "app"))
    record_id = new_id("R")
    police = bool(data.pop("contact_police", False))
    sealed, wrapped = vault.seal(data, record_id)
    phone_mac = vault.mac("phone", data["phone"]) if data.get("phone") else None
    user_mac = vault.mac("username", data["username"]) if data.get("username") else None
    return (record_id, app, phone_mac, user_mac, sealed, wrapped, police), None


def preview(value: Any) -> str:
    """A rejected entry's input as shown back: at most 200 characters."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "…"


def _flush(store: Store, batch: str, channel: str, clock: Clock, chunk: list[IntakeRow],
           result: SubmitResult, keep_case_ids: bool) -> None:
    if not chunk:
        return
    outcome = store.add_reports(batch, channel, clock.now_text(), chunk)
    result.accepted += outcome.accepted
    result.duplicates += outcome.duplicates
    if keep_case_ids:
        result.case_ids.extend(outcome.case_ids)
