"""Hash fetched media: MD5/SHA-1/SHA-256 of the bytes, pHash and PDQ of the pixels.

Bytes stay in memory (``io.BytesIO``); nothing is written to disk. Every function here is a
module-level function of plain arguments, so ``ProcessPoolExecutor.submit(hash_media, data)``
works.

Decoding is defensive because the bytes come from hostile servers:

* Pillow may only try ``ALLOWED_FORMATS`` (no TIFF/PSD/EPS/… parsers on untrusted input);
* the header's pixel count is checked against ``max_pixels`` *before* any pixel is decoded (a
  local check: Pillow's global ``MAX_IMAGE_PIXELS`` is left alone), and Pillow's own
  ``DecompressionBombError``/``DecompressionBombWarning`` (an error under pytest) map to "bomb";
* pixels alone do not bound the cost (a 194 KB PNG of 7071×7071 RGBA is just under the pixel cap
  and cost 1.6 GB and 10 s of CPU): :func:`decode_cost` estimates from the header what decoding
  and hashing will allocate (width × height × bytes per pixel of the decoded mode, the
  conversions to luma, PDQ's float buffers), and an image over the budget
  (``max_decode_bytes``, default ``[fetch] max_decode_mb`` = 256 MiB) is refused as
  "over_budget" before a pixel is decoded;
* a file that would inflate more than ``MAX_INFLATION`` times into a frame over
  ``INFLATION_FLOOR`` is a decompression bomb ("bomb"): formats other than JPEG decode at full
  size, and a photo never compresses 256:1 (a huge flat canvas does; it matches no list);
* pHash is imagehash's algorithm (bit-identical), PDQ is Meta's via ``pdqhash``;
* PDQ is fed the RGB image, as ThreatExchange computes it (its luma from the three channels in
  floating point; feeding a rounded 8-bit grey image moved hashes by a few bits); pHash is taken
  from the grey image (imagehash's steps). Greyscale sources stay one channel;
* JPEGs are decoded at reduced scale (``Image.draft``; to RGB when PDQ is wanted, else straight
  to luma): perceptual hashes only need a small picture and the IDCT of the discarded
  coefficients is most of the cost.
  pHash is taken from a decode whose long side is ≥ ``PHASH_MIN_SIDE`` and PDQ from one ≥
  ``PDQ_MIN_SIDE`` (PDQ's reference tooling also hashes ≤512 px thumbnails); the distance to the
  full-resolution hashes is measured by ``engine.bench.matching.robustness``;
* formats without a reduced decode (PNG, GIF, WebP, BMP) are box-reduced after decoding by the
  largest integer factor that keeps the long side ≥ ``PDQ_MIN_SIDE`` (as a JPEG's DCT scale
  does), and always to at most ``PDQ_MAX_PIXELS`` (4 Mpx), so PDQ's float buffers (~32 bytes a
  pixel in pdqhash) stay small and its filter does not run over pixels it averages away.

Failures raise :class:`MediaError` with ``reason`` "not_image", "bomb", "over_budget" or
"decode_error";
callers that still want the cryptographic hashes of non-images use :func:`crypto_hashes`.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import numpy as np
import scipy.fftpack  # what imagehash.phash uses; pulled in by imagehash
from PIL import Image, UnidentifiedImageError

from engine.errors import StageError
from engine.media.decode_budget import max_decode_bytes
from engine.media.digests import crypto_hashes  # noqa: F401  (re-exported: part of this module's API)

try:  # optional: builds from source (no Linux wheel); without it "pdq" is None
    import pdqhash
except ImportError:  # pragma: no cover - depends on the environment
    pdqhash = None

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
# 50 Mpx admits 8K×6K photos (what that costs to decode is bounded by the budget, not this).
MAX_PIXELS = 50_000_000
PHASH_MIN_SIDE = 128  # pHash resizes to 32×32; a 128 px source gives the same bits
PDQ_MIN_SIDE = 512  # PDQ downsamples to 64×64 with a tent filter; 1/4-scale drifts (measured)
# Larger decoded images are box-reduced before PDQ: pdqhash computes its luma in float64
# temporaries (~32 bytes a pixel), 1.3 GB for a 50 Mpx image.
PDQ_MAX_PIXELS = 4_000_000
_PDQ_BYTES_PER_PIXEL = 32
# Small files with huge dimensions: refused from the header (a 194 KB PNG of 7071x7071 RGBA
# inflates 1030-fold). Photos stay far below the ratio; below the floor nothing is refused.
MAX_INFLATION = 256
INFLATION_FLOOR = 64 * 2**20
# Modes Pillow stores in one byte a pixel (everything else but I;16* takes four: RGB is padded).
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
# Modes converted to luma through RGBA (alpha modes; palettes only with a transparency entry:
# converting those straight to "L" warns — an error under our pytest configuration).
_VIA_RGBA = frozenset({"PA", "LA", "La", "RGBa"})
PDQ_AVAILABLE = pdqhash is not None

# Pillow's known failure modes for malformed files (SyntaxError/struct.error come from plugins).
_DECODE_ERRORS = (ValueError, OSError, EOFError, SyntaxError, struct.error, IndexError, TypeError)


class MediaError(StageError):
    """Bytes that cannot be hashed as an image: ``reason`` is not_image, bomb, over_budget or
    decode_error."""


def _reduced_scale(width: int, height: int, min_side: int) -> int:
    """Largest JPEG DCT scale (8, 4, 2, 1) that keeps the long side ≥ ``min_side``."""
    long_side = max(width, height)
    for scale in (8, 4, 2):
        if long_side // scale >= min_side:
            return scale
    return 1


def _to_luma(img: Image.Image) -> Image.Image:
    # Palette/alpha images go through RGBA first: converting a "P" image whose transparency
    # is a byte string straight to "L" emits a UserWarning (an error under our pytest config).
    if img.mode == "L":
        return img
    if _via_rgba(img.mode, "transparency" in img.info):
        img = img.convert("RGBA")  # (RGBA itself goes straight to L: a copy is 4 bytes/px)
    return img.convert("L")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if _via_rgba(img.mode, "transparency" in img.info):
        img = img.convert("RGBA")  # (palettes with transparency: see _to_luma)
    return img.convert("RGB")


def _via_rgba(mode: str, transparency: bool) -> bool:
    # (a palette without transparency gives the same luma either way: tests compare them)
    return mode in _VIA_RGBA or (transparency and mode != "RGBA")


def _bytes_per_pixel(mode: str) -> int:
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode.startswith("I;16") else 4


def _box_scale(fmt: str, width: int, height: int, min_side: int) -> int:
    """Box-reduction factor for a format decoded at full size (not JPEG, whose decode is
    already reduced): the largest that keeps the long side ≥ ``min_side``, as the JPEG DCT
    scale does. PDQ's cost grows with the pixels it filters (a 1,600 px PNG or WebP: 14 ms,
    3.4 ms reduced); its hash moves by a bit or two on average (realistic PNG/WebP sample:
    mean 1.4 bits, at most 12; pHash mean 0.1, at most 2)."""
    if fmt == "JPEG":
        return 1
    return max(1, max(width, height) // min_side)


def _pdq_factor(width: int, height: int) -> int:
    """Box-reduction factor that brings a decoded image to at most ``PDQ_MAX_PIXELS``."""
    pixels = width * height
    if pixels <= PDQ_MAX_PIXELS:
        return 1
    return math.ceil(math.sqrt(pixels / PDQ_MAX_PIXELS))


def decode_cost(width: int, height: int, mode: str, fmt: str, scale: int = 1, *,
                transparency: bool = False, rgb: bool = True) -> int:
    """Bytes that decoding and hashing an image of this header will allocate at its peak.

    ``scale`` is the JPEG DCT reduction (``Image.draft``); other formats decode at full size.
    The decode phase holds the decoded frame (WebP: libwebp's buffer too), the RGBA step of
    palette/alpha modes and the luma image; the hash phase holds the luma image, its
    reduction and PDQ's float buffers. Measured peaks stay below this (tests/test_hostile.py).
    """
    w, h = -(-width // scale), -(-height // scale)
    pixels = w * h
    # WebP: libwebp's animation decoder keeps its canvases besides Pillow's frame: about four
    # frames' worth at the peak (measured).
    frame = pixels * _bytes_per_pixel(mode) * (4 if fmt == "WEBP" else 1)
    rgba = pixels * 4 if _via_rgba(mode, transparency) else 0
    colour = rgb and mode != "L"
    # the kept image: one byte a pixel (luma) or four (RGB, plus the pHash luma)
    kept = pixels * (5 if colour else 1)
    luma = 0 if mode == "L" else kept
    factor = _pdq_factor(w, h)
    reduced = pixels // (factor * factor)
    per_reduced = (4 if colour else 1) if factor > 1 else 0
    pdq_input = reduced * 3 if colour else 0
    hashing = kept + reduced * per_reduced + pdq_input + reduced * _PDQ_BYTES_PER_PIXEL
    # The counts above are what Pillow and pdqhash allocate; allocator slack on top (measured
    # peaks came within 1 % of the counts).
    return int(max(frame + rgba + luma, hashing) * 1.05) + 4 * 2**20


def open_image(data: bytes) -> Image.Image:
    """Read the header of ``data`` (no pixel is decoded yet) in one of ``ALLOWED_FORMATS``.

    Raises :class:`MediaError`: ``not_image`` for other formats, ``bomb`` when Pillow's own
    pixel limit trips, ``decode_error`` for an unreadable header. Every decode of fetched
    bytes (hashing, the workbench preview) starts here, then checks size and budget."""
    try:
        return Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except UnidentifiedImageError as exc:
        raise MediaError("not a supported image format", reason="not_image") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError("image dimensions exceed the pixel limit", reason="bomb") from exc
    except _DECODE_ERRORS as exc:
        raise MediaError(
            f"image header unreadable: {type(exc).__name__}", reason="decode_error"
        ) from exc


def decode_luma(
    data: bytes, *, min_side: int | None = PDQ_MIN_SIDE, max_pixels: int = MAX_PIXELS,
    max_bytes: int | None = None,
) -> tuple[Image.Image, int, int, str]:
    """Decode ``data`` to a greyscale image (see :func:`decode_image`)."""
    return decode_image(data, min_side=min_side, max_pixels=max_pixels, max_bytes=max_bytes,
                        rgb=False)


def decode_image(
    data: bytes, *, min_side: int | None = PDQ_MIN_SIDE, max_pixels: int = MAX_PIXELS,
    max_bytes: int | None = None, rgb: bool = True,
) -> tuple[Image.Image, int, int, str]:
    """Decode ``data``, reduced for JPEGs; return (image, w, h, format).

    The image is ``RGB`` (``rgb=True``, what PDQ hashes: ThreatExchange computes PDQ's luma
    from the three colour channels in floating point) or ``L`` for greyscale sources, and
    ``L`` throughout with ``rgb=False``.

    ``width``/``height`` are the original dimensions. ``min_side=None`` decodes at full size.
    ``max_bytes`` (default: this process's ``max_decode_bytes()``) bounds :func:`decode_cost`.
    Raises :class:`MediaError` for non-images, decompression bombs, images over the memory
    budget and corrupt files.
    """
    budget = max_decode_bytes() if max_bytes is None else max_bytes
    with open_image(data) as img:
        width, height = img.size
        fmt = img.format or "unknown"
        if width <= 0 or height <= 0 or width * height > max_pixels:
            raise MediaError(
                f"image of {width}x{height} pixels exceeds the limit of {max_pixels}",
                reason="bomb",
            )
        draft = fmt == "JPEG" and min_side is not None
        scale = _reduced_scale(width, height, min_side) if draft and min_side else 1
        # (draft "L" below: YCbCr and grey JPEGs decode to one byte a pixel, CMYK stays four;
        # draft "RGB": colour JPEGs decode to four bytes a pixel)
        grey = img.mode in ("L", "1", "I;16", "I;16B", "I;16L", "I", "F", "LA", "La")
        target = "L" if (not rgb or grey) else "RGB"
        mode = (target if draft and img.mode in ("L", "RGB", "YCbCr") else img.mode)
        frame = width * height * _bytes_per_pixel(img.mode)
        if not draft and frame > INFLATION_FLOOR and frame > MAX_INFLATION * len(data):
            raise MediaError(
                f"{len(data)} bytes would inflate to a {width}x{height} {img.mode} frame of "
                f"{frame / 2**20:.0f} MiB (over {MAX_INFLATION}:1)", reason="bomb")
        cost = decode_cost(width, height, mode, fmt, scale,
                           transparency="transparency" in img.info, rgb=target == "RGB")
        if cost > budget:
            raise MediaError(
                f"decoding {width}x{height} {img.mode} {fmt} would take ~{cost / 2**20:.0f} MiB"
                f" (budget {budget / 2**20:.0f} MiB)", reason="over_budget")
        try:
            if draft:
                # Asking for "L" makes libjpeg skip the chroma planes of YCbCr files.
                img.draft(target, (max(1, width // scale), max(1, height // scale)))
            img.load()
            luma = _to_luma(img) if target == "L" else _to_rgb(img)
            if luma is img:
                luma = img.copy()  # detach from the file object closed below
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaError("image dimensions exceed the pixel limit", reason="bomb") from exc
        except _DECODE_ERRORS as exc:
            raise MediaError(
                f"image data undecodable: {type(exc).__name__}", reason="decode_error"
            ) from exc
    return luma, width, height, fmt


def phash_hex(luma: Image.Image) -> str:
    """64-bit pHash of a decoded image as 16 lower-case hex characters.

    The same steps as ``str(imagehash.phash(img))`` (a test checks bit equality), without
    imagehash's wrapper object and its bit-string formatting, ~0.1 ms per image on the hot path.
    """
    small = luma.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(np.asarray(small), axis=0), axis=1)
    low = dct[:8, :8]
    return np.packbits((low > np.median(low)).reshape(-1)).tobytes().hex()


def _pdq_input(image: Image.Image) -> np.ndarray:
    if image.mode == "RGB":
        # As ThreatExchange computes it: PDQ's luma from the R, G, B channels in floating
        # point, not from an 8-bit grey image rounded first.
        return np.asarray(image, dtype=np.uint8)
    arr = np.asarray(image.convert("L"), dtype=np.uint8)
    # A grey source: pdqhash wants H×W×3 and recomputes luma; a broadcast view of one channel
    # costs nothing and gives back exactly this luma (0.299+0.587+0.114 = 1).
    return np.broadcast_to(arr[:, :, None], (*arr.shape, 3))


def _pdq_packed(vector: np.ndarray) -> str:
    # pdqhash returns bit 255 first, i.e. the reference hex order once packed MSB-first.
    return np.packbits(np.asarray(vector).astype(np.uint8)).tobytes().hex()


def pdq_hex(luma: Image.Image) -> tuple[str, int] | None:
    """256-bit PDQ hash (64 hex, reference bit order) and quality, or None without pdqhash."""
    if pdqhash is None:
        return None
    vector, quality = pdqhash.compute(_pdq_input(luma))
    return _pdq_packed(vector), int(quality)


# PDQ's dihedral hashes come in the reference order: original, rotated 90°, 180°, 270°, flipped
# about the horizontal axis, flipped about the vertical axis (a left-right mirror), and the
# two diagonal flips.
_PDQ_MIRROR = 5


def pdq_hex_and_mirror(luma: Image.Image) -> tuple[str, int, str] | None:
    """PDQ hash, quality and the PDQ hash of the left-right mirror image, from one DCT
    (pdqhash's dihedral variant costs about what one hash does); None without pdqhash."""
    if pdqhash is None:
        return None
    vectors, quality = pdqhash.compute_dihedral(_pdq_input(luma))
    return _pdq_packed(vectors[0]), int(quality), _pdq_packed(vectors[_PDQ_MIRROR])


def _shrink_for_phash(luma: Image.Image) -> Image.Image:
    # A PDQ-sized decode is 4× more pixels than pHash needs; Lanczos from 512 px costs ~1 ms.
    long_side = max(luma.size)
    factor = long_side // PHASH_MIN_SIDE
    if factor >= 2:
        return luma.reduce(factor)
    return luma


def hash_media(
    data: bytes, *, with_pdq: bool = True, max_pixels: int = MAX_PIXELS,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Hash image bytes: crypto hashes plus pHash, PDQ (+quality), dimensions and format.

    Returns ``{"md5", "sha1", "sha256", "phash", "pdq", "pdq_quality", "pdq_mirror", "width",
    "height", "format"}`` (``pdq_mirror``: the PDQ of the left-right mirror image); the ``pdq``
    keys are None when ``with_pdq`` is false or pdqhash is not
    installed. ``max_bytes``: the memory budget (default: this process's, see
    :mod:`engine.media.decode_budget`). Raises :class:`MediaError` for anything that is not a
    safely decodable image within it — fall back to :func:`crypto_hashes` for those.
    """
    result: dict[str, Any] = crypto_hashes(data)
    want_pdq = with_pdq and pdqhash is not None
    image, width, height, fmt = decode_image(
        data, min_side=PDQ_MIN_SIDE if want_pdq else PHASH_MIN_SIDE, max_pixels=max_pixels,
        max_bytes=max_bytes, rgb=want_pdq,
    )
    factor = max(_pdq_factor(*image.size),
                 _box_scale(fmt, *image.size, PDQ_MIN_SIDE if want_pdq else PHASH_MIN_SIDE))
    if factor > 1:
        image = image.reduce(factor)
    luma = image if image.mode == "L" else image.convert("L")
    result["phash"] = phash_hex(_shrink_for_phash(luma))
    # A left-right mirror is the cheapest evasion of a hash list: the mirror image's PDQ is
    # kept too, and matching looks both up. (Not pHash's: looking up a second pHash doubled
    # its false matches among unrelated images, 0 -> 1 in 10,000; PDQ's stayed 0.)
    pdq = pdq_hex_and_mirror(image) if want_pdq else None
    result["pdq"] = pdq[0] if pdq else None
    result["pdq_quality"] = pdq[1] if pdq else None
    result["pdq_mirror"] = pdq[2] if pdq else None
    result.update(width=width, height=height, format=fmt)
    return result
