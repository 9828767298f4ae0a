"""Intake: read submitted URL files, canonicalise each URL, store reports in chunks.

Formats: plain text (one URL a line; blank lines and ``#`` comments skipped), CSV (a ``url``
column; other columns kept as report metadata), a JSON array of objects or strings, NDJSON (one
object with a ``url`` field a line). The format comes from the file name (``.txt .csv .json
.ndjson .jsonl``) or, for ``-`` (stdin) and other names, from the first non-blank character.
Files stream in chunks, so 100k lines never sit in memory at once (JSON arrays are the exception:
use NDJSON for large batches). A bad line is rejected with its line number and reason while the
good lines are stored; an unreadable file or unknown format raises ``InputError``.

Privacy: fields that identify a reporter (``PERSONAL_FIELDS``) never reach case data. Web-form
reports keep no reporter data at all; chat-reporter fields are sealed by ``engine.privacy``
for the separate encrypted reporter store.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.clock import Clock
from engine.errors import InputError
from engine.ids import new_id
from engine.logs import register_sensitive
from engine.models import CHANNELS, PERSONAL_FIELDS
from engine.store import IntakeRow, Store
from engine.urls import canonicalize

FORMATS = ("text", "csv", "json", "ndjson")
CHUNK = 10000
_EXT = {".txt": "text", ".lst": "text", ".csv": "csv", ".json": "json", ".ndjson": "ndjson",
        ".jsonl": "ndjson"}


@dataclass(slots=True)
class Record:
    """One raw submission line: where it came from, the URL text and other fields."""

    line: int
    url: Any
    fields: dict[str, Any]
    error: str | None = None


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


def detect_format(name: str, head: str) -> str:
    """Pick the format from the file name, else from the first non-blank text."""
    ext = Path(name).suffix.lower()
    if ext in _EXT:
        return _EXT[ext]
    stripped = head.lstrip()
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        return "ndjson"
    first_line = stripped.splitlines()[0] if stripped else ""
    if "," in first_line and "url" in [c.strip().lower() for c in first_line.split(",")]:
        return "csv"
    if "\x00" in head:
        raise InputError(f"{name}: unknown format (binary data)")
    return "text"


def open_text(name: str) -> IO[str]:
    """Open a submission file (``-`` is stdin) as UTF-8 text; errors name the file."""
    if name == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict",
                                newline="")
    try:
        return open(name, encoding="utf-8", errors="strict", newline="")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from exc


def _records_text(lines: Iterable[str]) -> Iterator[Record]:
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        yield Record(number, text, {})


def _records_csv(lines: Iterable[str], name: str) -> Iterator[Record]:
    reader = csv.DictReader(lines)
    if reader.fieldnames is None:
        return
    columns = [c.strip().lower() if c else "" for c in reader.fieldnames]
    if "url" not in columns:
        raise InputError(f"{name}: line 1: CSV header has no 'url' column "
                         f"(found: {', '.join(columns) or 'nothing'})")
    reader.fieldnames = columns
    for row in reader:
        number = reader.line_num
        extra = row.pop(None, None)  # type: ignore[call-overload]
        if extra:
            yield Record(number, row.get("url"), {}, error="more fields than the header")
            continue
        url = row.pop("url", None)
        fields = {k: v for k, v in row.items() if k and v not in (None, "")}
        yield Record(number, url, fields)


def _records_json_array(lines: Iterable[str], name: str) -> Iterator[Record]:
    try:
        data = json.loads("".join(lines))
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, list):
        raise InputError(f"{name}: expected a JSON array of objects with a 'url' field")
    for number, entry in enumerate(data, 1):
        yield _record_from_json(number, entry)


def _record_from_json(number: int, entry: Any) -> Record:
    if isinstance(entry, str):
        return Record(number, entry, {})
    if not isinstance(entry, dict):
        return Record(number, None, {}, error="expected an object with a 'url' field")
    fields = dict(entry)
    url = fields.pop("url", None)
    return Record(number, url, fields)


def _records_ndjson(lines: Iterable[str]) -> Iterator[Record]:
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Record(number, text[:200], {}, error=f"invalid JSON: {exc.msg}")
            continue
        yield _record_from_json(number, entry)


def read_records(fh: IO[str], name: str, fmt: str | None = None) -> Iterator[Record]:
    """Records of one open file, in order, with their line numbers."""
    lines: Iterable[str] = fh
    try:
        if fmt is None:
            # Peek at the first non-blank line without losing it.
            peeked: list[str] = []
            for line in fh:
                peeked.append(line)
                if line.strip() or sum(map(len, peeked)) > 65536:
                    break
            fmt = detect_format(name, "".join(peeked))
            lines = itertools.chain(peeked, fh)
        if fmt not in FORMATS:
            raise InputError(f"{name}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        if fmt == "text":
            yield from _records_text(lines)
        elif fmt == "csv":
            yield from _records_csv(lines, name)
        elif fmt == "json":
            yield from _records_json_array(lines, name)
        else:
            yield from _records_ndjson(lines)
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{name}: malformed CSV: {exc}") from exc


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
    handles = [(name, open_text(name)) for name in names]
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
        entry: dict[str, Any] = {"line": record.line, "input": _preview(record.url),
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


def _preview(value: Any) -> str:
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
