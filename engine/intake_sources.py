"""Intake sources: long-running plugins that bring reports in (a mailbox, a chat bot, ...).

A plugin returns sources from ``ntd_intake_sources(ctx)``; ``ntd run`` drives them beside the
stages, ``ntd intake run NAME`` drives one alone. A source hands every message it receives to
the engine with **one call**, :meth:`IntakeDesk.hand_in`::

    result = await desk.hand_in(
        [IncomingReport(url="http://example.test/a"), IncomingReport(media=jpeg_bytes,
                                                                     content_type="image/jpeg")],
        channel="chat", reference=f"update:{update_id}",
        reporter={"telegram_id": "42", "username": "someone"}, app="telegram")
    result.batch, result.accepted, result.rejected      # for the source's receipt

- URLs are canonicalised like ``ntd submit``; a bad one is a rejected entry with its ``line``
  and ``reason`` (the source numbers its reports; ``where`` says which part of the message).
- Media bytes are hashed in memory (the CPU pool, as the fetch stage does) and dropped; the case
  of a media report (URL ``media:sha256:<hex>``) starts ``fetched`` with one item holding the
  hashes, so the match stage confirms it when it is on a trusted list. Nothing of the bytes is
  stored.
- ``reporter``: the reporter's identifying fields (strings). They are sealed per report
  (``engine.privacy``: AES-GCM, a data key per record, keyed MACs of ``username``/``email`` and
  ``phone`` for data-subject requests), registered with the log redactor, and kept apart from
  case data; ``app`` names where they came from (``telegram``, ``mail``, ...).
- ``reference``: what makes the message unique at the source (a Message-ID, an update id).
  The batch, its reports, their sealed reporter records and the (hashed) reference are one
  transaction: handing the same reference in again — after a crash — stores nothing and
  answers the first batch with ``known = True``.
- :meth:`IntakeDesk.receipt_given` records that the source answered the reporter (a mail
  receipt) and purges the reporter records of that batch at once. Sources that answer only
  once the case is processed implement ``ntd_send_feedback`` instead; the engine purges after.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from engine.errors import InputError, PluginError, WorkerError
from engine.ids import new_id
from engine.intake import preview
from engine.logs import register_sensitive
from engine.media.digests import crypto_hashes
from engine.media.items import IMAGE_TYPES, MIRROR_KEYS, hash_bytes
from engine.models import CHANNELS
from engine.store import IntakeRow
from engine.urls import canonicalize

log = logging.getLogger("ntd.intake")

#: Largest media a source may hand in (bytes); larger ones are rejected.
MAX_MEDIA_BYTES = 32 * 1024 * 1024
MEDIA_SCHEME = "media:sha256:"
_REDACTED = frozenset({"username", "first_name", "last_name", "name", "phone", "email"})


@dataclass(frozen=True, kw_only=True)
class IncomingReport:
    """One report of a message: a URL, or media bytes (never stored) with their type."""

    url: str | None = None
    media: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    line: int = 1  # the report's number within the message, for per-line errors
    where: str | None = None  # which part of the message ("text", "html", "report.csv")
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class HandInResult:
    """What :meth:`IntakeDesk.hand_in` did: the batch id and counts for the receipt."""

    batch: str
    known: bool
    accepted: int
    duplicates: int
    rejected: int
    errors: list[dict[str, Any]] = field(default_factory=list)  # line, where, input, reason
    receipt_given: bool = False  # handed in before and its receipt already confirmed

    def to_dict(self) -> dict[str, Any]:
        """JSON form (never holds reporter data)."""
        return {"batch": self.batch, "known": self.known, "accepted": self.accepted,
                "duplicates": self.duplicates, "rejected": self.rejected,
                "errors": self.errors, "receipt_given": self.receipt_given}


@runtime_checkable
class IntakeSource(Protocol):
    """What ``ntd_intake_sources`` returns: a named, long-running source of reports."""

    name: str

    async def poll(self, desk: IntakeDesk) -> int:
        """Hand in everything waiting now; return how many messages were handled."""
        ...

    async def run(self, desk: IntakeDesk, stop: asyncio.Event) -> None:
        """Hand in messages until ``stop`` is set (finish the current message, then return)."""
        ...

    async def aclose(self) -> None:
        """Close connections; called once after ``run``/``poll``."""
        ...


class PollingSource:
    """A base for sources: ``run`` calls ``poll`` every ``interval`` seconds until stopped."""

    name = "polling"
    interval = 60.0

    async def poll(self, desk: IntakeDesk) -> int:
        """Override: hand in what is waiting."""
        raise NotImplementedError

    async def run(self, desk: IntakeDesk, stop: asyncio.Event) -> None:
        """Poll, then wait ``interval`` (or until stopped); a failed poll is logged and
        retried at the next interval (the source's messages stay where they are)."""
        while not stop.is_set():
            try:
                await self.poll(desk)
                await desk.settle()
            except Exception as exc:  # noqa: BLE001 - a source keeps running; the reason is logged
                log.warning("intake source %s: poll failed: %s", self.name, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)

    async def aclose(self) -> None:
        """Nothing to close by default."""


class IntakeDesk:
    """The engine's side of an intake source: hand reports in, confirm receipts."""

    def __init__(self, ctx: Any, source: str) -> None:
        self.ctx = ctx
        self.source = source
        self._vault: Any = None
        self._purged = 0  # reporter records erased since the last ``settle``

    def _reference(self, reference: str) -> str:
        return hashlib.sha256(f"{self.source}\0{reference}".encode()).hexdigest()

    def vault(self) -> Any:
        """The reporter vault (``engine.privacy.ReporterVault``) of the run's store."""
        if self._vault is None:
            # deferred: pulls in cryptography, loaded on first use
            from engine.privacy import ReporterVault, load_master_key

            self._vault = ReporterVault(load_master_key(getattr(self.ctx.store.sync, "path",
                                                                None)))
        return self._vault

    async def hand_in(self, reports: Sequence[IncomingReport], *, channel: str, reference: str,
                      reporter: Mapping[str, str] | None = None,
                      app: str | None = None) -> HandInResult:
        """Store one message's reports as one batch, exactly once per ``reference``.

        :param reports: the message's URLs and media.
        :param channel: the report channel (``chat``, ``mail``, ``police``, ``partner``, ...).
        :param reference: unique per message at this source (idempotency key).
        :param reporter: the reporter's identifying fields, sealed per report (or ``None``).
        :param app: where the reporter fields come from (``telegram``, ``mail``, ...).
        :returns: the batch id and counts (``known``: handed in before; nothing stored now).
        """
        if channel not in CHANNELS:
            raise PluginError(f"intake source {self.source!r}: unknown channel {channel!r} "
                              f"(known: {', '.join(CHANNELS)})")
        ref = self._reference(reference)
        known = await self.ctx.store.intake_batch(source=self.source, reference=ref)
        if known is not None:  # cheap path: no hashing, no sealing for a replay
            return await self._store(ref, channel, [], [], bool(known.get("receipt_at")))
        sealed_fields = {k: str(v) for k, v in (reporter or {}).items() if v not in (None, "")}
        # Names, usernames, addresses and numbers are redacted from every log line; bare ids
        # (a Telegram user id) and codes are sealed but not registered (they would mask any
        # number of that value in the log).
        register_sensitive(*(v for k, v in sealed_fields.items() if k in _REDACTED))
        rows: list[IntakeRow] = []
        errors: list[dict[str, Any]] = []
        for report in reports:
            row, reason = await self._row(report, channel)
            if row is None:
                entry = {"line": report.line, "input": preview(report.url or
                                                               f"<{report.content_type}>"),
                         "reason": reason}
                if report.where:
                    entry["where"] = report.where
                errors.append(entry)
                continue
            if sealed_fields:
                row = replace(row, reporter=self._seal(sealed_fields, app))
            rows.append(row)
        return await self._store(ref, channel, rows, errors)

    async def _store(self, ref: str, channel: str, rows: list[IntakeRow],
                     errors: list[dict[str, Any]], receipt_given: bool = False) -> HandInResult:
        out = await self.ctx.store.hand_in(source=self.source, reference=ref, channel=channel,
                                           at=self.ctx.clock.now_text(), rows=rows,
                                           rejected=len(errors))
        return HandInResult(batch=out.batch, known=out.known, accepted=out.accepted,
                            duplicates=out.duplicates, rejected=out.rejected,
                            errors=[] if out.known else errors,
                            receipt_given=receipt_given)

    async def receipt_given(self, reference: str) -> int:
        """The source answered the reporter for ``reference``: purge that batch's reporter
        records now (returns how many were erased)."""
        erased = await self.ctx.store.intake_receipt_done(
            source=self.source, reference=self._reference(reference),
            now=self.ctx.clock.now_text())
        self._purged += int(erased)
        if erased:
            await self.ctx.store.audit(actor=f"intake:{self.source}", action="purge",
                                       obj="reporter", now=self.ctx.clock.now_text(),
                                       detail={"reporters_purged": erased, "after": "receipt"})
        return int(erased)

    async def settle(self) -> None:
        """After a pass that purged reporter records: vacuum the store, so the erased values
        leave no trace in its files (SQLite: pages zeroed by ``secure_delete``, the WAL
        truncated). Called by the driver after every poll; cheap when nothing was purged."""
        if self._purged:
            self._purged = 0
            await self.ctx.store.vacuum()

    def _seal(self, fields: dict[str, str], app: str | None) -> tuple[Any, ...]:
        vault = self.vault()
        record_id = new_id("R")
        sealed, wrapped = vault.seal(fields, record_id)
        phone = fields.get("phone")
        user = fields.get("username") or fields.get("email")
        return (record_id, app, vault.mac("phone", phone) if phone else None,
                vault.mac("username", user) if user else None, sealed, wrapped, False)

    async def _row(self, report: IncomingReport, channel: str) -> tuple[IntakeRow | None, str]:
        metadata = {k: v for k, v in report.metadata.items()
                    if isinstance(v, (str, int, float, bool))}
        if report.where:
            metadata.setdefault("where", report.where)
        if report.media is not None:
            return await self._media_row(report, metadata)
        if not report.url or not report.url.strip():
            return None, "missing url"
        try:
            canonical = canonicalize(report.url)
        except InputError as exc:
            return None, exc.message
        return IntakeRow(raw_url=report.url.strip(), canonical_url=canonical.url,
                         host=canonical.host, domain=canonical.domain, line=report.line,
                         metadata=metadata), ""

    async def _media_row(self, report: IncomingReport,
                         metadata: dict[str, Any]) -> tuple[IntakeRow | None, str]:
        data = report.media
        assert data is not None
        ctype = (report.content_type or "").split(";")[0].strip().lower()
        if ctype not in IMAGE_TYPES:
            return None, f"unsupported media type {ctype or 'unknown'}"
        if len(data) > MAX_MEDIA_BYTES:
            return None, "media too large"
        try:
            hashes = await self.ctx.run_cpu(hash_bytes, data, ctype, False,
                                            timeout=self.ctx.config.get("fetch", "hash_seconds",
                                                                        30.0))
        except WorkerError as exc:
            hashes = {**crypto_hashes(data), "error": exc.reason}
        error = hashes.pop("error", None)
        for key in MIRROR_KEYS:
            hashes.pop(key, None)
        url = MEDIA_SCHEME + hashes["sha256"]
        media = {"hashes": hashes, "content_type": ctype, "size": len(data)}
        if error:
            metadata["media_error"] = error
        return IntakeRow(raw_url=url, canonical_url=url, host="media.invalid",
                         domain="media.invalid", line=report.line, metadata=metadata,
                         media=media), ""
