"""Hash fetched videos in memory: vPDQ (one PDQ per second of video) plus the file digests.

The bytes are decoded from memory with PyAV (``av.open(io.BytesIO(data))``): no path on disk,
no temporary file. Frames are sampled as Meta's vPDQ reference implementation samples them
(``vpdq-hash-video``, ``filehasher.cpp``): the frame rate is the stream's average rate (its
``r_frame_rate`` when that is unknown), every ``int(fps)``-th decoded frame is hashed (every
frame below 1 fps), converted to RGB24 at its full size and hashed with PDQ; each feature holds
the PDQ, its quality, the frame number and the timestamp ``frame / fps``. A test compares the
result with the ``vpdq`` package where that builds.

What is kept for matching is then *pruned* as the vPDQ README describes: a frame within
``PRUNE_DISTANCE`` bits of the last retained frame is dropped (a still scene of a minute is one
feature, not sixty). ``hash_video(..., prune=None)`` gives the reference's unpruned list.

Hostile input has a bounded cost (:class:`VideoLimits`): the container's duration, the stream's
dimensions and the estimated decode memory are checked from the headers before a frame is
decoded, and while decoding every frame's size and timestamp and the number of frames decoded
are checked again (a header may lie). The CPU pool adds its deadline and memory share around
the whole task. Failures raise :class:`VideoError` (a ``MediaError``) whose ``reason`` is
``not_video``, ``too_long``, ``bomb``, ``over_budget`` or ``decode_error``.
"""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np

from engine.media.decode_budget import VideoLimits, max_decode_bytes
from engine.media.digests import crypto_hashes
from engine.media.hashing import MediaError
from engine.media.vpdq_format import Feature, format_features

try:  # optional in the imaging stack too: without it a video gets its digests only
    import pdqhash
except ImportError:  # pragma: no cover - depends on the environment
    pdqhash = None

#: Consecutive frames this close (bits) to the last retained one are pruned (vPDQ README).
PRUNE_DISTANCE = 2
SECONDS_PER_HASH = 1.0
# pdqhash's float buffers (~32 bytes a pixel, as for images), the RGB24 copy (3) and the
# decoder's reference frames (up to 16 YUV 4:2:0 frames at 1.5 bytes a pixel).
_BYTES_PER_PIXEL = 32 + 3 + 16 * 1.5
_BASE_BYTES = 16 * 2**20


class VideoError(MediaError):
    """A video that cannot be hashed: ``reason`` is not_video, too_long, bomb, over_budget or
    decode_error."""


def decode_cost(width: int, height: int) -> int:
    """Bytes that decoding and hashing a video of these dimensions may allocate at its peak."""
    return int(width * height * _BYTES_PER_PIXEL) + _BASE_BYTES


def _frame_rate(stream: Any) -> float:
    rate = stream.average_rate or stream.base_rate  # avg_frame_rate, else r_frame_rate
    return float(rate) if rate else 0.0


def _pdq(rgb: np.ndarray) -> tuple[str, int]:
    vector, quality = pdqhash.compute(rgb)
    # pdqhash returns bit 255 first: the reference hex order once packed MSB-first.
    return np.packbits(np.asarray(vector).astype(np.uint8)).tobytes().hex(), int(quality)


def _check_frame(frame: Any, limits: VideoLimits, budget: int, duration: float) -> None:
    pixels = frame.width * frame.height
    if pixels <= 0 or pixels > limits.max_pixels:
        raise VideoError(f"a frame of {frame.width}x{frame.height} exceeds the limit of "
                         f"{limits.max_pixels} pixels", reason="bomb")
    cost = decode_cost(frame.width, frame.height)
    if cost > budget:
        raise VideoError(f"hashing {frame.width}x{frame.height} frames would take "
                         f"~{cost / 2**20:.0f} MiB (budget {budget / 2**20:.0f} MiB)",
                         reason="over_budget")
    if duration > limits.max_seconds:
        raise VideoError(f"frames run past {limits.max_seconds:.0f} s", reason="too_long")


def _open(data: bytes) -> Any:
    try:
        return av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise VideoError(f"not a readable video container: {type(exc).__name__}",
                         reason="not_video") from exc


def video_features(data: bytes, limits: VideoLimits | None = None) -> tuple[list[Feature],
                                                                            dict[str, Any]]:
    """Decode ``data`` from memory and return (features, info) — the reference's unpruned
    features and ``{"width", "height", "duration", "frames", "format"}``.

    Raises :class:`VideoError` for anything that is not a video within ``limits``."""
    if pdqhash is None:  # pragma: no cover - depends on the environment
        raise VideoError("pdqhash is not installed", reason="decode_error")
    limits = limits or VideoLimits()
    budget = max_decode_bytes() if limits.max_bytes is None else limits.max_bytes
    container = _open(data)
    with container:
        if not container.streams.video:
            raise VideoError("no video stream", reason="not_video")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = ctx.width or 0, ctx.height or 0
        if width <= 0 or height <= 0:
            raise VideoError("the video stream has no dimensions", reason="decode_error")
        seconds = (container.duration or 0) / av.time_base
        if stream.duration and stream.time_base:
            seconds = max(seconds, float(stream.duration * stream.time_base))
        if seconds > limits.max_seconds:
            raise VideoError(f"a video of {seconds:.0f} s exceeds the limit of "
                             f"{limits.max_seconds:.0f} s", reason="too_long")
        fps = _frame_rate(stream)
        if fps <= 0:
            raise VideoError("the video's frame rate is unknown", reason="decode_error")
        if width * height > limits.max_pixels:
            raise VideoError(f"a video of {width}x{height} exceeds the limit of "
                             f"{limits.max_pixels} pixels a frame", reason="bomb")
        cost = decode_cost(width, height)
        if cost > budget:
            raise VideoError(f"hashing {width}x{height} frames would take ~{cost / 2**20:.0f}"
                             f" MiB (budget {budget / 2**20:.0f} MiB)", reason="over_budget")
        stream.thread_type = "SLICE"  # as the reference: no frame threads (their memory)
        stream.codec_context.thread_count = 1
        frame_mod = max(1, int(SECONDS_PER_HASH * fps))
        features: list[Feature] = []
        number = -1
        try:
            for frame in container.decode(stream):
                number += 1
                if number >= limits.max_frames:
                    raise VideoError(f"more than {limits.max_frames} frames",
                                     reason="too_long")
                start = float(frame.time or 0.0) - float(
                    stream.start_time * stream.time_base if stream.start_time else 0.0)
                _check_frame(frame, limits, budget, max(start, number / fps))
                if number % frame_mod:
                    continue
                pdq, quality = _pdq(frame.to_ndarray(format="rgb24"))
                features.append(Feature(pdq, quality, number, round(number / fps, 3)))
        except av.FFmpegError as exc:
            raise VideoError(f"video data undecodable: {type(exc).__name__}",
                             reason="decode_error") from exc
        if number < 0:
            raise VideoError("no frame could be decoded", reason="decode_error")
        fmt = container.format.name.split(",")[0]
    info = {"width": width, "height": height, "duration": round(max(seconds, number / fps), 3),
            "frames": number + 1, "format": fmt}
    return features, info


def prune(features: list[Feature], distance: int = PRUNE_DISTANCE) -> list[Feature]:
    """Drop each frame within ``distance`` bits of the last retained frame (vPDQ README,
    "Pruning Frames"); the first frame is always kept."""
    kept: list[Feature] = []
    last = -1
    for f in features:
        value = int(f.pdq, 16)
        if kept and (value ^ last).bit_count() <= distance:
            continue
        kept.append(f)
        last = value
    return kept


def hash_video(data: bytes, limits: VideoLimits | None = None, *,
               prune_distance: int | None = PRUNE_DISTANCE) -> dict[str, Any]:
    """Hash video bytes: ``{"md5", "sha1", "sha256", "vpdq", "width", "height", "duration",
    "frames", "format"}``, ``vpdq`` in the canonical text form of
    :mod:`engine.media.vpdq_format` (pruned unless ``prune_distance`` is None). Raises
    :class:`VideoError` for anything that is not a video within ``limits``."""
    result: dict[str, Any] = crypto_hashes(data)
    features, info = video_features(data, limits)
    if prune_distance is not None:
        features = prune(features, prune_distance)
    result["vpdq"] = format_features(features)
    result.update(info)
    return result


def contact_sheet(data: bytes, *, columns: int = 4, thumb: int = 160, frames: int = 12,
                  limits: VideoLimits | None = None) -> bytes:
    """A JPEG contact sheet (bytes, in memory) of up to ``frames`` frames sampled evenly over
    the video, ``thumb`` pixels on the long side, ``columns`` a row: for the workbench preview,
    which blurs it. Raises :class:`VideoError` as :func:`video_features` does."""
    # deferred: Pillow is only needed for a preview
    from PIL import Image

    limits = limits or VideoLimits()
    features, info = video_features(data, limits)  # (checks every limit first)
    step = max(1, info["frames"] // max(1, frames))
    wanted = set(range(0, info["frames"], step)[:frames])
    thumbs: list[Image.Image] = []
    with _open(data) as container:
        stream = container.streams.video[0]
        for number, frame in enumerate(container.decode(stream)):
            if number in wanted:
                img = frame.to_image()
                img.thumbnail((thumb, thumb))
                thumbs.append(img)
            if number >= max(wanted):
                break
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (columns * thumb, max(1, rows) * thumb))
    for i, img in enumerate(thumbs):
        sheet.paste(img, ((i % columns) * thumb, (i // columns) * thumb))
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=80)
    return out.getvalue()
