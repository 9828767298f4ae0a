"""One mail as reports: URLs from its text and HTML bodies (defanged forms too), rows of its
CSV/TXT attachments, and its attached images (bytes handed to the engine in memory, hashed
there and dropped).

Numbering: every report gets a ``line`` (its line in that part) and a ``where`` (``text``,
``html`` or the attachment's file name), so the receipt's per-line errors say where each is.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.utils
from dataclasses import dataclass, field
from email.message import Message

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


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", "replace")


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return str(value)


def _language(msg: Message) -> str | None:
    for header in ("Content-Language", "Accept-Language"):
        value = str(msg.get(header, "") or "").strip().lower()
        if value:
            return value.split(",")[0].split("-")[0].strip() or None
    return None


def parse_mail(data: bytes) -> ParsedMail:
    """Parse raw RFC 5322 bytes into sender fields and reports.

    The ``compat32`` parser: the modern policy's header registry cost ~40 ms a mail (every
    header of every part parsed into objects); only From, Message-ID and Subject are decoded."""
    msg = email.message_from_bytes(data)
    name, address = email.utils.parseaddr(_header(msg, "From"))
    parsed = ParsedMail(from_address=address.strip().lower(), from_name=name.strip(),
                        message_id=_header(msg, "Message-ID").strip() or None,
                        subject=_header(msg, "Subject"), language=_language(msg))
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
