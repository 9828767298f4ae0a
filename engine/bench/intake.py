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


_CHILD = """
import json, sys, time
from engine.intake import submit_files
from engine.runtime import Runtime
rt = Runtime.open(db=sys.argv[1])
started = time.perf_counter()
result = submit_files(rt.store, [sys.argv[2]], clock=rt.clock)
seconds = time.perf_counter() - started
rt.close()
print(json.dumps({"seconds": seconds, "accepted": result.accepted,
                  "duplicates": result.duplicates, "rejected": len(result.rejected)}))
"""


def bench_intake(n: int = 100_000) -> dict[str, Any]:
    """Submit ``n`` generated URLs in a fresh child process; time and peak RSS.

    ``seconds`` / ``urls_per_s`` time the submission itself (read, canonicalise, deduplicate,
    store, commit), as ``ntd submit`` runs it; ``process_seconds`` is the whole child process,
    including Python's start-up, plugin loading and closing the database.
    """
    with tempfile.TemporaryDirectory(prefix="ntd-bench-") as tmp:
        src = Path(tmp) / "urls.txt"
        src.write_text("\n".join(generate_urls(n)) + "\n", encoding="utf-8")
        db = Path(tmp) / "bench.db"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(db), str(src)],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "NTD_DISABLE_PLUGINS": ""})
        process_seconds = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise RuntimeError(f"intake failed: {proc.stderr.strip()}")
        out = json.loads(proc.stdout)
    return {"urls": n, "seconds": round(out["seconds"], 3),
            "urls_per_s": round(n / out["seconds"]),
            "process_seconds": round(process_seconds, 3),
            "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
            "accepted": out["accepted"], "duplicates": out["duplicates"],
            "rejected": out["rejected"]}
