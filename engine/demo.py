"""``ntd demo``: an offline run of the whole chain on synthetic data, with a readable summary.

Everything is generated: host names under ``.test`` served by a loopback web server, images made of
gradients, shapes and noise, a hash list built from some of them. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from engine.intake import submit_files
from engine.lab.world import bind_urls, build_world
from engine.runtime import Runtime


def run_demo(*, urls: int = 300, keep: str | None = None) -> dict[str, Any]:
    """Run the demo and print its summary; returns the figures shown."""
    with tempfile.TemporaryDirectory(prefix="ntd-demo-") as tmp:
        folder = Path(keep) if keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(urls, folder))


async def _demo(urls: int, folder: Path) -> dict[str, Any]:
    console = Console()
    console.rule("[bold]ntd demo[/bold] — synthetic data, loopback only")
    db = folder / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    world = build_world(urls=urls, hosters=20, planted=20)
    await world.server.start()
    try:
        overrides = world.config_overrides()
        overrides["pipeline"] = {"poll_seconds": 0.05}
        rt = Runtime.open(db=str(db), overrides=overrides)
        try:
            return await _run(console, rt, world, folder)
        finally:
            rt.close()
    finally:
        await world.server.close()


async def _run(console: Console, rt: Runtime, world: Any, folder: Path) -> dict[str, Any]:
    from engine.lab.images import build_demo_hashlist

    # 1. A synthetic known-hash list (what a hotline receives from INHOPE/ICCAM partners).
    list_file = folder / "demo-hashlist.csv"
    build_demo_hashlist(list_file, n=len(world.planted_seeds))
    from plugins.hashlist_format import parse_hashlist

    entries = rt.store.import_hashlist(
        name="demo-baseline", source="ntd synthetic demo", trust="auto", negative=False,
        thresholds={}, now=rt.clock.now_text(),
        entries=((e.hash_type, e.hash, e.category, e.label, e.source)
                 for e in parse_hashlist(list_file)))
    console.print(f"hash list [bold]demo-baseline[/bold]: {entries} hashes of "
                  f"{len(world.planted_seeds)} generated images (trust=auto)")

    # 2. A batch of reports, with the repeats and junk real batches contain.
    lines = bind_urls(world)
    lines += lines[: max(1, len(lines) // 10)]
    lines += ["javascript:alert(1)", "file:///etc/passwd", "http://user@evil.test@good.test/"]
    src = folder / "reports.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = submit_files(rt.store, [str(src)], clock=rt.clock)
    console.print(f"submitted batch {result.batch}: [green]{result.accepted}[/green] new cases, "
                  f"{result.duplicates} duplicates, {len(result.rejected)} rejected")
    for rej in result.rejected:
        console.print(f"  [dim]rejected line {rej['line']}: {rej['reason']}[/dim]")

    # 3. The pipeline, until nothing is due.
    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("fetch · hash · match", total=result.accepted)

        def on_progress(summary: Any) -> None:
            progress.update(task, completed=min(result.accepted,
                                                summary.processed.get("match", 0)))

        summary = await rt.run_pipeline(until_idle=True, on_progress=on_progress)

    # 4. What happened.
    counts = rt.store.count_by_state()
    table = Table(title="cases by state")
    table.add_column("state")
    table.add_column("cases", justify="right")
    for state, n in counts.items():
        table.add_row(state, str(n))
    console.print(table)

    cases = rt.store.list_cases()
    planted_urls = {u.url.replace("PORT", str(world.server.port))
                    for u in world.urls if u.planted}
    found = {c["canonical_url"] for c in cases if c["state"] == "confirmed"
             or c.get("match")}
    matches: Counter[tuple[str, str]] = Counter()
    for c in cases:
        for item in c["items"]:
            for m in item["matches"]:
                matches[(m["list"], m["hash_type"])] += 1
    mt = Table(title="hash matches")
    for col in ("list", "hash type", "items"):
        mt.add_column(col)
    for (name, kind), n in sorted(matches.items()):
        mt.add_row(name, kind, str(n))
    console.print(mt)
    console.print(f"planted URLs found: [bold]{len(planted_urls & found)}[/bold] of "
                  f"{len(planted_urls)}; false matches: {len(found - planted_urls)}")
    example = next((c for c in cases if c["state"] == "confirmed"), None)
    if example:
        trail = rt.store.get_case(example["id"])["events"]
        tt = Table(title=f"trail of {example['id']} ({example['canonical_url']})")
        for col in ("at", "stage", "actor", "action"):
            tt.add_column(col)
        for e in trail:
            tt.add_row(e["at"][11:23], e["stage"], e["actor"], e["action"])
        console.print(tt)
    if summary.parked:
        console.print("[yellow]waiting for plugins:[/yellow] " + ", ".join(
            f"{stage} stage ({n} cases)" for stage, n in summary.parked.items()))
    console.print(f"done in {summary.seconds:.1f}s — "
                  + ", ".join(f"{k} {v}" for k, v in sorted(summary.processed.items())))
    return {"accepted": result.accepted, "duplicates": result.duplicates,
            "rejected": len(result.rejected), "by_state": counts,
            "planted": len(planted_urls), "found": len(planted_urls & found),
            "false_matches": len(found - planted_urls)}
