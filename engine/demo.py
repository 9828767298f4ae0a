"""``ntd demo``: an offline run of the whole chain on synthetic data, with a readable summary.

Everything is generated: host names under ``.test`` served by a loopback web server, a loopback
RDAP registry, an SMTP sink, images made of gradients, shapes and noise, and a hash list built from
some of them. The demo submits a batch, runs fetch → match → resolve → route → notice, lets a
simulated day pass (some hosters take material down), runs one re-check sweep, and prints what
happened, ending with the anonymised statistics. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from engine.clock import Clock
from engine.intake import submit_files
from engine.lab.world import FullLab, bind_urls, build_world
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
    # Dense planting so every stage has work: a fifth of the URLs carry listed images.
    world = build_world(urls=urls, hosters=24, planted=20, image_pool=60)
    lab = await FullLab(world).start()
    try:
        overrides = lab.config_overrides()
        overrides["pipeline"] = {"poll_seconds": 0.05}
        overrides["notices"]["mode"] = "send"
        overrides["stats"] = {"min_count": 3}
        overrides["lab"]["allow_private_networks"] = True
        clock = Clock(fixed=datetime.now(UTC))
        rt = Runtime.open(db=str(db), overrides=overrides, clock=clock)
        try:
            return await _run(console, rt, lab, folder)
        finally:
            rt.close()
    finally:
        await lab.close()


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


async def _run(console: Console, rt: Runtime, lab: FullLab, folder: Path) -> dict[str, Any]:
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import build_demo_hashlist

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.media.hashlist_format import parse_hashlist

    world = lab.world
    # 1. A synthetic known-hash list (what a hotline receives from partners).
    list_file = folder / "demo-hashlist.csv"
    build_demo_hashlist(list_file, n=len(world.planted_seeds))
    entries = rt.store.import_hashlist(
        name="demo-baseline", source="ntd synthetic demo", trust="auto", negative=False,
        thresholds={}, now=rt.clock.now_text(),
        entries=((e.hash_type, e.hash, e.category, e.label, e.source)
                 for e in parse_hashlist(list_file)))
    console.print(f"[bold]1.[/bold] hash list demo-baseline: {entries} hashes of "
                  f"{len(world.planted_seeds)} generated images (trust=auto)")

    # 2. A batch of reports, with the repeats and junk real batches contain.
    lines = bind_urls(world)
    lines += lines[: max(1, len(lines) // 10)]
    lines += ["javascript:alert(1)", "file:///etc/passwd", "http://user@evil.test@good.test/"]
    src = folder / "reports.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = submit_files(rt.store, [str(src)], clock=rt.clock)
    console.print(f"[bold]2.[/bold] submitted batch {result.batch}: [green]{result.accepted}"
                  f"[/green] new cases, {result.duplicates} duplicates, "
                  f"{len(result.rejected)} rejected "
                  f"({'; '.join(r['reason'] for r in result.rejected)})")

    # 3. The pipeline until nothing is due: fetch, match, resolve, route, notice.
    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("[3] fetch · hash · match · resolve · route · notify",
                                 total=result.accepted)

        def on_progress(summary: Any) -> None:
            progress.update(task, completed=min(result.accepted,
                                                summary.processed.get("match", 0)))

        summary = await rt.run_pipeline(until_idle=True, on_progress=on_progress)
    console.print(f"[bold]3.[/bold] pipeline done in {summary.seconds:.1f}s — "
                  + ", ".join(f"{k} {v}" for k, v in sorted(summary.processed.items())))

    cases = rt.store.list_cases()
    port = str(world.port)
    planted = {u.url.replace("PORT", port) for u in world.urls if u.planted}
    matched = {c["canonical_url"] for c in cases
               if any(not m["negative"] for i in c["items"] for m in i["matches"])}
    console.print(_table("cases by state", ["state", "cases"],
                         [[k, v] for k, v in rt.store.count_by_state().items()]))
    console.print(f"matches: planted URLs found [bold]{len(planted & matched)}[/bold] of "
                  f"{len(planted)}; false matches: {len(matched - planted)}")

    routes: Counter[tuple[str, str, str, str]] = Counter()
    for c in cases:
        country = (c.get("resolution") or {}).get("country") or "?"
        for r in c.get("routes") or []:
            routes[(country, r["action"], r["recipient_kind"], r["decided_by"])] += 1
    console.print(_table("routes (why each recipient was chosen)",
                         ["hosting country", "action", "recipient", "decided by", "cases"],
                         [[*k, n] for k, n in sorted(routes.items())]))
    notices = rt.store.list_notices()
    by_recipient = Counter((n["recipient"], n["state"]) for n in notices)
    console.print(_table("notices (SMTP sink on loopback)", ["recipient", "state", "notices"],
                         [[r, s, n] for (r, s), n in sorted(by_recipient.items())[:12]]))
    console.print(f"SMTP sink received {len(lab.sink.messages)} messages, "
                  f"{len({m.message_id for m in lab.sink.messages})} distinct Message-IDs")

    # 4. Three days later: some hosters took the material down; one re-check sweep.
    noticed = [c for c in cases if c["state"] == "noticed"]
    taken_down = noticed[: len(noticed) // 2]
    for c in taken_down:
        for item in c["items"]:
            host, path = _host_path(item["url"])
            world.server.remove(host, path)
    rt.clock.advance(73 * 3600)  # past every route's deadline (24 h NL, 72 h forwards)
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.recheck.cli import run_sweep

    counts, _ = await run_sweep(rt, limit=None, workers=None, on_progress=None,
                                install_signal_handlers=False)
    console.print(f"[bold]4.[/bold] three days later, {len(taken_down)} hosters removed the "
                  f"material; re-check sweep: {counts}")
    monitor = [c.get("monitoring") or {} for c in rt.store.list_cases()]
    hours = sorted(m["seconds_to_removal_from_report"] / 3600 for m in monitor
                   if m.get("seconds_to_removal_from_report"))
    if hours:
        console.print(f"time to removal from report: median {hours[len(hours) // 2]:.1f} h")

    # 5. The anonymised statistics a hotline publishes.
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.stats import compute_for_runtime, parse_period

    stats = compute_for_runtime(rt, parse_period(None, None)).summary
    console.print(_table("statistics (aggregates only)", ["metric", "value"], [
        ["reports", stats["reports"]], ["cases", stats["cases"]],
        ["confirmed", stats["confirmed"]], ["by channel", stats["by_channel"]],
        ["by hosting country", stats["by_country"]], ["notices sent", stats["notices_sent"]],
        ["removed", stats["removed"]], ["removed within", stats["removed_within"]]]))
    console.print(f"[dim]database: {rt.store.url}[/dim]")
    return {"accepted": result.accepted, "duplicates": result.duplicates,
            "rejected": len(result.rejected), "by_state": rt.store.count_by_state(),
            "planted": len(planted), "found": len(planted & matched),
            "false_matches": len(matched - planted), "notices": len(notices),
            "received": len(lab.sink.messages), "recheck": counts}


def _host_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.path
