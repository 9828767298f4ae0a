"""The receipt mailed back to a reporter: batch id, accepted and rejected counts, the lines
that were refused and why (in Dutch or English), sent over ``[smtp]`` with aiosmtplib like the
notice sender. Receipts never quote the reported URLs: only line numbers and reasons."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from engine.api import HandInResult, secret_from_env

TEXT = {
    "en": {
        "subject": "Receipt of your report ({batch})",
        "intro": "Thank you. We received your report and registered it as batch {batch}.",
        "counts": "Accepted: {accepted} (of which already known: {duplicates}). "
                  "Rejected: {rejected}.",
        "errors": "Rejected lines:",
        "line": "- {where} line {line}: {reason}",
        "outro": "This is an automatic message. Your address is deleted once this receipt "
                 "has been sent.",
    },
    "nl": {
        "subject": "Ontvangstbevestiging van uw melding ({batch})",
        "intro": "Dank u wel. Wij hebben uw melding ontvangen en geregistreerd als "
                 "batch {batch}.",
        "counts": "Geaccepteerd: {accepted} (waarvan al bekend: {duplicates}). "
                  "Geweigerd: {rejected}.",
        "errors": "Geweigerde regels:",
        "line": "- {where} regel {line}: {reason}",
        "outro": "Dit is een automatisch bericht. Uw adres wordt verwijderd zodra deze "
                 "bevestiging is verzonden.",
    },
}


def language_of(declared: str | None, address: str, default: str) -> str:
    """``nl`` or ``en``: the mail's declared language, else a ``.nl`` sender, else default."""
    if declared in TEXT:
        return declared
    if address.rpartition("@")[2].endswith(".nl"):
        return "nl"
    return default


def build_receipt(*, to: str, sender: str, language: str, result: HandInResult,
                  in_reply_to: str | None) -> EmailMessage:
    """The receipt message."""
    t = TEXT[language]
    lines = [t["intro"].format(batch=result.batch),
             t["counts"].format(accepted=result.accepted + result.duplicates,
                                duplicates=result.duplicates, rejected=result.rejected)]
    if result.errors:
        lines += ["", t["errors"]]
        lines += [t["line"].format(where=e.get("where", "-"), line=e["line"],
                                   reason=e["reason"]) for e in result.errors[:200]]
    lines += ["", t["outro"]]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = t["subject"].format(batch=result.batch)
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(idstring=result.batch,
                                               domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-NTD-Batch"] = result.batch
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content("\n".join(lines) + "\n")
    return msg


class ReceiptSender:
    """Sends receipts over one ``[smtp]`` connection, reused across a poll's messages (a
    connection per receipt cost more than the rest of a message's handling)."""

    def __init__(self, smtp: dict[str, Any]) -> None:
        self.smtp = smtp
        self._client: aiosmtplib.SMTP | None = None

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.smtp
        return aiosmtplib.SMTP(
            hostname=s.get("host", "127.0.0.1"), port=s.get("port", 25),
            use_tls=bool(s.get("tls")), start_tls=bool(s.get("starttls")),
            validate_certs=s.get("validate_certs", True), timeout=s.get("timeout", 30.0),
            username=secret_from_env("smtp", "username_env", s.get("username_env")),
            password=secret_from_env("smtp", "password_env", s.get("password_env")))

    async def send(self, message: EmailMessage) -> None:
        """Send one receipt (raises aiosmtplib's errors: the message stays in the mailbox and
        is handled again at the next poll)."""
        if self._client is None or not self._client.is_connected:
            self._client = self._new_client()
            await self._client.connect()
        try:
            await self._client.send_message(message)
        except (aiosmtplib.SMTPException, OSError):
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """QUIT the connection (or drop it when that fails)."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
