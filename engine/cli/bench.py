"""``ntd bench …``: every benchmark's command (the code is in ``engine/bench/``, a module each).

Speed targets live here, not in tests. Each command imports its benchmark when it runs, so
``ntd --help`` stays fast and a benchmark's heavy dependencies load only for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from engine.cli.common import JSON_OPT, Obj, emit_json
from engine.cli.root import cli
from engine.errors import InputError, NtdError


def _print_nested(value: Any, indent: int = 0) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            if isinstance(sub, dict):
                click.echo(" " * indent + f"{key}:")
                _print_nested(sub, indent + 2)
            else:
                click.echo(" " * indent + f"{key}: {sub}")
    else:
        click.echo(" " * indent + str(value))


def _print_flat(result: dict[str, Any]) -> None:
    for key, value in result.items():
        click.echo(f"{key}: {value}")


@cli.group()
def bench() -> None:
    """Benchmarks (speed targets live here, not in tests)."""


@bench.command("intake")
@click.option("--urls", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--source", type=click.Choice(["file", "mail", "telegram"]), default="file",
              show_default=True,
              help="file: `ntd submit`; mail: mails/s through the mailbox source (a local "
                   "Dovecot); telegram: updates/s through the bot (the Bot API fake).")
@click.option("--messages", type=click.IntRange(min=1), default=None,
              help="Mails or updates for --source mail|telegram (default 200 / 1000).")
@JSON_OPT
def bench_intake(urls: int, source: str, messages: int | None, as_json: bool) -> None:
    """Time intake: `submit` of N generated URLs (URLs/s, peak memory), or an intake source."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench import intake as intake_bench

    if source == "mail":
        try:
            result = intake_bench.bench_mail_source(messages or 200)
        except RuntimeError as exc:  # Dovecot missing or failed: say so, exit 1
            raise NtdError(str(exc)) from exc
    elif source == "telegram":
        result = intake_bench.bench_telegram_source(messages or 1000)
    else:
        result = intake_bench.bench_intake(urls)
    emit_json(result) if as_json else _print_flat(result)


@bench.command("e2e")
@click.option("--urls", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=50.0, show_default=True)
@click.option("--image-share", type=click.FloatRange(0, 1), default=0.7, show_default=True)
@click.option("--hosters", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Workers per stage (default: [pipeline] workers).")
@click.option("--processes", type=click.IntRange(min=0), default=0,
              help="Run N `ntd run` worker processes on the shared database (0: in-process).")
@click.option("--kill-one", is_flag=True,
              help="With --processes: SIGKILL one worker a third of the way, then restart it.")
@click.option("--hostile-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of URLs replaced by hostile pages and images (tag soup, giant "
                   "attribute URLs, huge-dimension small PNGs).")
@click.option("--distinct-share", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Share of image URLs serving a file no other URL serves (realistic images: "
                   "JPEG 640-1600 px, some PNG/WebP).")
@JSON_OPT
@click.pass_obj
def bench_e2e_cmd(obj: Obj, urls: int, latency_ms: float, image_share: float, hosters: int,
                  workers: int | None, processes: int, kill_one: bool, hostile_share: float,
                  distinct_share: float, as_json: bool) -> None:
    """The whole chain on a loopback world: URLs/s, stage latency, RSS, loop stalls, correctness."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.e2e import bench_e2e

    result = bench_e2e(urls=urls, latency_ms=latency_ms, image_share=image_share,
                       hosters=hosters, workers=workers, db=obj.db, processes=processes,
                       kill_one=kill_one, hostile_share=hostile_share,
                       distinct_share=distinct_share)
    emit_json(result) if as_json else _print_flat(result)


@bench.command("api")
@click.option("--requests", "count", type=click.IntRange(min=10, max=1_000_000), default=2000,
              show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1, max=512), default=16,
              show_default=True)
@JSON_OPT
def bench_api_cmd(count: int, concurrency: int, as_json: bool) -> None:
    """Requests/s of POST /api/reports against a loopback uvicorn (fresh temporary database)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.web import bench_api

    result = bench_api(requests=count, concurrency=concurrency)
    emit_json(result) if as_json else _print_flat(result)


# -- stage benchmarks: each drives a built-in stage's code (imported when the command runs) --
@bench.command("match")
@click.option("--entries", type=click.IntRange(min=1000), default=1_000_000, show_default=True)
@click.option("--queries", type=click.IntRange(min=10), default=1000, show_default=True)
@JSON_OPT
def bench_match(entries: int, queries: int, as_json: bool) -> None:
    """Index build time, query latency and memory for pHash and PDQ lists."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.matching import bench_match as run

    result = run(entries, queries=queries)
    emit_json(result) if as_json else _print_nested(result)


@bench.command("hash")
@click.option("--images", type=click.IntRange(min=10), default=200, show_default=True)
@click.option("--video", is_flag=True,
              help="Videos instead: seconds of video hashed (vPDQ) per second per core, peak "
                   "RSS, and the refusal of hostile videos.")
@click.option("--videos", type=click.IntRange(min=1), default=3, show_default=True,
              help="With --video: videos per size.")
@JSON_OPT
def bench_hash(images: int, video: bool, videos: int, as_json: bool) -> None:
    """Images/s hashing 1024×768 JPEGs (pHash + crypto; PDQ separately); --video: videos."""
    if video:
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.bench.video import bench_video

        result = bench_video(videos)
        emit_json(result) if as_json else _print_nested(result)
        return
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.matching import bench_hash as run

    result = run(images)
    emit_json(result) if as_json else _print_nested(result)


@bench.command("robustness")
@click.option("--images", type=click.IntRange(min=10), default=200, show_default=True)
@click.option("--unrelated", type=click.IntRange(min=10), default=10_000, show_default=True)
@JSON_OPT
def bench_robustness(images: int, unrelated: int, as_json: bool) -> None:
    """Recall of pHash/PDQ under transforms, and false matches among unrelated images."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.matching import robustness

    result = robustness(images, unrelated=unrelated)
    emit_json(result) if as_json else _print_nested(result)


@bench.command("resolve")
@click.option("--urls", type=click.IntRange(min=10), default=10_000, show_default=True)
@click.option("--hosters", type=click.IntRange(min=1), default=100, show_default=True)
@JSON_OPT
def bench_resolve(urls: int, hosters: int, as_json: bool) -> None:
    """Cases/s of the resolve stage over URLS cases on HOSTERS hosters (lab RDAP)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.resolve import bench_pipeline

    if hosters > urls:
        raise InputError("--hosters must not exceed --urls")
    result = asyncio.run(bench_pipeline(urls, hosters))
    emit_json(result) if as_json else _print_flat(result)


@bench.command("route")
@click.option("--cases", type=click.IntRange(min=100), default=100_000, show_default=True)
@JSON_OPT
def bench_route(cases: int, as_json: bool) -> None:
    """Routed cases/s: default policy + a partner plugin's proposals + merge."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.route import bench_route as run

    result = run(cases)
    emit_json(result) if as_json else _print_flat(result)


@bench.command("notify")
@click.option("--notices", "count", type=click.IntRange(min=1), default=10_000,
              show_default=True)
@click.option("--connections", type=click.IntRange(min=1), default=4, show_default=True)
@JSON_OPT
def bench_notify(count: int, connections: int, as_json: bool) -> None:
    """Deliver N notices to a loopback SMTP sink: notices/s, render share."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.notices import bench_notify as run

    result = run(count, connections=connections)
    emit_json(result) if as_json else _print_flat(result)


@bench.command("recheck")
@click.option("--cases", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--re-resolve/--no-re-resolve", default=True, show_default=True,
              help="Resolve the host again at each online check (moved hosts re-routed).")
@JSON_OPT
def bench_recheck(cases: int, workers: int, re_resolve: bool, as_json: bool) -> None:
    """Re-checks/s for N due cases against a loopback web server."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.recheck import bench_recheck as run

    result = run(cases, workers=workers, re_resolve=re_resolve)
    emit_json(result) if as_json else _print_flat(result)


@bench.command("browser")
@click.option("--pages", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--pool", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Browsers rendering at once ([fetch.browser] pool).")
@JSON_OPT
def bench_browser_cmd(pages: int, pool: int, as_json: bool) -> None:
    """Pages/s and peak memory for N script-built pages through the fetch stage's browser."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.browser import bench_browser

    result = bench_browser(pages, pool=pool)
    emit_json(result) if as_json else _print_nested(result)


@bench.command("iccam")
@click.option("--reports", type=click.IntRange(min=1), default=500, show_default=True,
              help="Partner reports to import, and as many of our cases to export.")
@JSON_OPT
def bench_iccam(reports: int, as_json: bool) -> None:
    """Imports and exports per second against the loopback ICCAM fake (mutual TLS)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench.iccam import bench_iccam as run

    result = run(reports)
    emit_json(result) if as_json else _print_flat(result)


@bench.command("workbench")
@click.option("--requests", type=click.IntRange(min=10), default=200, show_default=True,
              help="Preview requests timed (each a live fetch, decode, blur, encode).")
@click.option("--cases", type=click.IntRange(min=100), default=10_000, show_default=True,
              help="Waiting cases behind the queue page.")
@click.option("--demo-urls", type=click.IntRange(min=50), default=300, show_default=True,
              help="Size of the `ntd demo` run whose queue is cleared for the exposure figure.")
@click.option("--only", type=click.Choice(["preview", "queue", "exposure"]), default=None,
              help="Run one part only.")
@JSON_OPT
def bench_workbench(requests: int, cases: int, demo_urls: int, only: str | None,
                    as_json: bool) -> None:
    """The workbench: preview latency (target p50 ≤ 60 ms), queue page time with many waiting
    cases (target ≤ 50 ms), and exposure (images looked at to clear `ntd demo`'s queue)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.bench import workbench as wb

    result: dict[str, Any] = {}
    if only in (None, "preview"):
        result["preview"] = wb.bench_preview(requests)
    if only in (None, "queue"):
        result["queue"] = wb.bench_queue(cases)
    if only in (None, "exposure"):
        result["exposure"] = wb.bench_exposure(demo_urls)
    emit_json(result) if as_json else _print_nested(result)
