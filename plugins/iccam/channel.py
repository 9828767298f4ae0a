"""The ``iccam`` notice channel: a forward to an INHOPE partner becomes our ICCAM report.

Routing forwards a case hosted in another member country to that country's hotline with channel
``iccam`` (target ``iccam:XX``: ICCAM assigns by country). The notice sender hands such notices
to this channel, which queues one ``report`` step per case in the ICCAM outbox (keyed by case,
so a resent notice queues nothing twice) and wakes the ICCAM service; the exporter then sends
``POST rest/reports`` (``plugins/iccam/exporter.py``). The notice's receipt says so.
"""

from __future__ import annotations

from typing import Any

from engine.delivery import DeliveryOutcome


class ICCAMChannel:
    """Queues our ICCAM report for every case of a notice."""

    name = "iccam"

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    async def send(self, prepared: Any) -> DeliveryOutcome:
        """Queue the report step of each case the notice carries (idempotent per case)."""
        notice = prepared.notice
        now = self.ctx.clock.now_text()
        cases = sorted({a["case_id"] for a in notice.get("actions") or [] if a.get("case_id")})
        if not cases:
            return DeliveryOutcome(status="failed", detail="no case to report to ICCAM")
        queued = 0
        for case_id in cases:
            queued += bool(await self.ctx.store.iccam_queue_report(
                case_id, now, {"target": notice.get("recipient"),
                               "country": notice.get("country")}))
        wake = (self.ctx.state.get("iccam") or {}).get("wake")
        if wake is not None:
            wake.set()
        return DeliveryOutcome(status="sent", detail=(
            f"queued in the ICCAM outbox: {len(cases)} report(s), {queued} new "
            "(`ntd iccam status CASE`)"))

    async def aclose(self) -> None:
        """Nothing to close (the exporter owns the ICCAM session)."""
