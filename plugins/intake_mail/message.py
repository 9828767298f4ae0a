"""One mail as reports: URLs from its text and HTML bodies (defanged forms too), rows of its
CSV/TXT attachments, and its attached images (bytes handed to the engine in memory, hashed
there and dropped).

Numbering: every report gets a ``line`` (its line in that part) and a ``where`` (``text``,
``html`` or the attachment's file name), so the receipt's per-line errors say where each is.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from dataclasses import dataclass, field
from email.message import EmailMessage

from engine.api import IncomingReport
from engine.intake_text import lines_of_attachment, urls_in_html, urls_in_text

ATTACHMENT_TYPES = (".csv", ".txt")
MAX_PART_BYTES = 16 * 1024 * 1024


@dataclass
class ParsedMail:
    """What the source needs from one mail (sender fields stay in memory, never logged)."""

    from_address: str
    from_name: str
    message_id: str | None
    subject: str
    language: str | None
    reports: list[IncomingReport] = field(default_factory=list)


def _text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _language(msg: EmailMessage) -> str | None:
    for header in ("Content-Language", "Accept-Language"):
        value = str(msg.get(header, "") or "").strip().lower()
        if value:
            return value.split(",")[0].split("-")[0].strip() or None
    return None


def parse_mail(data: bytes) -> ParsedMail:
    """Parse raw RFC 5322 bytes into sender fields and reports."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    name, address = email.utils.parseaddr(str(msg.get("From", "") or ""))
    parsed = ParsedMail(from_address=address.strip().lower(), from_name=name.strip(),
                        message_id=(str(msg.get("Message-ID", "") or "").strip() or None),
                        subject=str(msg.get("Subject", "") or ""), language=_language(msg))
    reports = parsed.reports
    seen_body: set[str] = set()
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        if ctype.startswith("image/"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and payload and len(payload) <= MAX_PART_BYTES:
                reports.append(IncomingReport(media=payload, content_type=ctype,
                                              line=len([r for r in reports if r.media]) + 1,
                                              where=filename or "image"))
            continue
        if filename and filename.lower().endswith(ATTACHMENT_TYPES):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and len(payload) <= MAX_PART_BYTES:
                for line, value in lines_of_attachment(payload, filename):
                    reports.append(IncomingReport(url=value, line=line, where=filename))
            continue
        if disposition == "attachment":
            continue  # other attachments are not read
        if ctype == "text/plain":
            found = urls_in_text(_text(part))
            where = "text"
        elif ctype == "text/html":
            found = urls_in_html(_text(part))
            where = "html"
        else:
            continue
        for line, url in found:
            if url in seen_body:
                continue  # the HTML alternative repeats the text: one report per URL
            seen_body.add(url)
            reports.append(IncomingReport(url=url, line=line, where=where))
    return parsed
