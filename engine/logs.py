"""Structured logging with a redaction filter.

Every record leaving an ``ntd`` logger passes ``RedactingFilter``: e-mail addresses, phone-like
numbers and every value registered with ``register_sensitive`` (reporter fields seen by intake in
this process) are replaced by ``[redacted]`` — in the message, its arguments and ``extra`` fields.
``[logging] format = "json"`` writes one JSON object a line (for log shippers); ``file`` sends logs
to a file instead of stderr.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d ()./-]{7,}\d(?![\w.])")
_SENSITIVE: set[str] = set()
_LOCK = threading.Lock()
MASK = "[redacted]"


def register_sensitive(*values: str | None) -> None:
    """Never let these exact values (and their case variants) reach a log line."""
    with _LOCK:
        for value in values:
            if value and len(value.strip()) >= 3:
                _SENSITIVE.add(value.strip())


def redact(text: str) -> str:
    """``text`` with e-mail addresses, phone numbers and registered values masked."""
    with _LOCK:
        sensitive = sorted(_SENSITIVE, key=len, reverse=True)
    for value in sensitive:
        if value.lower() in text.lower():
            text = re.sub(re.escape(value), MASK, text, flags=re.IGNORECASE)
    text = _EMAIL.sub(MASK, text)
    return _PHONE.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (with its arguments merged in) through ``redact``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key.startswith("ntd_") and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and ``ntd_*`` extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                               "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        out.update({k: v for k, v in record.__dict__.items() if k.startswith("ntd_")})
        if record.exc_info:
            out["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


_configured: list[logging.Handler] = []


def setup_logging(level: str = "WARNING", *, fmt: str = "text", file: str | None = None) -> None:
    """Configure the ``ntd`` logger tree once per process (idempotent)."""
    root = logging.getLogger("ntd")
    root.setLevel(level)
    for old in _configured:
        root.removeHandler(old)
        old.close()  # a replaced file handler must not leak its file
    _configured.clear()
    handler: logging.Handler = (logging.FileHandler(file, encoding="utf-8") if file
                                else logging.StreamHandler())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.propagate = False
    _configured.append(handler)
