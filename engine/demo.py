"""``ntd demo``: an offline run of the whole chain on synthetic data, with a readable summary.

Everything is generated: host names under ``.test``, images made of noise and shapes, a hash list
built from them. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from engine.intake import submit_files
from engine.runtime import Runtime


def _demo_urls(n: int, rng: random.Random) -> list[str]:
    urls = []
    for i in range(n):
        host = f"hoster-{rng.randrange(20)}.example.test"
        urls.append(f"https://{host}/media/{i:05d}.jpg")
    # Real batches contain repeats and junk: show how intake treats them.
    urls += urls[: max(1, n // 10)]
    urls += ["javascript:alert(1)", "file:///etc/passwd", "http://user@evil.test@good.test/"]
    return urls


def run_demo(*, urls: int = 300, keep: str | None = None) -> dict[str, Any]:
    """Run the demo and print its summary; returns the figures shown."""
    console = Console()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="ntd-demo-") as tmp:
        folder = Path(keep) if keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "demo.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        src = folder / "reports.txt"
        src.write_text("\n".join(_demo_urls(urls, rng)) + "\n", encoding="utf-8")
        console.rule("[bold]ntd demo[/bold] — synthetic data, loopback only")
        rt = Runtime.open(db=str(db), overrides={"pipeline": {"poll_seconds": 0.05},
                                                 "lab": {"allow_private_networks": True}})
        try:
            result = submit_files(rt.store, [str(src)])
            console.print(f"submitted batch {result.batch}: [green]{result.accepted}[/green] new "
                          f"cases, {result.duplicates} duplicates, {len(result.rejected)} "
                          f"rejected")
            for rej in result.rejected:
                console.print(f"  rejected line {rej['line']}: {rej['reason']}")
            with Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True) as progress:
                task = progress.add_task("processing", total=result.accepted)

                def on_progress(summary: Any) -> None:
                    progress.update(task, completed=min(result.accepted,
                                                        max(summary.processed.values(),
                                                            default=0)))

                summary = asyncio.run(rt.run_pipeline(until_idle=True,
                                                      on_progress=on_progress))
            counts = rt.store.count_by_state()
            table = Table(title="cases by state")
            table.add_column("state")
            table.add_column("cases", justify="right")
            for state, n in counts.items():
                table.add_row(state, str(n))
            console.print(table)
            if summary.parked:
                console.print("parked, waiting for a plugin: " + ", ".join(
                    f"{stage} ({n})" for stage, n in summary.parked.items()))
            return {"accepted": result.accepted, "duplicates": result.duplicates,
                    "rejected": len(result.rejected), "by_state": counts}
        finally:
            rt.close()
