"""Render a safe preview of fetched image bytes: decoded under the fetch stage's limits, without
metadata, downscaled, blurred and greyscale as the analyst asked, re-encoded as a fresh JPEG.

Bytes stay in memory (``io.BytesIO``); nothing is written to disk. The decode is as defensive as
:func:`engine.media.hashing.decode_luma`: only ``ALLOWED_FORMATS``, the pixel cap and the memory
budget (``[fetch] max_decode_mb``) are checked from the header before a pixel is decoded, and
JPEGs decode at a reduced DCT scale close to the preview's size (``Image.draft``), which is most
of the speed. The output is built from the pixels alone: no EXIF, ICC profile, comment or XMP of
the original survives (``Image.new`` + paste, then a JPEG save without ``exif``/``icc_profile``).
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter

from engine.media.decode_budget import max_decode_bytes
from engine.media.hashing import (
    _DECODE_ERRORS,
    INFLATION_FLOOR,
    MAX_INFLATION,
    MAX_PIXELS,
    MediaError,
    decode_cost,
    open_image,
)

PREVIEW_SIDES = (256, 512)
JPEG_QUALITY = 80


def blur_radius(level: int, side: int) -> float:
    """Gaussian radius for a blur level 0-100 on a preview whose long side is ``side``: level
    100 is side/12 (shapes stay recognisable as shapes, nothing more)."""
    return max(0.0, min(100, level)) / 100.0 * side / 12.0


def render_preview(data: bytes, *, max_side: int = 256, blur: int = 60, grey: bool = True,
                   max_bytes: int | None = None) -> bytes:
    """A fresh JPEG of ``data`` (long side ≤ ``max_side``), blurred to ``blur`` (0-100) and
    greyscale when ``grey``. Raises :class:`MediaError` (not_image, bomb, over_budget,
    decode_error) like the hashing decode."""
    budget = max_decode_bytes() if max_bytes is None else max_bytes
    with open_image(data) as img:
        width, height = img.size
        fmt = img.format or "unknown"
        if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
            raise MediaError(f"image of {width}x{height} pixels exceeds the limit", reason="bomb")
        scale = 1
        if fmt == "JPEG":
            for s in (8, 4, 2):
                if max(width, height) // s >= max_side:
                    scale = s
                    break
        frame = width * height * 4
        if fmt != "JPEG" and frame > INFLATION_FLOOR and frame > MAX_INFLATION * len(data):
            raise MediaError(f"{len(data)} bytes would inflate to a {width}x{height} frame",
                             reason="bomb")
        cost = decode_cost(width, height, img.mode, fmt, scale,
                           transparency="transparency" in img.info)
        if cost > budget:
            raise MediaError(f"decoding {width}x{height} {fmt} would take ~{cost >> 20} MiB "
                             f"(budget {budget >> 20} MiB)", reason="over_budget")
        try:
            if scale > 1:
                img.draft("L" if grey else "RGB", (max(1, width // scale),
                                                   max(1, height // scale)))
            img.load()
            if img.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (128, 128, 128))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                work = flat
            else:
                work = img.convert("RGB") if img.mode != "RGB" else img.copy()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaError("image dimensions exceed the pixel limit", reason="bomb") from exc
        except _DECODE_ERRORS as exc:
            raise MediaError(f"image data undecodable: {type(exc).__name__}",
                             reason="decode_error") from exc
    work.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if grey:
        work = work.convert("L")
    radius = blur_radius(blur, max(work.size))
    if radius > 0:
        work = work.filter(ImageFilter.GaussianBlur(radius))
    # Pixels only: a new image of the same mode, so nothing of the original's info survives.
    clean = Image.new(work.mode, work.size)
    clean.paste(work)
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return out.getvalue()
