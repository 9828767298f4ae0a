"""``ntd demo``: an offline run of the whole chain on synthetic data, with a readable summary.

Everything is generated: host names under ``.test`` served by a loopback web server, a loopback
RDAP registry, an SMTP sink, images made of gradients, shapes and noise, and a hash list built from
some of them, and a loopback ICCAM (INHOPE's report exchange) over mutual TLS with certificates
made for the run. A partner hotline's report arrives from ICCAM; the demo submits a batch, runs
fetch → match → resolve → route → notice (forwards to Germany become our ICCAM reports), lets
simulated days pass (some hosters take material down), runs one re-check sweep, records every
step in ICCAM as an action, and prints what happened, ending with the anonymised statistics.
Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from engine.clock import Clock
from engine.iccam_v3 import ACTION_TYPES
from engine.intake import submit_files
from engine.lab.world import FullLab, bind_urls, build_world
from engine.runtime import Runtime


def run_demo(*, urls: int = 300, keep: str | None = None) -> dict[str, Any]:
    """Run the demo and print its summary; returns the figures shown.

    ``keep`` is where the demo's database stays afterwards: a file path (its folder is
    created), or an existing folder (then ``FOLDER/demo.db``). The demo's other files (hash
    list, report batch, certificates) live in a temporary folder either way."""
    with tempfile.TemporaryDirectory(prefix="ntd-demo-") as tmp:
        db = kept_database(keep) if keep else Path(tmp) / "demo.db"
        return asyncio.run(_demo(urls, Path(tmp), db))


def kept_database(keep: str) -> Path:
    """The database path ``--keep PATH`` means (see ``run_demo``)."""
    path = Path(keep)
    if path.is_dir():
        return path / "demo.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


async def _demo(urls: int, folder: Path, db: Path) -> dict[str, Any]:
    console = Console()
    console.rule("[bold]ntd demo[/bold] — synthetic data, loopback only")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    # Dense planting so every stage has work: a fifth of the URLs carry listed images.
    world = build_world(urls=urls, hosters=24, planted=20, image_pool=60)
    lab = await FullLab(world).start()
    iccam = await _start_iccam(folder)
    try:
        overrides = lab.config_overrides()
        overrides["pipeline"] = {"poll_seconds": 0.05}
        overrides["notices"]["mode"] = "send"
        overrides["stats"] = {"min_count": 3}
        overrides["lab"]["allow_private_networks"] = True
        # Forwards to the German hotline go through ICCAM (the directory's channel), not mail.
        overrides["routing.contacts"].pop("hotline:DE", None)
        overrides["iccam"] = iccam.config
        overrides["recheck"] = {"confirm_removal_hours": 0.0}
        clock = Clock(fixed=datetime.now(UTC))
        rt = Runtime.open(db=str(db), overrides=overrides, clock=clock)
        try:
            return await _run(console, rt, lab, folder, iccam)
        finally:
            rt.close()
    finally:
        await iccam.fake.close()
        await lab.close()


@dataclass
class _DemoICCAM:
    fake: Any
    config: dict[str, Any]


async def _start_iccam(folder: Path) -> _DemoICCAM:
    """The loopback ICCAM over mutual TLS, with certificates made for this run."""

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.iccam_fake import FakeICCAM, FakeUser

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.tls import make_lab_tls

    tls = make_lab_tls(folder / "iccam-tls")
    password = secrets.token_urlsafe(12)
    os.environ[_PASSWORD_ENV] = password  # secrets come from the environment, as in production
    fake = await FakeICCAM(tls.server_context(),
                           users={"ntd-demo": FakeUser(password, "NL", 43)}).start()
    config = {"base_url": fake.base_url, "client_cert": str(tls.client_cert),
              "client_key": str(tls.client_key), "ca_bundle": str(tls.ca_cert),
              "username": "ntd-demo", "password_env": _PASSWORD_ENV, "hotline_country": "NL",
              "hosting_recheck_hours": 0.0}
    return _DemoICCAM(fake=fake, config=config)


_PASSWORD_ENV = "NTD_DEMO_ICCAM_PASSWORD"


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


async def _run(console: Console, rt: Runtime, lab: FullLab, folder: Path,
               iccam: _DemoICCAM) -> dict[str, Any]:
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

    # 1b. A partner hotline's report reaches us through ICCAM: a page hosted in NL.
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from plugins.iccam.cli import run_sync

    partner_page, media = _partner_page(lab)
    report_id, contents = iccam.fake.add_partner_report(
        hotline_id=32, analyst="de-analyst",
        urls=[{"url": partner_page, "source": True, "classification": 2},
              {"url": media[0], "classification": 1},
              {"url": media[1], "classification": None}])
    imported = await run_sync(rt, do_import=True, do_export=False)
    partner_case = next(c["id"] for c in rt.store.list_cases())
    console.print(f"[bold]1b.[/bold] ICCAM (mutual TLS): report {report_id} of the German "
                  f"hotline, assigned to NL, imported as case {partner_case} "
                  f"({imported['imported']} imported, {len(contents)} content items, partner "
                  f"assessment carried over; our hotline reference set in ICCAM)")

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
    matched = {c["canonical_url"] for c in cases if c["id"] != partner_case
               and any(not m["negative"] for i in c["items"] for m in i["matches"])}
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
    exported = await run_sync(rt, do_import=False, do_export=True)
    console.print(f"ICCAM export: {exported['reports_created']} report(s) of ours for the "
                  f"German hotline (forwards); on the partner's content "
                  f"{exported['actions_sent']} assessment(s) and action(s) (our notice to the "
                  f"hoster, our police report)")

    # 4. Three days later: some hosters took the material down; one re-check sweep.
    noticed = [c for c in cases if c["state"] == "noticed"]
    taken_down = noticed[: len(noticed) // 2]
    taken_down += [c for c in noticed if c["id"] == partner_case and c not in taken_down]
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

    removed_sync = await run_sync(rt, do_import=False, do_export=True)
    received = Counter(ACTION_TYPES[t] for _, t in iccam.fake.received_actions())
    console.print(f"ICCAM after the re-check: {removed_sync['actions_sent']} more action(s); "
                  f"ICCAM holds {len(iccam.fake.reports)} reports, received actions "
                  f"{dict(sorted(received.items()))}")
    rows = [[s["action"] or s["step"], s["content_id"] or "-", s["state"]]
            for s in _iccam_steps(rt, partner_case)]
    console.print(_table(f"ICCAM steps of the partner's case {partner_case}",
                         ["step", "content", "state"], rows))

    # 5. The anonymised statistics a hotline publishes.
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.stats import compute_for_runtime, parse_period

    stats = compute_for_runtime(rt, parse_period(None, None)).summary
    console.print(_table("statistics (aggregates only)", ["metric", "value"], [
        ["reports", stats["reports"]], ["cases", stats["cases"]],
        ["confirmed", stats["confirmed"]], ["by channel", stats["by_channel"]],
        ["by hosting country", stats["by_country"]], ["notices sent", stats["notices_sent"]],
        ["removed", stats["removed"]],
        ["removed within (share of noticed cases)", stats["removed_within"]],
        ["INHOPE: removed within 3 days of receipt",
         stats["inhope"]["all"]["removed_within_3d"]],
        ["INHOPE: hours to ICCAM report (p50)",
         stats["inhope"]["all"]["hours_to_iccam_report"]["p50"]]]))
    console.print(f"[dim]database: {rt.store.url}[/dim]")
    return {"accepted": result.accepted, "duplicates": result.duplicates,
            "rejected": len(result.rejected), "by_state": rt.store.count_by_state(),
            "planted": len(planted), "found": len(planted & matched),
            "false_matches": len(matched - planted),
            "notices": sum(1 for n in notices if n["channel"] == "email"),
            "received": len(lab.sink.messages), "recheck": counts,
            "iccam": {"imported": imported["imported"],
                      "reports_created": exported["reports_created"],
                      "actions": dict(received),
                      "errors": exported["errors"] + removed_sync["errors"]}}


def _host_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.path


def _partner_page(lab: FullLab) -> tuple[str, list[str]]:
    """A gallery on a Dutch hoster of the lab, with one listed (planted) image and one other:
    the page a partner hotline reports to us through ICCAM."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.images import demo_image_bytes

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.lab.world import COUNTRIES

    world = lab.world
    host = next(h for n, h in enumerate(world.hosts) if COUNTRIES[n % len(COUNTRIES)] == "NL")
    server = world.server
    server.set_content(host, "/iccam/a.jpg", demo_image_bytes(world.planted_seeds[0]),
                       "image/jpeg")
    server.set_content(host, "/iccam/b.jpg", demo_image_bytes(10_000), "image/jpeg")
    server.set_content(host, "/iccam/gallery.html",
                       b'<html><body><img src="/iccam/a.jpg"><img src="/iccam/b.jpg">'
                       b"</body></html>", "text/html")
    base = f"http://{host}:{world.port}"
    return f"{base}/iccam/gallery.html", [f"{base}/iccam/a.jpg", f"{base}/iccam/b.jpg"]


def _iccam_steps(rt: Runtime, case_id: str) -> list[dict[str, Any]]:
    found = rt.store.iccam_case(case_id)
    content = {i["id"]: i["content_id"] for i in found["items"]}
    return [{**s, "content_id": content.get(s["item_id"])} for s in found["steps"]]
