"""How much memory decoding one image may take, per process (no imaging imports: light); what
hashing one video may cost (:class:`VideoLimits`, passed with each video task).

``[fetch] max_decode_mb`` reaches each CPU-pool worker through ``set_max_decode_mb`` (a pool
``setup`` function the fetch stage registers), and :mod:`engine.media.hashing` refuses an image
whose decode would allocate more before decoding a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_DECODE_MB = 256

_max_decode_mb: float = DEFAULT_MAX_DECODE_MB


def set_max_decode_mb(mb: float) -> None:
    """Set this process's budget for decoding one image, in MiB."""
    global _max_decode_mb
    if not mb > 0:
        raise ValueError("max_decode_mb must be greater than 0")
    _max_decode_mb = float(mb)


def max_decode_bytes() -> int:
    """This process's budget for decoding one image, in bytes."""
    return int(_max_decode_mb * 2**20)


@dataclass(frozen=True)
class VideoLimits:
    """What hashing one video may cost (``[fetch] max_video_*``)."""

    #: Longest duration (seconds), from the header and again from the frames' timestamps.
    max_seconds: float = 3600.0
    #: Most frames decoded (all frames are decoded; one a second is hashed).
    max_frames: int = 216_000
    #: Largest frame (pixels): 4096 x 2304 admits 4K video.
    max_pixels: int = 4096 * 2304
    #: Memory budget for decoding and hashing (bytes); None: this process's decode budget.
    max_bytes: int | None = None
