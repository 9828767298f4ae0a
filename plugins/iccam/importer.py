"""Import: reports other hotlines assigned to our country arrive as cases.

One round (``import_round``):

1. ``GET rest/Content/no-reference`` — content assigned to our country without a hotline
   reference, assigned at or after the window's start (the ``iccam_import_since`` cursor; the
   first window reaches ``[iccam] lookback_hours`` back), at most 200 per page;
2. per listed report, ``GET rest/Reports/{id}`` and ``GET rest/Content/{id}`` of each listed
   item, and of the report's other items until the source URL (the page) is found;
3. the store opens the case (channel ``iccam``, reference ``iccam:<reportId>#<contentId>``,
   the partner's hotline, analyst and received date as report metadata, the page and media as
   items, the partner's last assessment in the case's ``iccam`` field) — or links the report to
   the open case of the same URL, or, for a reference already imported, does nothing;
4. a ``reference`` step per new item puts our hotline reference on it in ICCAM, which takes it
   off the list. The steps go out between pages (``after_page``), so the next page lists new
   items.

The window moves on (to now minus ``overlap_minutes``) only after a round in which every
listed report was handled; a report ICCAM could not serve just now keeps the window where it
is. A report that cannot be imported (no source URL, a URL ntd refuses) is recorded as an
import problem (``ntd iccam errors``) and skipped from then on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from engine import clock
from engine import iccam_v3 as v3
from engine.errors import InputError
from engine.urls import canonicalize
from plugins.iccam.client import ICCAMClient, ICCAMError, ICCAMUnavailable
from plugins.iccam.mapping import category_of, last_assessment
from plugins.iccam.settings import IccamSettings


@dataclass
class ImportResult:
    """What one import round did."""

    imported: int = 0  # reports that opened a new case
    linked: int = 0  # reports linked to an open case of the same URL
    known: int = 0  # reports imported before (listed again)
    retrying: int = 0  # reports ICCAM could not serve now (tried again next round)
    errors: list[dict[str, Any]] = field(default_factory=list)


def _strongest(assessments: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most serious of several partner assessments (Baseline > National > Ignore)."""
    order = {v3.BASELINE: 0, v3.NATIONAL: 1, v3.IGNORE: 2}
    found = [a for a in assessments if a.get("classification") in order]
    return min(found, key=lambda a: order[a["classification"]]) if found else None


async def _contents(client: ICCAMClient, report: dict[str, Any],
                    listed: list[int]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The report's source item and its listed items (read from ICCAM)."""
    read = await asyncio.gather(*(client.content(cid) for cid in listed))
    items = dict(zip(listed, read, strict=True))
    source = next((c for c in items.values() if (c.get("url") or {}).get("isSourceUrl")), None)
    if source is None:
        for entry in report.get("reportContents") or []:
            cid = entry.get("contentId") if isinstance(entry, dict) else None
            if not isinstance(cid, int) or cid in items:
                continue
            candidate = await client.content(cid)
            if (candidate.get("url") or {}).get("isSourceUrl"):
                source = candidate
                break
    media = [c for c in items.values() if c is not source]
    return source, media


def _content_row(content: dict[str, Any], *, is_source: bool) -> dict[str, Any]:
    url = content.get("url") or {}
    last = last_assessment(content)
    return {"content_id": int(content["contentId"]), "url": str(url.get("urlString") or ""),
            "is_source": is_source, "assigned_country": content.get("assignedCountryCode"),
            "hosting_country": url.get("hostingCountryCode"),
            "hosting_ip": url.get("hostingIpAddress"),
            "partner": {"assessment": last,
                        "actions": [a.get("actionType") for a in content.get("actions") or []
                                    if isinstance(a, dict)],
                        "assigned_at": content.get("countryAssignmentDate")}}


def build_import(report_id: int, report: dict[str, Any], source: dict[str, Any],
                 media: list[dict[str, Any]]) -> dict[str, Any]:
    """What the store needs to open or link the case of one report (``Store.iccam_import``).

    Raises ``InputError`` when ntd refuses the source URL (the intake rules)."""
    url = str((source.get("url") or {}).get("urlString") or "")
    canonical = canonicalize(url)
    rows = [_content_row(source, is_source=True)]
    rows += [_content_row(m, is_source=False) for m in media
             if (m.get("url") or {}).get("urlString")]
    partner = _strongest([r["partner"]["assessment"] for r in rows
                          if r["partner"]["assessment"]])
    iccam_ref = f"iccam:{report_id}#{int(source['contentId'])}"
    summary = {"report_id": report_id, "reference": iccam_ref,
               "partner_hotline": report.get("reportingHotlineId"),
               "partner_analyst": report.get("reportingAnalystName"),
               "received": report.get("hotlineReceivedDate"),
               "assigned_at": source.get("countryAssignmentDate"),
               "site_type": report.get("sourceUrlSiteType")}
    case_data: dict[str, Any] = {"reports": [summary]}
    if partner is not None:
        case_data["partner_assessment"] = {**partner,
                                           "category": category_of(partner["classification"])}
        case_data["partner_baseline"] = partner["classification"] == v3.BASELINE
    metadata = {"reference": iccam_ref, "iccam_report": report_id,
                "partner_hotline": report.get("reportingHotlineId"),
                "partner_analyst": report.get("reportingAnalystName"),
                "partner_received": report.get("hotlineReceivedDate"),
                "assigned_at": source.get("countryAssignmentDate")}
    return {"report_id": report_id, "metadata": metadata,
            "case_data": case_data, "contents": rows,
            "source": {"url": url, "canonical_url": canonical.url, "host": canonical.host,
                       "domain": canonical.domain}}


class Importer:
    """Import rounds for one run (one batch of reports per round)."""

    def __init__(self, ctx: Any, client: ICCAMClient, settings: IccamSettings) -> None:
        self.ctx = ctx
        self.client = client
        self.settings = settings

    async def import_round(self, after_page: Callable[[], Awaitable[Any]] | None = None
                           ) -> ImportResult:
        """List, read and open; see the module docstring."""
        store = self.ctx.store
        result = ImportResult()
        now = self.ctx.clock.now()
        cursor = await store.iccam_cursor()
        since = clock.parse(cursor) if cursor else \
            now - timedelta(hours=self.settings.lookback_hours)
        batch: str | None = None
        seen: set[int] = set()
        clean = True
        try:
            for _ in range(self.settings.max_pages):
                listing = await self.client.no_reference(since=since)
                reports: dict[int, list[int]] = {}
                for entry in listing:
                    rid, cid = entry.get("reportId"), entry.get("contentId")
                    if isinstance(rid, int) and isinstance(cid, int):
                        reports.setdefault(rid, []).append(cid)
                fresh = [rid for rid in reports if rid not in seen]
                seen.update(fresh)
                if fresh and batch is None:
                    batch = await store.create_batch(channel="iccam",
                                                     source="iccam:no-reference",
                                                     at=self.ctx.clock.now_text())
                if fresh:
                    assert batch is not None
                    gate = asyncio.Semaphore(self.settings.concurrency)
                    clean &= all(await asyncio.gather(*(
                        self._gated(gate, rid, reports[rid], batch, result) for rid in fresh)))
                if after_page is not None:
                    await after_page()
                if len(listing) < v3.MAX_RESULTS or not fresh:
                    break
        except ICCAMUnavailable as exc:
            clean = False
            result.retrying += 1
            self.ctx.log.warning("iccam import: %s", exc)
        finally:
            if batch is not None:
                await store.finish_batch(batch, accepted=result.imported,
                                         duplicates=result.linked,
                                         rejected=len(result.errors))
        if clean:
            nxt = now - timedelta(minutes=self.settings.overlap_minutes)
            await store.iccam_set_cursor(clock.fmt(max(nxt, since)))
        return result

    async def _gated(self, gate: asyncio.Semaphore, report_id: int, listed: list[int],
                     batch: str, result: ImportResult) -> bool:
        async with gate:
            return await self._one(report_id, listed, batch, result)

    async def _one(self, report_id: int, listed: list[int], batch: str,
                   result: ImportResult) -> bool:
        """Import one report; False when ICCAM could not serve it now."""
        store = self.ctx.store
        now = self.ctx.clock.now_text()
        try:
            report = await self.client.report(report_id)
            source, media = await _contents(self.client, report, listed)
            if source is None:
                raise InputError("the report has no source URL (isSourceUrl)")
            payload = build_import(report_id, report, source, media)
        except ICCAMUnavailable as exc:
            result.retrying += 1
            self.ctx.log.warning("iccam import of report %s: %s", report_id, exc)
            return False
        except (ICCAMError, InputError) as exc:
            error = f"report {report_id}: {exc}"
            for cid in listed:
                await store.iccam_import_error(report_id, cid, error, now)
            result.errors.append({"report_id": report_id, "content_ids": listed,
                                  "error": str(exc)})
            return True
        outcome = await store.iccam_import(batch, payload, now)
        await store.iccam_clear_import_errors(report_id)
        if outcome["outcome"] == "imported":
            result.imported += 1
        elif outcome["outcome"] == "linked":
            result.linked += 1
        else:
            result.known += 1
        return True
