"""Lines of a byte stream with bounded memory: an over-long line is reported, never held.

Iterating a text file holds each whole line in memory, whatever its length: ``ntd submit`` of a
file with one 64 MB line reached 13.3 GB (the line, its decoded copy and what the URL checks
built from them). ``read_lines`` reads fixed-size blocks and keeps at most ``max_bytes`` of a
line plus one block; a longer line is skipped up to its end and yielded as over-long (its first
bytes kept for the rejection message), so the lines after it are read as usual.

Line endings are ``\\n``, ``\\r\\n`` and a lone ``\\r`` (old Mac exports); a UTF-8 byte order mark
at the start is dropped. Offsets count bytes from the start of the stream (the BOM included), so
an error can name the exact byte at fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

__all__ = ["BOM", "MAX_LINE_BYTES", "RawLine", "Readable", "read_lines"]

BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 65_536  # a URL is at most 8 KiB; the rest of a line is report metadata
BLOCK = 1 << 16
PREVIEW_BYTES = 200
_new = tuple.__new__


class Readable(Protocol):
    """What ``read_lines`` reads from: a binary file, ``sys.stdin.buffer``, ``io.BytesIO``."""

    def read(self, size: int = -1, /) -> bytes | None:
        """Up to ``size`` bytes; empty at the end."""


class RawLine(NamedTuple):
    """One line: 1-based number, byte offset of its first byte, and its bytes (no ending).

    For an over-long line ``data`` holds only its first ``PREVIEW_BYTES`` and ``length`` the
    real length; ``overlong`` tells the two apart.
    """

    number: int
    offset: int
    data: bytes
    length: int
    overlong: bool = False


def read_lines(stream: Readable, *, max_bytes: int = MAX_LINE_BYTES,
               block: int = BLOCK) -> Iterator[RawLine]:
    """The lines of ``stream`` (binary), each at most ``max_bytes`` long, or flagged over-long."""
    number = 0
    offset, pending = _first_block(stream, block)
    carry = b""  # the unfinished last line of the previous block
    skip: list[int] | None = None  # [start offset, length so far] of an over-long line
    skip_head = b""
    while True:
        chunk, pending = pending or stream.read(block) or b"", b""
        at_eof = not chunk
        parts = (carry + chunk).splitlines(True)
        carry = b""
        if parts and not at_eof and not parts[-1].endswith(b"\n"):
            carry = parts.pop()  # unfinished, or a \r that may be half of \r\n
        for part in parts:
            data = part.rstrip(b"\r\n")  # one ending per part: splitlines cut there
            number += 1
            if skip is not None:
                yield RawLine(number, skip[0], skip_head, skip[1] + len(data), True)
                skip = None
            elif len(data) > max_bytes:
                yield RawLine(number, offset, data[:PREVIEW_BYTES], len(data), True)
            else:
                # tuple.__new__ skips NamedTuple's Python-level __new__ (a third of the cost
                # of a line in a 100k-line submission).
                yield _new(RawLine, (number, offset, data, len(data), False))
            offset += len(part)
        if at_eof:
            if skip is not None:
                yield RawLine(number + 1, skip[0], skip_head, skip[1], True)
            return
        # Keep a trailing \r: it ends the line unless the next block starts with \n.
        drop = len(carry) - (1 if carry.endswith(b"\r") else 0)
        if skip is not None:
            skip[1] += drop
        elif drop > max_bytes:
            skip, skip_head = [offset, drop], carry[:PREVIEW_BYTES]
        else:
            continue
        offset += drop  # the dropped bytes of the over-long line
        carry = carry[drop:]


def _first_block(stream: Readable, block: int) -> tuple[int, bytes]:
    """The first block without a leading UTF-8 BOM, and the bytes the BOM took (0 or 3)."""
    chunk = stream.read(block) or b""
    while chunk and len(chunk) < len(BOM):  # a short first read must not split the BOM
        more = stream.read(block)
        if not more:
            break
        chunk += more
    if chunk.startswith(BOM):
        return len(BOM), chunk[len(BOM):] or stream.read(block) or b""
    return 0, chunk
