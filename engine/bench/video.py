"""``ntd bench hash --video``: seconds of video hashed (vPDQ) per second per core, peak RSS.

Synthetic videos (``engine.lab.videos``) at a few sizes are encoded in memory first; each is
then hashed as the fetch stage hashes it (``engine.media.video.hash_video``: decode every
frame, PDQ of one a second, prune, digests). The per-core figure is video seconds per CPU-second
of this process. Peak RSS is this process's high-water mark (``VmHWM``) while hashing, reset
after the videos of a size are encoded (Linux); it includes what encoding left resident, so it
bounds what hashing needed. The hostile cases' refusal times and peak follow.
"""

from __future__ import annotations

import os
import time
from typing import Any

from engine.lab.videos import (
    fake_mp4_header,
    huge_frame_video,
    make_video,
    one_frame_video,
    zip_as_mp4,
)
from engine.media.video import VideoError, hash_video

SIZES = ((320, 240), (640, 360), (1280, 720))


def _vm(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # the peak (VmHWM) back to what is resident now
    except OSError:
        pass


def bench_video(videos: int = 3, seconds: int = 10, fps: int = 30) -> dict[str, Any]:
    """Hash ``videos`` synthetic videos of ``seconds`` at ``fps`` for each of ``SIZES``."""
    out: dict[str, Any] = {"videos_per_size": videos, "seconds_each": seconds, "fps": fps,
                           "cpu_count": os.cpu_count()}
    hash_video(make_video(0, seconds=1, fps=fps))  # warm-up: codec tables, pdqhash
    hostile = {"truncated": make_video(5, seconds=4)[:2000],
               "zip_as_mp4": fake_mp4_header(zip_as_mp4()),
               "huge_frames_4096x4096": huge_frame_video(),
               "one_frame_10_hours": one_frame_video()}  # (made first: their encoding's peak)
    for width, height in SIZES:
        datas = [make_video(100 + i, seconds=seconds, fps=fps, width=width, height=height)
                 for i in range(videos)]
        _reset_peak()  # (encoding streamed: only the encoded bytes are held)
        base = _vm("VmRSS")
        w0, c0 = time.perf_counter(), time.process_time()
        frames = 0
        for d in datas:
            frames += hash_video(d)["frames"]
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        total = videos * seconds
        out[f"{width}x{height}"] = {
            "mean_bytes": sum(map(len, datas)) // videos,
            "video_s_per_cpu_s": round(total / max(cpu, 1e-9), 1),
            "video_s_per_wall_s": round(total / wall, 1),
            "frames_decoded_per_cpu_s": round(frames / max(cpu, 1e-9)),
            "rss_mb_before": round(base or 0), "peak_rss_mb": round(_vm("VmHWM") or 0),
        }
    _reset_peak()
    refused: dict[str, Any] = {}
    for name, data in hostile.items():
        t0 = time.perf_counter()
        try:
            hash_video(data)
            reason = "accepted"
        except VideoError as exc:
            reason = exc.reason
        refused[name] = {"bytes": len(data), "reason": reason,
                         "ms": round((time.perf_counter() - t0) * 1000, 1)}
    out["hostile"] = refused
    out["hostile_peak_rss_mb"] = round(_vm("VmHWM") or 0)
    return out
