"""Distinct copies of one image file: the same pixels, other bytes.

Real reports are mostly files no other report shares, so a benchmark whose URLs serve a small
pool of images measures a hash cache, not hashing. ``distinct_copy`` gives every URL its own
file at the cost of a few bytes: a tag goes into a part of the container decoders skip (a JPEG
COM segment after SOI, a PNG ``tEXt`` chunk after IHDR, an unknown RIFF chunk at the end of a
WebP). The decoded image is unchanged, so perceptual hashes still match; MD5 and SHA-256 differ,
as they do for re-uploads in the wild. Standard library only: the lab web server calls it for
every request.
"""

from __future__ import annotations

import struct
import zlib

JPEG_SOI = b"\xff\xd8"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_IHDR_END = len(PNG_MAGIC) + 4 + 4 + 13 + 4  # length, type, 13 data bytes, CRC


def distinct_copy(data: bytes, tag: bytes) -> bytes:
    """``data`` (JPEG, PNG or WebP) with ``tag`` (at most 60,000 bytes) in a skipped part."""
    if len(tag) > 60_000:
        raise ValueError("tag too long")
    if data.startswith(JPEG_SOI):
        return JPEG_SOI + b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag + data[2:]
    if data.startswith(PNG_MAGIC):
        body = b"tEXt" + b"ntd\x00" + tag
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        return data[:PNG_IHDR_END] + chunk + data[PNG_IHDR_END:]
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = b"NTDX" + struct.pack("<I", len(tag)) + tag + (b"\x00" if len(tag) % 2 else b"")
        return b"RIFF" + struct.pack("<I", len(data) - 8 + len(chunk)) + data[8:] + chunk
    raise ValueError("not a JPEG, PNG or WebP file")
