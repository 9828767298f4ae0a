"""One Telegram update as reports and sealed reporter fields.

URLs come from the message's entities (``url``: the text it covers, counted in UTF-16 code
units as the Bot API does; ``text_link``: the hidden link) and from the text itself (defanged
forms too), for text and for photo captions alike. A forwarded message is a report by the
person who forwarded it: its ``forward_origin`` (someone else's identity) is never read.
Photos: the largest size is downloaded in memory and handed in as media.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.intake_text import refang, urls_in_text


@dataclass
class ParsedUpdate:
    """What the bot needs from one update."""

    update_id: int
    reporter: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)
    photo_file_id: str | None = None
    photo_type: str = "image/jpeg"  # Telegram re-encodes photos as JPEG; documents keep theirs
    forwarded: bool = False


def _utf16_slice(text: str, offset: int, length: int) -> str:
    data = text.encode("utf-16-le")
    return data[offset * 2:(offset + length) * 2].decode("utf-16-le", "replace")


def parse_update(update: dict[str, Any]) -> ParsedUpdate | None:
    """The message of an update (``message`` or ``edited_message``), or None for others."""
    message = update.get("message") or update.get("edited_message")
    if not isinstance(message, dict):
        return None
    parsed = ParsedUpdate(update_id=int(update["update_id"]))
    sender = message.get("from") or {}
    chat = message.get("chat") or {}
    for key, value in (("telegram_id", sender.get("id")), ("chat_id", chat.get("id")),
                       ("username", sender.get("username")),
                       ("first_name", sender.get("first_name")),
                       ("last_name", sender.get("last_name")),
                       ("language", sender.get("language_code"))):
        if value not in (None, ""):
            parsed.reporter[key] = str(value)
    parsed.forwarded = "forward_origin" in message or "forward_from" in message
    text = message.get("text") or message.get("caption") or ""
    entities = message.get("entities") or message.get("caption_entities") or []
    found: list[str] = []
    for entity in entities:
        if entity.get("type") == "url":
            found.append(refang(_utf16_slice(text, int(entity["offset"]),
                                             int(entity["length"]))))
        elif entity.get("type") == "text_link" and entity.get("url"):
            found.append(str(entity["url"]))
    found += [url for _, url in urls_in_text(text)]
    for url in found:
        if url.lower().startswith("www."):
            url = "http://" + url
        if url not in parsed.urls:
            parsed.urls.append(url)
    photos = message.get("photo") or []
    if photos:
        best = max(photos, key=lambda p: (p.get("width", 0) * p.get("height", 0),
                                          p.get("file_size", 0)))
        parsed.photo_file_id = best.get("file_id")
    document = message.get("document") or {}
    if not parsed.photo_file_id and str(document.get("mime_type", "")).startswith("image/"):
        parsed.photo_file_id = document.get("file_id")
        parsed.photo_type = str(document["mime_type"])
    return parsed
