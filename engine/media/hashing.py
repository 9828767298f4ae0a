"""Hash fetched media: MD5/SHA-1/SHA-256 of the bytes, pHash and PDQ of the pixels.

Bytes stay in memory (``io.BytesIO``); nothing is written to disk. Every function here is a
module-level function of plain arguments, so ``ProcessPoolExecutor.submit(hash_media, data)``
works.

Decoding is defensive because the bytes come from hostile servers:

* Pillow may only try ``ALLOWED_FORMATS`` (no TIFF/PSD/EPS/… parsers on untrusted input);
* the header's pixel count is checked against ``max_pixels`` *before* any pixel is decoded (a
  local check: Pillow's global ``MAX_IMAGE_PIXELS`` is left alone), and Pillow's own
  ``DecompressionBombError``/``DecompressionBombWarning`` (an error under pytest) map to "bomb";
* pHash is imagehash's algorithm (bit-identical), PDQ is Meta's via ``pdqhash``;
* JPEGs are decoded at reduced scale straight to luma (``Image.draft``): perceptual hashes only
  need a small greyscale picture and the IDCT of the discarded coefficients is most of the cost.
  pHash is taken from a decode whose long side is ≥ ``PHASH_MIN_SIDE`` and PDQ from one ≥
  ``PDQ_MIN_SIDE`` (PDQ's reference tooling also hashes ≤512 px thumbnails); the distance to the
  full-resolution hashes is measured by ``engine.bench.matching.robustness``.

Failures raise :class:`MediaError` with ``reason`` "not_image", "bomb" or "decode_error";
callers that still want the cryptographic hashes of non-images use :func:`crypto_hashes`.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import scipy.fftpack  # what imagehash.phash uses; pulled in by imagehash
from PIL import Image, UnidentifiedImageError

from engine.errors import StageError
from engine.media.digests import crypto_hashes  # noqa: F401  (re-exported: part of this module's API)

try:  # optional: builds from source (no Linux wheel); without it "pdq" is None
    import pdqhash
except ImportError:  # pragma: no cover - depends on the environment
    pdqhash = None

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
# 50 Mpx admits 8K×6K photos; at 3 bytes/px a full decode is then ≤150 MB per worker.
MAX_PIXELS = 50_000_000
PHASH_MIN_SIDE = 128  # pHash resizes to 32×32; a 128 px source gives the same bits
PDQ_MIN_SIDE = 512  # PDQ downsamples to 64×64 with a tent filter; 1/4-scale drifts (measured)
PDQ_AVAILABLE = pdqhash is not None

# Pillow's known failure modes for malformed files (SyntaxError/struct.error come from plugins).
_DECODE_ERRORS = (ValueError, OSError, EOFError, SyntaxError, struct.error, IndexError, TypeError)


class MediaError(StageError):
    """Bytes that cannot be hashed as an image: ``reason`` is not_image, bomb or decode_error."""


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
    if img.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa") or "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("L")


def decode_luma(
    data: bytes, *, min_side: int | None = PDQ_MIN_SIDE, max_pixels: int = MAX_PIXELS
) -> tuple[Image.Image, int, int, str]:
    """Decode ``data`` to a greyscale image, reduced for JPEGs; return (image, w, h, format).

    ``width``/``height`` are the original dimensions. ``min_side=None`` decodes at full size.
    Raises :class:`MediaError` for non-images, decompression bombs and corrupt files.
    """
    try:
        img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except UnidentifiedImageError as exc:
        raise MediaError("not a supported image format", reason="not_image") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError("image dimensions exceed the pixel limit", reason="bomb") from exc
    except _DECODE_ERRORS as exc:
        raise MediaError(
            f"image header unreadable: {type(exc).__name__}", reason="decode_error"
        ) from exc
    with img:
        width, height = img.size
        fmt = img.format or "unknown"
        if width <= 0 or height <= 0 or width * height > max_pixels:
            raise MediaError(
                f"image of {width}x{height} pixels exceeds the limit of {max_pixels}",
                reason="bomb",
            )
        try:
            if fmt == "JPEG" and min_side is not None:
                scale = _reduced_scale(width, height, min_side)
                # Asking for "L" makes libjpeg skip the chroma planes of YCbCr files.
                img.draft("L", (max(1, width // scale), max(1, height // scale)))
            img.load()
            luma = _to_luma(img)
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


def _pdq_input(luma: Image.Image) -> np.ndarray:
    arr = np.asarray(luma.convert("L"), dtype=np.uint8)
    # pdqhash wants H×W×3 and recomputes luma; a broadcast view of one channel costs nothing
    # and gives back exactly this luma (0.299+0.587+0.114 = 1).
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
    data: bytes, *, with_pdq: bool = True, max_pixels: int = MAX_PIXELS
) -> dict[str, Any]:
    """Hash image bytes: crypto hashes plus pHash, PDQ (+quality), dimensions and format.

    Returns ``{"md5", "sha1", "sha256", "phash", "pdq", "pdq_quality", "pdq_mirror", "width",
    "height", "format"}`` (``pdq_mirror``: the PDQ of the left-right mirror image); the ``pdq``
    keys are None when ``with_pdq`` is false or pdqhash is not
    installed. Raises :class:`MediaError` for anything that is not a safely decodable image —
    fall back to :func:`crypto_hashes` for those.
    """
    result: dict[str, Any] = crypto_hashes(data)
    want_pdq = with_pdq and pdqhash is not None
    luma, width, height, fmt = decode_luma(
        data, min_side=PDQ_MIN_SIDE if want_pdq else PHASH_MIN_SIDE, max_pixels=max_pixels
    )
    result["phash"] = phash_hex(_shrink_for_phash(luma))
    # A left-right mirror is the cheapest evasion of a hash list: the mirror image's PDQ is
    # kept too, and matching looks both up. (Not pHash's: looking up a second pHash doubled
    # its false matches among unrelated images, 0 -> 1 in 10,000; PDQ's stayed 0.)
    pdq = pdq_hex_and_mirror(luma) if want_pdq else None
    result["pdq"] = pdq[0] if pdq else None
    result["pdq_quality"] = pdq[1] if pdq else None
    result["pdq_mirror"] = pdq[2] if pdq else None
    result.update(width=width, height=height, format=fmt)
    return result
