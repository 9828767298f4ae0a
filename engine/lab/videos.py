"""Synthetic test videos, written in memory with PyAV: noise blocks, shapes, moving gradients.

Nothing here is real media. :func:`make_video` gives a seeded video whose scene changes every
second (so vPDQ keeps one frame a second), and the transformations a copy of a listed video
goes through (re-encoded with another codec and quality, resized, trimmed) are its parameters.
:func:`hostile_videos` gives the refused cases of the tests and the benchmark.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np


def _scene(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One synthetic scene: a coarse noise pattern, a gradient and a rectangle, RGB."""
    cell = max(1, width // 8)
    blocks = rng.integers(0, 256, (-(-height // cell), 8, 3), dtype=np.uint8)
    img = np.kron(blocks, np.ones((cell, cell, 1), dtype=np.uint8))[:height, :width]
    img = np.pad(img, ((0, height - img.shape[0]), (0, width - img.shape[1]), (0, 0)),
                 mode="edge")
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    img[y0:y0 + height // 3, x0:x0 + width // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


def video_frames(seed: int, seconds: int, fps: int, width: int, height: int,
                 start: int = 0) -> Iterator[np.ndarray]:
    """The frames of the seeded video from second ``start`` (one at a time: a long video is
    never all in memory): a new scene each second, a gradient drifting within."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 24, width, dtype=np.float32)[None, :, None]
    for second in range(seconds):
        scene = _scene(rng, width, height).astype(np.float32)  # (drawn even when skipped)
        if second < start:
            continue
        for i in range(fps):
            yield np.clip(scene + np.roll(ramp, i * 2, axis=1), 0, 255).astype(np.uint8)


def encode(frames: Iterable[np.ndarray], *, fps: int | Fraction = 10, codec: str = "libx264",
           container: str = "mp4", width: int | None = None, height: int | None = None,
           crf: int | None = None) -> bytes:
    """Encode RGB frames into a video in memory (``width``/``height``: scaled on encoding)."""
    buf = io.BytesIO()
    it = iter(frames)
    first = next(it)
    h0, w0 = first.shape[:2]
    w, h = width or w0, height or h0
    with av.open(buf, "w", format=container) as out:
        stream: Any = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", **({"crf": str(crf)} if crf else {})}
        for img in itertools.chain([first], it):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if (w, h) != (w0, h0):
                frame = frame.reformat(width=w, height=h)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def make_video(seed: int, *, seconds: int = 4, fps: int = 10, width: int = 320,
               height: int = 240, codec: str = "libx264", container: str = "mp4",
               start: int = 0, scale: float = 1.0, crf: int | None = None) -> bytes:
    """The seeded synthetic video, optionally from second ``start`` (trimmed), scaled by
    ``scale`` (even dimensions) and re-encoded with ``codec``/``crf``."""
    frames = video_frames(seed, seconds, fps, width, height, start)
    w, h = (int(width * scale) // 2 * 2, int(height * scale) // 2 * 2)
    return encode(frames, fps=fps, codec=codec, container=container, width=w, height=h,
                  crf=crf)


def one_frame_video(seconds: int = 36_000) -> bytes:
    """A video of one frame that lasts ``seconds`` (10 hours by default): a few KB."""
    frame = next(video_frames(1, 1, 1, 64, 48))
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream: Any = out.add_stream("mpeg4", rate=Fraction(1, seconds))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(2):  # the second frame marks the end, `seconds` later
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def huge_frame_video(width: int = 4096, height: int = 4096) -> bytes:
    """A small file of one flat frame of ``width`` x ``height``: a decompression bomb."""
    flat = np.zeros((height, width, 3), dtype=np.uint8)
    return encode([flat], fps=1, codec="mpeg4", container="mp4")


def zip_as_mp4() -> bytes:
    """A zip bomb (a megabyte-scale run of zeros, deflated) whose bytes are served as MP4."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("movie.mp4", b"\0" * (64 * 2**20))
    return buf.getvalue()


def fake_mp4_header(payload: bytes) -> bytes:
    """``payload`` behind an MP4 ``ftyp`` box: sniffed as MP4, not one."""
    return b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2" + payload
