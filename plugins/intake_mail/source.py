"""The mailbox source: poll the folder, verify each sender, hand its reports in, answer with a
receipt, purge the sender's data, then delete or move the message.

Order per message, so a crash anywhere loses nothing and duplicates no report:

1. fetch (``BODY.PEEK[]``; the message stays in the folder until step 5);
2. refuse it unless the sender is allowed and, with ``require_dkim``, DKIM-verified (the log
   names the UID and the reason, never the address); a refused message goes on to step 5;
3. ``desk.hand_in`` with reference = the Message-ID (else ``UIDVALIDITY/UID``): one
   transaction; the same message again after a restart answers the first batch;
4. the receipt (unless the batch's receipt was already given), then ``desk.receipt_given``,
   which purges the batch's sealed sender records;
5. ``after``: delete or move.

A crash between sending the receipt and recording it can send that receipt twice; reports are
never stored twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from engine.api import IntakeDesk, PollingSource
from plugins.intake_mail.dkim_check import DnsFunc, verify_sender
from plugins.intake_mail.imap import Mailbox
from plugins.intake_mail.message import ParsedMail, parse_mail
from plugins.intake_mail.receipt import ReceiptSender, build_receipt, language_of
from plugins.intake_mail.settings import MailSettings

log = logging.getLogger("ntd.intake.mail")


class MailSource(PollingSource):
    """``[intake.mail]`` as an intake source named ``mail``."""

    name = "mail"

    def __init__(self, settings: MailSettings, smtp: dict[str, Any], *,
                 dnsfunc: DnsFunc | None = None,
                 mailbox: Callable[[MailSettings], Mailbox] = Mailbox) -> None:
        self.settings = settings
        self.smtp = smtp
        self.dnsfunc = dnsfunc
        self.interval = settings.poll_seconds
        self._mailbox_factory = mailbox
        self._mailbox: Mailbox | None = None
        self._receipts = ReceiptSender(smtp)
        self.refused = 0

    def _box(self) -> Mailbox:
        if self._mailbox is None:
            self._mailbox = self._mailbox_factory(self.settings)
            self._mailbox.open()
        return self._mailbox

    async def poll(self, desk: IntakeDesk) -> int:
        """Handle every message waiting in the folder; returns how many."""
        limit = int(self.settings.max_message_mb * 1024 * 1024)
        try:
            uids = await asyncio.to_thread(lambda: self._box().uids())
            too_large = await asyncio.to_thread(self._box().oversized, limit) if uids else set()
        except OSError:
            await self.aclose()  # a dropped connection: reconnect at the next poll
            raise
        handled = 0
        for uid in uids:
            if uid in too_large:
                self.refused += 1
                log.warning("mail refused: uid %s in %s: larger than max_message_mb", uid,
                            self.settings.folder)
                await asyncio.to_thread(self._box().done, uid)
                continue
            data = await asyncio.to_thread(self._box().fetch, uid)
            if data is None:
                continue
            await self.handle(desk, uid, data)
            del data  # the message's bytes (attached images too) go here
            await asyncio.to_thread(self._box().done, uid)
            handled += 1
        await self._receipts.aclose()  # one SMTP connection per pass
        return handled

    async def handle(self, desk: IntakeDesk, uid: int, data: bytes) -> None:
        """Steps 2–4 for one message (the caller applies ``after``)."""
        mail = parse_mail(data)
        reason = self._refusal(mail, data)
        if reason is not None:
            self.refused += 1
            log.warning("mail refused: uid %s in %s: %s", uid, self.settings.folder, reason)
            return
        reference = (f"msgid:{mail.message_id}" if mail.message_id
                     else f"uid:{self._box().uidvalidity}/{uid}")
        result = await desk.hand_in(
            mail.reports, channel=self.settings.channel_for(mail.from_address),
            reference=reference, reporter={"email": mail.from_address, "name": mail.from_name},
            app="mail")
        log.info("mail uid %s: batch %s, %d accepted, %d rejected%s", uid, result.batch,
                 result.accepted + result.duplicates, result.rejected,
                 " (handed in before)" if result.known else "")
        if self.settings.receipt and not result.receipt_given:
            await self._receipt(mail, result)
        await desk.receipt_given(reference)
        mail.reports.clear()

    def _refusal(self, mail: ParsedMail, data: bytes) -> str | None:
        if not mail.from_address or "@" not in mail.from_address:
            return "no sender address"
        if not self.settings.allowed(mail.from_address):
            return "sender not on allowed_senders"
        if self.settings.require_dkim:
            verdict = verify_sender(data, mail.from_address.rpartition("@")[2],
                                    dnsfunc=self.dnsfunc)
            if not verdict.ok:
                return f"sender not verified ({verdict.reason})"
        return None

    async def _receipt(self, mail: ParsedMail, result: Any) -> None:
        sender = self.settings.receipt_from or self.smtp.get("from_address",
                                                               "notices@hotline.invalid")
        language = language_of(mail.language, mail.from_address,
                               self.settings.default_language)
        message = build_receipt(to=mail.from_address, sender=sender, language=language,
                                result=result, in_reply_to=mail.message_id)
        await self._receipts.send(message)

    async def aclose(self) -> None:
        """Log out of the mailbox, close the SMTP connection."""
        await self._receipts.aclose()
        if self._mailbox is not None:
            box, self._mailbox = self._mailbox, None
            await asyncio.to_thread(box.close)
