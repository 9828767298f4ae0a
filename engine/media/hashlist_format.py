"""Read hash-list files (CSV or NDJSON) into validated :class:`HashEntry` records.

The format is documented in ``hashlists/README.md``. Parsing streams: one line is read, checked
and yielded at a time, so a list of tens of millions of hashes never sits in memory here.

Error policy: :func:`parse_hashlist` raises :class:`HashlistFormatError` (a ``HashlistError``)
on the *first* bad line, naming the file, line number and field; an import is all-or-nothing,
so there is no point reading further. :func:`check_hashlist` collects up to ``limit`` errors for
an operator fixing a file.

Hash lists are confidential: error messages name the line and the field, never the value, and
nothing here logs entries.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import HashlistError
from engine.media.signals import HASH_TYPES, SIGNAL_TYPES

HASH_HEX_LENGTH = {name: t.hex_length for name, t in HASH_TYPES.items()}
# (NDJSON only: a vPDQ entry's frame features as a JSON array, instead of "hash")
FIELDS = ("hash_type", "hash", "category", "label", "source")
NDJSON_FIELDS = (*FIELDS, "vpdq")
REQUIRED_FIELDS = ("hash_type", "hash", "category")
MAX_LINE_BYTES = 4096  # a valid line is < 600 bytes; the cap bounds memory on hostile input
# ... except a video's (vPDQ): ~85 bytes a frame feature, up to vpdq_format.MAX_FEATURES.
MAX_VIDEO_LINE_BYTES = 2 * 2**20
MAX_TEXT = 256  # label and source

_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,63}")
# C0/C1 controls and Unicode line/paragraph separators: labels end up in logs and e-mails.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Format = Literal["csv", "ndjson"]


@dataclass(frozen=True, kw_only=True, slots=True)
class HashEntry:
    """One validated line of a hash list; ``hash`` and ``hash_type`` are lower case."""

    hash_type: str
    hash: str
    category: str
    label: str | None = None
    source: str | None = None
    line: int = 0


class HashlistFormatError(HashlistError):
    """A hash-list line is malformed. ``file``, ``line`` and ``field`` say where (never what)."""

    def __init__(self, file: str, line: int, field: str | None, problem: str) -> None:
        where = f"{file}:{line}" + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}", reason="bad_hashlist")
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem


# ---------------------------------------------------------------- line sources


def _line_cap(head: bytes) -> int:
    """The longest a line may be: a vPDQ entry's (its type named in its first bytes) is
    longer."""
    return MAX_VIDEO_LINE_BYTES if b"vpdq" in head[:200].lower() else MAX_LINE_BYTES


def _lines_from_file(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) from a UTF-8 file, bounding line length."""
    with open(path, "rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(MAX_VIDEO_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > _line_cap(raw):
                raise HashlistFormatError(name, lineno, None,
                                          f"line longer than {_line_cap(raw)}")
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # spreadsheet exports often start with a BOM
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HashlistFormatError(name, lineno, None, "not valid UTF-8") from exc


def _lines_from_iterable(lines: Iterable[str], name: str) -> Iterator[tuple[int, str]]:
    for lineno, text in enumerate(lines, start=1):
        if not isinstance(text, str):
            raise HashlistFormatError(name, lineno, None, "line is not text")
        if lineno == 1:
            text = text.removeprefix("\ufeff")
        cap = _line_cap(text[:200].encode("utf-8", "replace"))
        if len(text.encode("utf-8", "surrogatepass")) > cap:
            raise HashlistFormatError(name, lineno, None, f"line longer than {cap}")
        # Lines from str.splitlines() have no terminator; a stray "\r" inside one would make
        # the csv module see two records, so treat any embedded line break as an error.
        stripped = text.rstrip("\r\n")
        if "\n" in stripped or "\r" in stripped:
            raise HashlistFormatError(name, lineno, None, "embedded line break")
        yield lineno, stripped


def _skip(text: str) -> bool:
    s = text.strip()
    return not s or s.startswith("#")


# ---------------------------------------------------------------- validation


def _validate(record: dict[str, object], name: str, lineno: int) -> HashEntry:
    def text(field: str, *, required: bool) -> str | None:
        value = record.get(field)
        if value is None or value == "":
            if required:
                raise HashlistFormatError(name, lineno, field, "missing")
            return None
        if not isinstance(value, str):
            raise HashlistFormatError(name, lineno, field, "must be a string")
        return value.strip()

    hash_type = (text("hash_type", required=True) or "").lower()
    kind = SIGNAL_TYPES.get(hash_type)
    if kind is None:
        raise HashlistFormatError(
            name, lineno, "hash_type", f"must be one of {', '.join(SIGNAL_TYPES)}"
        )
    frames = record.get("vpdq")
    if frames is not None and (hash_type != "vpdq" or record.get("hash")):
        raise HashlistFormatError(name, lineno, "vpdq",
                                  "only a vpdq entry, and instead of 'hash'")
    try:
        value = kind.validate(frames if frames is not None  # type: ignore[arg-type]
                              else text("hash", required=True) or "")
    except ValueError as exc:  # the message names the kind and length, never the value
        raise HashlistFormatError(name, lineno, "hash", str(exc)) from exc
    category = (text("category", required=True) or "").lower()
    if not _CATEGORY.fullmatch(category):
        raise HashlistFormatError(
            name, lineno, "category", "must match [a-z][a-z0-9_]* (at most 64 characters)"
        )
    optional: dict[str, str | None] = {}
    for field in ("label", "source"):
        v = text(field, required=False)
        if v is not None and (len(v) > MAX_TEXT or _CONTROL.search(v)):
            raise HashlistFormatError(
                name, lineno, field, f"at most {MAX_TEXT} characters, no control characters"
            )
        optional[field] = v or None
    return HashEntry(
        hash_type=hash_type,
        hash=value,
        category=category,
        label=optional["label"],
        source=optional["source"],
        line=lineno,
    )


# ---------------------------------------------------------------- formats


class _Enough(Exception):
    """Raised inside a parser once ``check_hashlist`` has collected its limit of errors."""


def _report(exc: HashlistFormatError, sink: list[HashlistFormatError] | None, limit: int) -> None:
    if sink is None:
        raise exc
    sink.append(exc)
    if len(sink) >= limit:
        raise _Enough


def _parse_csv(
    lines: Iterator[tuple[int, str]],
    name: str,
    sink: list[HashlistFormatError] | None = None,
    limit: int = 0,
) -> Iterator[HashEntry]:
    header: list[str] | None = None
    for lineno, text in lines:
        if _skip(text):
            continue
        try:
            row = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            err = HashlistFormatError(name, lineno, None, "malformed CSV")
            if header is None:
                raise err from exc
            _report(err, sink, limit)
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            unknown = [c for c in header if c not in FIELDS]
            if unknown or len(set(header)) != len(header):
                raise HashlistFormatError(
                    name,
                    lineno,
                    None,
                    f"header must name columns from {', '.join(FIELDS)} without repeats",
                )
            missing = [c for c in REQUIRED_FIELDS if c not in header]
            if missing:
                raise HashlistFormatError(name, lineno, None, f"header lacks {', '.join(missing)}")
            continue
        if len(row) != len(header):
            _report(
                HashlistFormatError(
                    name, lineno, None, f"expected {len(header)} columns, found {len(row)}"
                ),
                sink,
                limit,
            )
            continue
        try:
            entry = _validate(dict(zip(header, row, strict=True)), name, lineno)
        except HashlistFormatError as exc:
            _report(exc, sink, limit)
            continue
        yield entry
    if header is None:
        raise HashlistFormatError(name, 0, None, "no header line")


def _parse_ndjson(
    lines: Iterator[tuple[int, str]],
    name: str,
    sink: list[HashlistFormatError] | None = None,
    limit: int = 0,
) -> Iterator[HashEntry]:
    for lineno, text in lines:
        if _skip(text):
            continue
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            err = HashlistFormatError(name, lineno, None, "malformed JSON")
            err.__cause__ = exc
            _report(err, sink, limit)
            continue
        if not isinstance(record, dict):
            _report(
                HashlistFormatError(name, lineno, None, "each line must be a JSON object"),
                sink,
                limit,
            )
            continue
        if any(k not in NDJSON_FIELDS for k in record):
            _report(
                HashlistFormatError(
                    name, lineno, None, f"unknown keys (allowed: {', '.join(NDJSON_FIELDS)})"
                ),
                sink,
                limit,
            )
            continue
        try:
            entry = _validate(record, name, lineno)
        except HashlistFormatError as exc:
            _report(exc, sink, limit)
            continue
        yield entry


def detect_format(path: str | os.PathLike[str]) -> Format:
    """Guess the format from the file name (.csv, .ndjson/.jsonl) or the first byte."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".ndjson", ".jsonl", ".json"):
        return "ndjson"
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "ndjson" if head.startswith(b"{") else "csv"


def _open_source(
    path_or_lines: str | os.PathLike[str] | Iterable[str], name: str | None, fmt: Format | None
) -> tuple[str, Format, Iterator[tuple[int, str]]]:
    if isinstance(path_or_lines, str | os.PathLike):
        path = Path(path_or_lines)
        label = name or path.name
        try:
            chosen = fmt or detect_format(path)
        except OSError as exc:
            raise HashlistError(
                f"{label}: cannot read ({exc.strerror or type(exc).__name__})", reason="unreadable"
            ) from exc
        return label, chosen, _lines_from_file(path, label)
    label = name or "<lines>"
    it = _lines_from_iterable(path_or_lines, label)
    if fmt is not None:
        return label, fmt, it
    # Peek at the first meaningful line to choose the parser, then replay it.
    buffered: list[tuple[int, str]] = []
    for item in it:
        buffered.append(item)
        if not _skip(item[1]):
            break
    first = buffered[-1][1].lstrip() if buffered else ""
    return label, "ndjson" if first.startswith("{") else "csv", _chain(buffered, it)


def _chain(
    head: list[tuple[int, str]], rest: Iterator[tuple[int, str]]
) -> Iterator[tuple[int, str]]:
    yield from head
    yield from rest


def parse_hashlist(
    path_or_lines: str | os.PathLike[str] | Iterable[str],
    *,
    name: str | None = None,
    fmt: Format | None = None,
) -> Iterator[HashEntry]:
    """Stream validated entries from a hash-list file path or an iterable of lines.

    A ``str`` or ``PathLike`` is a path; any other iterable yields lines. ``name`` labels error
    messages (default: the file name, or "<lines>"). ``fmt`` is "csv" or "ndjson"; by default
    it is guessed from the file name or the first non-blank line. Blank lines and lines starting
    with ``#`` are skipped. Raises :class:`HashlistFormatError` on the first malformed line
    (entries before it have already been yielded: import inside a transaction), and
    ``HashlistError`` (reason "unreadable") if the file cannot be read.
    """
    label, chosen, lines = _open_source(path_or_lines, name, fmt)
    parse = _parse_csv if chosen == "csv" else _parse_ndjson
    try:
        yield from parse(lines, label)
    except OSError as exc:
        raise HashlistError(
            f"{label}: cannot read ({exc.strerror or type(exc).__name__})", reason="unreadable"
        ) from exc


def check_hashlist(
    path_or_lines: str | os.PathLike[str] | Iterable[str],
    *,
    name: str | None = None,
    fmt: Format | None = None,
    limit: int = 100,
) -> tuple[int, list[HashlistFormatError]]:
    """Validate a whole list: return (number of good entries, up to ``limit`` line errors).

    Unlike :func:`parse_hashlist` this carries on after a bad data line, for an operator fixing
    a file. A bad or missing CSV header ends the check with that one error. Raises
    ``HashlistError`` if the file cannot be read.
    """
    errors: list[HashlistFormatError] = []
    good = 0
    label = name or "<lines>"
    try:
        label, chosen, lines = _open_source(path_or_lines, name, fmt)
        parse = _parse_csv if chosen == "csv" else _parse_ndjson
        for _ in parse(lines, label, errors, max(1, limit)):
            good += 1
    except _Enough:
        pass
    except HashlistFormatError as exc:  # header problems and line-level I/O problems
        errors.append(exc)
    except OSError as exc:
        raise HashlistError(
            f"{label}: cannot read ({exc.strerror or type(exc).__name__})", reason="unreadable"
        ) from exc
    return good, errors
