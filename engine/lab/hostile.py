"""Hostile content for tests and ``ntd bench e2e --hostile-share``: what an attacker's server
answers to make the engine stall or bloat (issue 17). Nothing here is an image of anything: the
PNGs are black (or noise), the pages are markup soup.
"""

from __future__ import annotations

import functools
import random
import struct
import zlib

__all__ = ["giant_attribute_page", "huge_png", "tag_soup_page"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


@functools.lru_cache(maxsize=16)
def _idat(width: int, height: int, color_type: int, noisy_rows: int) -> bytes:
    bands = {0: 1, 2: 3, 6: 4}[color_type]
    row = b"\x00" * (1 + width * bands)
    every = height // noisy_rows if noisy_rows else 0
    noise = random.Random(7)
    packer = zlib.compressobj(6)
    parts = []
    for y in range(height):
        if every and y % every == 0:
            parts.append(packer.compress(b"\x00" + noise.randbytes(width * bands)))
        else:
            parts.append(packer.compress(row))
    return b"".join(parts) + packer.flush()


def huge_png(width: int, height: int, color_type: int = 6, *, noisy_rows: int = 0,
             tag: str = "") -> bytes:
    """A PNG of ``width``×``height`` black pixels (RGBA by default; 0 grey, 2 RGB), built a
    row at a time so nothing ever holds the decoded image: 7071×7071 RGBA is 194 KB.

    ``noisy_rows`` rows of random pixels make it about as large as a photo of that size would
    compress to (no longer a bomb by its inflation ratio); ``tag`` goes into a ``tEXt`` chunk,
    so many files can differ (in their SHA-256) while decoding alike.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    text = _chunk(b"tEXt", b"Comment\x00" + tag.encode("latin-1")) if tag else b""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + text
            + _chunk(b"IDAT", _idat(width, height, color_type, noisy_rows))
            + _chunk(b"IEND", b""))


def tag_soup_page(after: str = "", *, repeat: int = 65536) -> bytes:
    """``'<a' * 65536`` (128 KB; ``html.parser`` took 5.6 s), then ``after`` (real markup)."""
    return b"<html><body>" + b"<a" * repeat + b">" + after.encode() + b"</body></html>"


def giant_attribute_page(host: str, after: str = "", *, size: int = 1_500_000) -> bytes:
    """A page whose first ``<img src>`` is a ``size``-character URL (a 15 MB one once took the
    engine to 3.2 GB), then ``after``."""
    return (f'<html><body><img src="http://{host}/'.encode() + b"a" * size + b'">'
            + after.encode() + b"</body></html>")
