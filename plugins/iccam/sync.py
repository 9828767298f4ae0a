"""One ICCAM sync: import what other hotlines assigned to us, then export our steps.

``ntd iccam sync`` runs one; ``ntd run --daemon`` runs one every ``[iccam] poll_minutes`` (and
an export soon after the ``iccam`` channel queued a report). The result is the command's JSON:
``imported`` (reports that opened a case), ``linked`` (reports linked to an open case of the same
URL), ``reports_created`` (our reports ICCAM accepted), ``actions_sent`` (assessments, actions,
hosting updates and country re-assignments ICCAM accepted), ``retrying`` (reports and steps that
met a transient failure: tried again later) and ``errors`` (permanent failures of this sync,
with ICCAM's text; ``ntd iccam errors`` lists all that are still open).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plugins.iccam.client import ICCAMClient, ICCAMError, ICCAMUnavailable, client_config
from plugins.iccam.exporter import DeliveryResult, Exporter
from plugins.iccam.importer import Importer
from plugins.iccam.settings import IccamSettings

SYNC_KEYS = ("imported", "linked", "reports_created", "actions_sent", "retrying", "errors")


@dataclass
class SyncResult:
    """The figures of one sync (``to_dict`` is ``ntd iccam sync --json``)."""

    imported: int = 0
    linked: int = 0
    reports_created: int = 0
    actions_sent: int = 0
    retrying: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the contract's keys."""
        return {key: getattr(self, key) for key in SYNC_KEYS}


class ICCAMSync:
    """Import and export over one ICCAM session (a client is made if none is given)."""

    def __init__(self, ctx: Any, settings: IccamSettings,
                 client: ICCAMClient | None = None) -> None:
        self.ctx = ctx
        self.settings = settings
        self.client = client or ICCAMClient(client_config(settings))
        self.importer = Importer(ctx, self.client, settings)
        self.exporter = Exporter(ctx, self.client, settings)

    async def aclose(self) -> None:
        """End the session."""
        await self.client.aclose()

    async def run(self, *, do_import: bool = True, do_export: bool = True) -> SyncResult:
        """One sync; problems with ICCAM itself (a refused login) are errors of the result."""
        result = SyncResult()
        store = self.ctx.store
        now = self.ctx.clock.now_text()
        try:
            await self.client.ensure_login()
        except ICCAMUnavailable as exc:
            result.retrying += 1
            result.errors.append({"kind": "session", "error": str(exc)})
            return result
        except ICCAMError as exc:
            text = f"login refused: http {exc.status}: {exc.text}"
            await store.iccam_import_error(None, None, text, now)
            result.errors.append({"kind": "session", "error": text})
            return result
        await store.iccam_clear_import_errors(None)
        if do_import:
            refs = DeliveryResult()

            async def references() -> None:
                refs.add(await self.exporter.deliver(steps=("reference",)))

            found = await self.importer.import_round(after_page=references)
            result.imported, result.linked = found.imported, found.linked
            result.retrying += found.retrying + refs.retrying
            result.errors += [{"kind": "import", **e} for e in found.errors]
            result.errors += [{"kind": "export", **e} for e in refs.errors]
        if do_export:
            sent = await self.export()
            result.reports_created += sent.reports_created
            result.actions_sent += sent.actions_sent
            result.retrying += sent.retrying
            result.errors += [{"kind": "export", **e} for e in sent.errors]
        return result

    async def export(self, *, rounds: int = 20) -> DeliveryResult:
        """Plan and deliver until nothing new is planned or sendable."""
        total = DeliveryResult()
        for _ in range(rounds):
            planned = await self.exporter.plan()
            sent = await self.exporter.deliver()
            total.add(sent)
            if not planned and not sent.tried:
                break
        return total
