"""Reading submission files into records: text, CSV, JSON array, NDJSON — every line accounted for.

Each line of a submission ends as a :class:`Record` (its URL and fields) or as a rejected record
with its line number and reason; nothing in a file can make the reader fail the lines around it,
hold more than a line in memory or crash:

- Lines come from ``engine.bounded_lines``: at most ``MAX_LINE_BYTES`` each (a longer line is
  one rejected line, read past without being held), ``\\n``/``\\r\\n``/``\\r`` endings, a UTF-8
  byte order mark (as Excel writes CSV) dropped. Each line is decoded on its own: a line that is
  not UTF-8 is rejected naming the byte at fault, counted from 0 at the start of the file.
- JSON goes through ``engine.bounded_json`` (bounded depth and number size, no NaN).
- CSV: the first non-blank line is the header and must have a ``url`` column. A quoted field may
  hold line breaks (Excel's multi-line cells) only if its quote closes within
  ``MAX_CSV_RECORD_LINES`` lines, the record has no more fields than the header, the ``url``
  field holds no line break and none of the lines taken in reads as a URL of its own. Otherwise
  the line where the quote opened is rejected (``quote opened at column C is not closed``) and
  reading resumes on the next line, so no URL is ever swallowed into another row's field.
- JSON arrays are read whole (at most ``MAX_JSON_ARRAY_BYTES``; NDJSON has no such limit) and
  split into elements before parsing: a bad element is one rejected entry whose ``line`` is its
  position in the array. A document that is not one array is an ``InputError``.

What fails a whole file (``InputError``): it cannot be opened, it is binary or UTF-16, a CSV
header without a ``url`` column or unreadable, a JSON array that is malformed or too large.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.bounded_json import array_elements, describe, loads
from engine.bounded_lines import BOM, MAX_LINE_BYTES, RawLine, Readable, read_lines
from engine.errors import InputError
from engine.urls import canonicalize

__all__ = ["FORMATS", "MAX_CSV_RECORD_LINES", "MAX_JSON_ARRAY_BYTES", "Record", "detect_format",
           "open_binary", "read_records"]

FORMATS = ("text", "csv", "json", "ndjson")
MAX_JSON_ARRAY_BYTES = 32 * 1024 * 1024
MAX_CSV_RECORD_LINES = 100
HEAD_BYTES = 65_536  # what format detection looks at
_EXT = {".txt": "text", ".lst": "text", ".csv": "csv", ".json": "json", ".ndjson": "ndjson",
        ".jsonl": "ndjson"}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(slots=True)
class Record:
    """One raw submission line: where it came from, the URL text and other fields."""

    line: int
    url: Any
    fields: dict[str, Any]
    error: str | None = None


def detect_format(name: str, head: str) -> str:
    """Pick the format from the file name, else from the first non-blank text."""
    ext = Path(name).suffix.lower()
    if ext in _EXT:
        return _EXT[ext]
    stripped = head.lstrip("\ufeff \t\r\n")
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


def open_binary(name: str) -> IO[bytes]:
    """Open a submission file (``-`` is stdin) for reading bytes; errors name the file."""
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb")  # noqa: SIM115  (the caller closes it)
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from exc


class _Prefixed:
    """A stream that first returns ``head`` (already read for detection), then the rest."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all when negative)."""
        if self._head:
            if size < 0:
                out, self._head = self._head + (self._rest.read() or b""), b""
                return out
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._rest.read(size) or b""


def read_records(stream: Readable, name: str, fmt: str | None = None) -> Iterator[Record]:
    """Records of one binary stream, in order, with their line numbers."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"{name}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    head = stream.read(HEAD_BYTES) or b""
    if head.startswith(_UTF16_BOMS):
        raise InputError(f"{name}: UTF-16 text; save the file as UTF-8")
    if fmt is None:
        fmt = detect_format(name, head.decode("utf-8", "replace"))
    whole = _Prefixed(head, stream)
    if fmt == "json":
        yield from _records_json_array(whole, name)
        return
    lines = _decoded(read_lines(whole))
    if fmt == "text":
        yield from _records_text(lines)
    elif fmt == "csv":
        yield from _records_csv(lines, name)
    else:
        yield from _records_ndjson(lines)


# -- lines -------------------------------------------------------------------------------------
Line = tuple[int, str, str | None]  # (number, text, error); with an error, text is a preview


def _lossy(data: bytes) -> str:
    return data[:200].decode("utf-8", "replace")


def _decoded(lines: Iterable[RawLine]) -> Iterator[Line]:
    """Decode each line on its own: one bad line is one rejection, at the right byte."""
    for line in lines:
        if line.overlong:
            yield (line.number, _lossy(line.data) + "…",
                   f"line too long ({line.length} bytes; the limit is {MAX_LINE_BYTES})")
            continue
        try:
            yield line.number, line.data.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            yield (line.number, _lossy(line.data),
                   f"not UTF-8 text ({exc.reason} at byte {line.offset + exc.start})")


def _records_text(lines: Iterable[Line]) -> Iterator[Record]:
    for number, line, error in lines:
        if error is not None:
            yield Record(number, line, {}, error=error)
            continue
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        yield Record(number, text, {})


def _records_ndjson(lines: Iterable[Line]) -> Iterator[Record]:
    for number, line, error in lines:
        if error is not None:
            yield Record(number, line, {}, error=error)
            continue
        text = line.strip()
        if not text:
            continue
        try:
            entry = loads(text)
        except ValueError as exc:  # JSONDecodeError and JSONLimitError alike
            yield Record(number, text[:200], {}, error=describe(exc))
            continue
        yield _record_from_json(number, entry)


def _record_from_json(number: int, entry: Any) -> Record:
    if isinstance(entry, str):
        return Record(number, entry, {})
    if not isinstance(entry, dict):
        return Record(number, None, {}, error="expected an object with a 'url' field")
    fields = dict(entry)
    url = fields.pop("url", None)
    return Record(number, url, fields)


def _records_json_array(stream: Readable, name: str) -> Iterator[Record]:
    data = stream.read(MAX_JSON_ARRAY_BYTES + 1) or b""
    if len(data) > MAX_JSON_ARRAY_BYTES:
        raise InputError(f"{name}: a JSON array may be at most {MAX_JSON_ARRAY_BYTES} bytes; "
                         "send large batches as NDJSON (one object a line)")
    skipped = len(BOM) if data.startswith(BOM) else 0
    try:
        text = data[skipped:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte "
                         f"{skipped + exc.start})") from exc
    del data
    try:  # the whole structure first: a malformed array stores nothing
        elements = list(array_elements(text))
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    del text
    for position, element in elements:
        if not element:
            yield Record(position, None, {}, error="invalid JSON: empty array element")
            continue
        try:
            entry = loads(element)
        except ValueError as exc:
            yield Record(position, element[:200], {}, error=describe(exc))
            continue
        yield _record_from_json(position, entry)


# -- CSV ---------------------------------------------------------------------------------------
def _records_csv(lines: Iterable[Line], name: str) -> Iterator[Record]:
    source = iter(lines)
    columns: list[str] | None = None
    for number, text, error in source:
        if error is not None:
            raise InputError(f"{name}: line {number}: CSV header: {error}")
        if text.strip():
            try:
                header = _parse_row(text)
            except csv.Error as exc:
                raise InputError(f"{name}: line {number}: CSV header: {exc}") from exc
            columns = [c.strip().lower() for c in header]
            break
    if columns is None:
        return
    if "url" not in columns:
        raise InputError(f"{name}: line 1: CSV header has no 'url' column "
                         f"(found: {', '.join(columns) or 'nothing'})")
    url_index = len(columns) - 1 - columns[::-1].index("url")  # the last one wins, as in a dict
    pushed: deque[Line] = deque()  # lines read ahead for a multi-line field, to read again

    def pull() -> Line | None:
        return pushed.popleft() if pushed else next(source, None)

    while (item := pull()) is not None:
        number, text, error = item
        if error is not None:
            yield Record(number, text, {}, error=error)
            continue
        if not text.strip():
            continue
        if '"' not in text:  # no quoting: csv would split exactly here
            yield _csv_record(number, text.split(","), columns, url_index)
            continue
        column = _open_quote_column(text)
        if column is None:
            try:
                fields = _parse_row(text)
            except csv.Error as exc:
                yield Record(number, text[:200], {}, error=f"malformed CSV: {exc}")
                continue
            yield _csv_record(number, fields, columns, url_index)
            continue
        taken, cells = _multiline(text, pull, len(columns), url_index)
        if cells is None:
            pushed.extendleft(reversed(taken))  # read them again as rows of their own
            yield Record(number, text[:200], {},
                         error=f"quote opened at column {column} is not closed on this line")
            continue
        yield _csv_record(number, cells, columns, url_index)


def _parse_row(text: str) -> list[str]:
    return next(csv.reader((text,), strict=True), [])


def _csv_record(number: int, fields: list[str], columns: list[str], url_index: int) -> Record:
    url = fields[url_index] if url_index < len(fields) else None
    if len(fields) > len(columns):
        return Record(number, url, {}, error="more fields than the header")
    extra = {k: v for k, v in zip(columns, fields, strict=False) if k and k != "url" and v != ""}
    return Record(number, url, extra)


def _open_quote_column(text: str) -> int | None:
    """1-based column of the quote opening a field that is still open at the end of ``text``
    (a quote opens a field only at the field's start, as csv reads it)."""
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            start, i = i, i + 1
            while True:
                j = text.find('"', i)
                if j < 0:
                    return start + 1
                if text.startswith('""', j):
                    i = j + 2
                    continue
                i = j + 1
                break
        comma = text.find(",", i)
        if comma < 0:
            return None
        i = comma + 1
    return None


def _multiline(first: str, pull: Any, width: int,
               url_index: int) -> tuple[list[Line], list[str] | None]:
    """Lines taken in to close a quoted field that spans lines, and the row's fields (None when
    the field is not a genuine multi-line cell: the taken lines must then be read again)."""
    taken: list[Line] = []
    joined = first
    while len(taken) < MAX_CSV_RECORD_LINES - 1 and len(joined) <= MAX_LINE_BYTES:
        item = pull()
        if item is None:
            break
        taken.append(item)
        number, text, error = item
        if error is not None or _urlish(text):
            break  # a line of its own: never swallowed into a field
        joined += "\n" + text
        if _open_quote_column(joined) is None:
            try:
                fields = _parse_row(joined)
            except csv.Error:
                break
            url = fields[url_index] if url_index < len(fields) else ""
            if len(fields) > width or "\n" in url:
                break
            return taken, fields
    return taken, None


def _urlish(text: str) -> bool:
    """Whether a line carries something a reporter meant as a URL (explicit scheme, or a
    dotted host); such a line is never taken into another row's multi-line field."""
    for part in text.split(","):
        value = part.strip().strip('"').strip()
        if not value or " " in value:
            continue
        if value.lower().startswith(("http://", "https://", "www.")):
            return True
        try:
            canonical = canonicalize(value)
        except InputError:
            continue
        if "." in canonical.host:
            return True
    return False
