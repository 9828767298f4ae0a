"""The worked example of ``docs/writing-plugins.md`` (``ntd_intake_sources``), as a fixture."""

from __future__ import annotations

import json
from pathlib import Path

from engine.api import IncomingReport, IntakeDesk, IntakeSource, Option, PollingSource, hookimpl


class DropFolder(PollingSource):
    name = "dropfolder"

    def __init__(self, folder: str, interval: float) -> None:
        self.folder = Path(folder)
        self.interval = interval
        self.results: list[dict[str, object]] = []

    async def poll(self, desk: IntakeDesk) -> int:
        handled = 0
        for path in sorted(self.folder.glob("*.json")):
            message = json.loads(path.read_text())
            reports = [IncomingReport(url=url, line=i, where=path.name)
                       for i, url in enumerate(message["urls"], start=1)]
            result = await desk.hand_in(reports, channel="partner", reference=path.name,
                                        reporter={"email": message["contact"]}, app="mail")
            self.results.append(result.to_dict())
            await desk.receipt_given(path.name)
            path.unlink()
            handled += 1
        return handled


@hookimpl
def ntd_config_schema():  # type: ignore[no-untyped-def]
    return {"xx.dropfolder": {"folder": Option(type=str, default=""),
                              "interval": Option(type=float, default=60.0)}}


SOURCES: list[DropFolder] = []


@hookimpl
def ntd_intake_sources(ctx) -> list[IntakeSource] | None:  # type: ignore[no-untyped-def]
    settings = ctx.config.section("xx.dropfolder")
    if not settings["folder"]:
        return None
    source = DropFolder(settings["folder"], settings["interval"])
    SOURCES.append(source)
    return [source]
