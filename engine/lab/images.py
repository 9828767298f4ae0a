"""Synthetic images for tests, the demo and benchmarks — never real material.

Every image is a deterministic "scene" drawn from a seed: a colour gradient, a few dozen random
shapes and light noise, no text. The same seed gives the same pixels for a given numpy/Pillow
version, at any requested size (shape coordinates are relative), so a test can regenerate the
exact image a demo hash list was built from.

``TRANSFORMS`` holds the edits the robustness benchmark applies (each returns encoded bytes, the
way a hotline would fetch a re-posted copy). ``build_demo_hashlist`` writes hashlists/demo.csv.
"""

from __future__ import annotations

import csv
import functools
import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps

from engine.media.signals import HASH_TYPE_NAMES

# The encoding the demo list and the lab servers use for "the original" of a seed.
DEMO_SIZE = (512, 512)
DEMO_JPEG_QUALITY = 90
DEMO_SOURCE = "ntd synthetic demo"


def make_image(seed: int, size: tuple[int, int] = (512, 512), *,
               noise: bool = True) -> Image.Image:
    """Return a deterministic RGB scene (gradient, shapes, noise) for ``seed`` at ``size``
    (``noise=False``: flat like a graphic or screenshot)."""
    w, h = size
    if w < 8 or h < 8:
        raise ValueError("image size must be at least 8x8")
    rng = np.random.default_rng([seed, 0x6E7464])  # namespaced so seeds don't collide elsewhere
    # Background: a linear gradient between two colours at a random angle.
    c0 = rng.integers(0, 256, 3).astype(np.float32)
    c1 = rng.integers(0, 256, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    # The gradient is smooth, so draw it at 64 px and upscale (numpy at full size is slow).
    gw, gh = 64, max(2, round(64 * h / w))
    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float32)
    t = (xs / gw - 0.5) * np.cos(angle) + (ys / gh - 0.5) * np.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    bg = c0 + t[..., None] * (c1 - c0)
    img = Image.fromarray(bg.astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BILINEAR)

    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(12, 30))):
        kind = int(rng.integers(0, 4))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = rng.uniform(0, 1) * w, rng.uniform(0, 1) * h
        rw, rh = rng.uniform(0.04, 0.35) * w, rng.uniform(0.04, 0.35) * h
        box = [cx - rw, cy - rh, cx + rw, cy + rh]
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        elif kind == 2:
            n = int(rng.integers(3, 7))
            pts = [
                (float(cx + rw * rng.uniform(-1, 1)), float(cy + rh * rng.uniform(-1, 1)))
                for _ in range(n)
            ]
            draw.polygon(pts, fill=colour)
        else:
            width = max(1, int(rng.uniform(0.005, 0.03) * min(w, h)))
            draw.line(box, fill=colour, width=width)

    # Light sensor-like noise so JPEG sizes and decode costs resemble photographs.
    # Uniform integers added in C (ImageChops) are far cheaper than numpy normals at full size;
    # the benchmarks draw 10,000 of these images.
    if not noise:
        return img
    grain = Image.fromarray(rng.integers(0, 19, size=(h, w, 3), dtype=np.uint8), "RGB")
    return ImageChops.add(img, grain, scale=1.0, offset=-9)


def jpeg_bytes(img: Image.Image, quality: int = DEMO_JPEG_QUALITY) -> bytes:
    """Encode ``img`` as a baseline JPEG at ``quality`` and return the bytes."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    """Encode ``img`` as PNG and return the bytes."""
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    """Encode ``img`` in any Pillow format (GIF, WEBP, BMP, …) and return the bytes."""
    buf = io.BytesIO()
    if fmt.upper() in ("JPEG", "BMP") and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    img.save(buf, fmt, **params)
    return buf.getvalue()


def demo_image_bytes(seed: int) -> bytes:
    """The canonical bytes of demo image ``seed`` (JPEG q90 of a 512×512 scene)."""
    return jpeg_bytes(make_image(seed, DEMO_SIZE), DEMO_JPEG_QUALITY)


ASPECTS = ((4, 3), (3, 2), (16, 9), (1, 1))


@functools.lru_cache(maxsize=8)
def _grain(size: tuple[int, int]) -> Image.Image:
    """Uniform noise in -9..9 over ``size``, tiled from one 257 px square (odd: the tile edges
    fall across JPEG's 8x8 blocks, so the encoder sees no repeating block)."""
    tile = Image.fromarray(np.random.default_rng(0x677261).integers(
        0, 19, size=(257, 257, 3), dtype=np.uint8), "RGB")
    out = Image.new("RGB", size)
    for x in range(0, size[0], 257):
        for y in range(0, size[1], 257):
            out.paste(tile, (x, y))
    return out


def realistic_image(seed: int) -> tuple[bytes, str]:
    """``(bytes, content type)`` of a file shaped like a reported image: mostly photo-like
    JPEGs whose longest side is 640-1600 px (quality 75-92, either orientation), one in ten a
    PNG graphic (640-1024 px, no grain, as screenshots are) and one in ten a WebP (quality 80).
    Deterministic in ``seed``; the benchmarks' "realistic" workload."""
    rng = np.random.default_rng([seed, 0x7265616C])
    roll = float(rng.uniform())
    fmt = "JPEG" if roll < 0.8 else ("PNG" if roll < 0.9 else "WEBP")
    longest = int(rng.integers(640, 1025 if fmt == "PNG" else 1601))
    a, b = ASPECTS[int(rng.integers(0, len(ASPECTS)))]
    size = (longest, max(8, longest * b // a))
    if rng.uniform() < 0.3:  # portrait
        size = (size[1], size[0])
    img = make_image(seed, size, noise=False)
    if fmt != "PNG":  # sensor-like grain, tiled (full-size noise costs more than the rest)
        img = ImageChops.add(img, _grain(size), scale=1.0, offset=-9)
    if fmt == "JPEG":
        return jpeg_bytes(img, int(rng.integers(75, 93))), "image/jpeg"
    if fmt == "PNG":
        return png_bytes(img), "image/png"
    return encode(img, "WEBP", quality=80), "image/webp"


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def resize_half(img: Image.Image) -> bytes:
    """Downscale to 50 % (Lanczos), re-encode as JPEG q90."""
    return jpeg_bytes(img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS))


def jpeg_q40(img: Image.Image) -> bytes:
    """Re-encode as a low-quality JPEG (q40)."""
    return jpeg_bytes(img, 40)


def crop_5(img: Image.Image) -> bytes:
    """Crop 5 % of each dimension, split evenly between opposite edges; JPEG q90."""
    dx, dy = round(img.width * 0.025), round(img.height * 0.025)
    return jpeg_bytes(img.crop((dx, dy, img.width - dx, img.height - dy)))


def crop_5_corner(img: Image.Image) -> bytes:
    """Crop 5 % of each dimension from the right and bottom edges only (content shifts); q90."""
    dx, dy = round(img.width * 0.05), round(img.height * 0.05)
    return jpeg_bytes(img.crop((0, 0, img.width - dx, img.height - dy)))


def jpeg_to_png(img: Image.Image) -> bytes:
    """Decode the canonical JPEG and store it losslessly as PNG (format change only)."""
    return png_bytes(_decode(jpeg_bytes(img)))


def png_to_jpeg(img: Image.Image) -> bytes:
    """Take a PNG copy of the original and re-encode it as JPEG q75."""
    return jpeg_bytes(_decode(png_bytes(img)), 75)


def text_overlay(img: Image.Image) -> bytes:
    """Stamp a short caption (Pillow's default font) in the lower-left corner; JPEG q90."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, img.height // 24))
    draw.text(
        (img.width // 30, img.height - img.height // 12),
        "posted 2026-11-30 #4711",
        fill=(255, 255, 255),
        font=font,
        stroke_width=1,
        stroke_fill=(0, 0, 0),
    )
    return jpeg_bytes(out)


def mirror(img: Image.Image) -> bytes:
    """Flip left-right, JPEG q90 (pHash and plain PDQ are not mirror-invariant)."""
    return jpeg_bytes(ImageOps.mirror(img))


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "resize_50": resize_half,
    "jpeg_q40": jpeg_q40,
    "crop_5": crop_5,
    "crop_5_corner": crop_5_corner,
    "jpeg_to_png": jpeg_to_png,
    "png_to_jpeg": png_to_jpeg,
    "text": text_overlay,
    "mirror": mirror,
}


def build_demo_hashlist(path: str | os.PathLike[str], n: int = 20) -> int:
    """Write a CSV hash list for demo seeds ``0..n-1`` to ``path``; return the row count.

    Each image contributes md5, sha1, sha256 and pHash rows, plus PDQ when pdqhash is
    installed; hashes are of ``demo_image_bytes(seed)`` through ``engine.media.hashing``, so
    the lab server serving those bytes produces exact and perceptual matches.
    """
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.media.hashing import hash_media  # late import: engine must not need plugins

    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["hash_type", "hash", "category", "label", "source"])
        for seed in range(n):
            h = hash_media(demo_image_bytes(seed))
            label = f"synthetic-{seed:04d}"
            for kind in HASH_TYPE_NAMES:
                if h.get(kind):
                    writer.writerow([kind, h[kind], "baseline", label, DEMO_SOURCE])
                    rows += 1
    return rows
