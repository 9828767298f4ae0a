"""JSON from strangers, parsed at a bounded cost: nesting depth and number size are capped.

Python's ``json`` raises ``RecursionError`` on deep nesting (50,000 ``[`` in one NDJSON line)
and ``ValueError`` on integers of more than 4,300 digits (the int-str conversion limit); both
escaped the intake's ``JSONDecodeError`` handlers as tracebacks and HTTP 500s. ``loads`` checks
the depth with a string-blind scan first and converts numbers through hooks that refuse long
ones, so every failure is a :class:`JSONLimitError` or a ``json.JSONDecodeError`` (both
``ValueError``) with a message fit for a per-line rejection. ``NaN`` and ``Infinity`` are
refused too: they are not JSON, and PostgreSQL's ``jsonb`` would refuse them later.

``array_elements`` splits a JSON array into its elements' texts without parsing them, so a
bad element is one rejected entry, not a failed file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "JSONLimitError", "array_elements", "describe",
           "loads"]

MAX_DEPTH = 32  # report metadata is flat: nothing legitimate comes near this
MAX_NUMBER_CHARS = 100  # digits, sign, point and exponent of one number

# A JSON string token, escapes included; an unterminated one runs to the end of the text.
# Possessive and unrolled, so no input makes the scan backtrack (it is linear in the text).
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
_ARRAY_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|[\[\]{},]', re.S)
_SPACE = re.compile(r"[ \t\r\n]*")


class JSONLimitError(ValueError):
    """Well-formed or not, the text exceeds what we parse (depth, number size, NaN)."""


def _number(text: str, convert: type[int] | type[float]) -> int | float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JSONLimitError(f"number too long ({len(text)} characters; at most "
                             f"{MAX_NUMBER_CHARS})")
    return convert(text)


def _int(text: str) -> int | float:
    return _number(text, int)


def _float(text: str) -> int | float:
    return _number(text, float)


def _constant(name: str) -> Any:
    raise JSONLimitError(f"{name} is not JSON")


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JSONLimitError` if arrays/objects in ``text`` nest deeper than allowed."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # the common case (a flat object) costs two counts
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONLimitError(f"nested deeper than {max_depth} levels")
        else:
            depth -= 1


def loads(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with bounded depth and number size; raises ``ValueError`` subclasses."""
    check_depth(text, max_depth)
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:  # defence in depth: the scan above should have caught it
        raise JSONLimitError(f"nested deeper than {max_depth} levels") from None


def describe(exc: ValueError) -> str:
    """A short message for a failed :func:`loads` (``invalid JSON: ...``)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    return f"invalid JSON: {exc}"


def array_elements(text: str) -> Iterator[tuple[int, str]]:
    """``(position, element text)`` of each element of the JSON array ``text``, 1-based.

    Only the structure is scanned (strings skipped as tokens, depth counted), so an element may
    still be malformed: parse each with :func:`loads`. A document that is not one array raises
    ``json.JSONDecodeError`` naming the position. An empty element (``[1,,2]``, a trailing
    comma) is yielded as ``""`` for its caller to reject.
    """
    start = _skip_space(text, 0)
    if start >= len(text) or text[start] != "[":
        raise json.JSONDecodeError("expected a JSON array", text, start)
    depth = 0
    position = 0
    element_start = start + 1
    closed_at = -1
    for match in _ARRAY_TOKEN.finditer(text, start):
        token = match.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                closed_at = match.start()
                break
        elif depth == 1:  # a comma between elements
            position += 1
            yield position, text[element_start:match.start()].strip()
            element_start = match.end()
    if closed_at < 0:
        raise json.JSONDecodeError("the array is not closed", text, len(text))
    last = text[element_start:closed_at].strip()
    if last or position:
        yield position + 1, last
    rest = _skip_space(text, closed_at + 1)
    if rest < len(text):
        raise json.JSONDecodeError("extra data after the array", text, rest)


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)  # matches always (possibly empty)
    return match.end() if match else pos
