"""Benchmarks of the engine core (``ntd bench intake``). Stage benchmarks live with their stages."""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def generate_urls(n: int, *, hosts: int = 1000, seed: int = 0) -> list[str]:
    """``n`` synthetic report URLs over ``hosts`` lab host names (``*.example.test``)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        host = f"host-{rng.randrange(hosts)}.example.test"
        kind = rng.random()
        if kind < 0.7:
            out.append(f"http://{host}/img/{i:07d}.jpg")
        else:
            out.append(f"https://{host}/gallery/{i:07d}/index.html?p={rng.randrange(100)}")
    return out


def bench_intake(n: int = 100_000) -> dict[str, Any]:
    """Run ``ntd submit`` on ``n`` generated URLs in a child process; time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="ntd-bench-") as tmp:
        src = Path(tmp) / "urls.txt"
        src.write_text("\n".join(generate_urls(n)) + "\n", encoding="utf-8")
        db = Path(tmp) / "bench.db"
        cmd = [sys.executable, "-m", "engine.cli", "--db", str(db), "submit", str(src), "--json"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, "NTD_DISABLE_PLUGINS": ""})
        seconds = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise RuntimeError(f"ntd submit failed: {proc.stderr.strip()}")
        out = json.loads(proc.stdout)
    return {"urls": n, "seconds": round(seconds, 3), "urls_per_s": round(n / seconds),
            "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
            "accepted": out["accepted"], "duplicates": out["duplicates"],
            "rejected": len(out["rejected"])}
