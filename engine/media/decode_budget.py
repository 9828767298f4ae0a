"""How much memory decoding one image may take, per process (no imaging imports: light).

``[fetch] max_decode_mb`` reaches each CPU-pool worker through ``set_max_decode_mb`` (a pool
``setup`` function the fetch stage registers), and :mod:`engine.media.hashing` refuses an image
whose decode would allocate more before decoding a pixel.
"""

from __future__ import annotations

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
