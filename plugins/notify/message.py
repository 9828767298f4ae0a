"""A claimed notice turned into what goes out: template context, X-ARF reports, MIME bytes.

Everything here is a pure function of the stored notice (its id, creation time and actions), so
a resend after a crash produces the same Message-ID, the same Date and the same X-ARF report ids:
the recipient can recognise it as the notice it may already have. The e-mail follows X-ARF 4.2
("JSON first, email is just transport"): a ``multipart/mixed`` message whose first part is the
human-readable notice (``multipart/alternative``, text + HTML), followed by each URL's X-ARF
report as an ``application/json`` attachment named ``xarf-<report_id>.json``. No X-ARF 0.2
``X-XARF`` header (that announced the old YAML format) and no image part, ever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import timedelta
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr
from typing import Any

from engine import clock
from engine.config import secret_from_env
from engine.errors import ConfigError
from engine.notice_content import speakable
from plugins.notify.render import Rendered, Renderer
from plugins.notify.settings import NoticeSettings, SMTPSettings
from plugins.notify.xarf import build_reports

_WIRE = compat32.clone(linesep="\r\n")


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """A notice ready for a channel."""

    notice: dict[str, Any]
    rendered: Rendered
    reports: list[dict[str, Any]]
    message_id: str
    email: bytes | None = None  # the MIME message, when it was built with the rest


    @property
    def json_body(self) -> bytes:
        """The API body: the JSON array of X-ARF reports."""
        return json.dumps(self.reports, ensure_ascii=False, sort_keys=True).encode("utf-8")


def reply_address(settings: NoticeSettings, smtp: SMTPSettings) -> str:
    """Where recipients answer: ``[notices] reply_to``, else the sender address."""
    return settings.reply_to or smtp.from_address


def message_id(notice: dict[str, Any], smtp: SMTPSettings) -> str:
    """``<idempotency-key@sender-domain>``: the same for every attempt of a notice."""
    return f"<{notice['idempotency_key']}@{smtp.from_address.rpartition('@')[2]}>"


def template_context(notice: dict[str, Any], settings: NoticeSettings,
                     smtp: SMTPSettings) -> dict[str, Any]:
    """The variables templates see: ``notice`` and ``cases`` (allow-listed action fields)."""
    cases: list[dict[str, Any]] = []
    seen: set[str] = set()
    hours = [a["deadline_hours"] for a in notice["actions"]
             if isinstance(a.get("deadline_hours"), int | float)]
    for action in notice["actions"]:
        key = action.get("case_id") or action.get("outbox_id")
        if key in seen:
            continue
        seen.add(key)
        cases.append({"case_id": action.get("case_id"), "reference": action.get("reference"),
                      "domain": action.get("domain"),
                      "entries": [dict(e) for e in action.get("entries") or []]})
    created = clock.parse(notice["created_at"])
    deadline = min(hours) if hours else None
    first = notice["actions"][0] if notice["actions"] else {}
    return {
        "notice": {
            "id": notice["id"],
            "reference": f"{settings.reference_prefix}-{notice['id']}",
            "recipient": notice["recipient"],
            "recipient_kind": notice["recipient_kind"],
            "action": first.get("action", "notice"),
            "language": notice["language"],
            "country": notice.get("country"),
            "hotline_name": settings.hotline_name,
            "reply_to": reply_address(settings, smtp),
            "legal_basis": settings.legal_basis,
            "deadline": (created + timedelta(hours=deadline)).strftime("%Y-%m-%d %H:%M UTC")
            if deadline is not None else None,
            "deadline_hours": deadline,
            "created_at": created.strftime("%Y-%m-%d %H:%M UTC"),
            "url_count": sum(len(c["entries"]) for c in cases),
            "idempotency_key": notice["idempotency_key"],
        },
        "cases": cases,
    }


def prepare(notice: dict[str, Any], renderer: Renderer, settings: NoticeSettings,
            smtp: SMTPSettings) -> Prepared:
    """Render a claimed notice and build its X-ARF reports (from canonical URLs only)."""
    notice = {**notice, "actions": [speakable(a) for a in notice["actions"]]}
    rendered = renderer.render(template_context(notice, settings, smtp))
    reports = build_reports(notice, hotline=settings.hotline_name,
                            reply_to=reply_address(settings, smtp))
    return Prepared(notice=notice, rendered=rendered, reports=reports,
                    message_id=message_id(notice, smtp))


_RENDERERS: dict[str | None, Renderer] = {}


def render_notice(notice: dict[str, Any], settings: NoticeSettings, smtp: SMTPSettings,
                  key: bytes | None, with_email: bool) -> Prepared:
    """``prepare`` plus, for e-mail, the MIME bytes: a module-level function of plain values, so
    the sender runs it in the CPU pool (3-4 ms of CPU a notice; a batch of 64 rendered on the
    event loop held it for a quarter of a second). Each process keeps its own Renderer."""
    renderer = _RENDERERS.get(settings.template_dir)
    if renderer is None:
        renderer = _RENDERERS[settings.template_dir] = Renderer(settings.template_dir)
    prepared = prepare(notice, renderer, settings, smtp)
    if with_email:
        prepared = replace(prepared, email=email_bytes(prepared, settings, smtp, key))
    return prepared


def email_bytes(prepared: Prepared, settings: NoticeSettings, smtp: SMTPSettings,
                dkim_key: bytes | None = None) -> bytes:
    """The complete RFC 5322 message (optionally DKIM-signed) for an e-mail notice."""
    notice = prepared.notice
    root = MIMEMultipart("mixed")
    root["From"] = formataddr((settings.hotline_name, smtp.from_address), "utf-8")
    root["To"] = notice["recipient"]
    root["Reply-To"] = reply_address(settings, smtp)
    subject = prepared.rendered.subject
    root["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    root["Date"] = format_datetime(clock.parse(notice["created_at"]))
    root["Message-ID"] = prepared.message_id
    root["Auto-Submitted"] = "auto-generated"
    root["X-NTD-Notice"] = notice["id"]
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(prepared.rendered.text, "plain", "utf-8"))
    alternative.attach(MIMEText(prepared.rendered.html, "html", "utf-8"))
    root.attach(alternative)
    for report in prepared.reports:
        part = MIMEApplication(
            json.dumps(report, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8"),
            "json")
        part.add_header("Content-Disposition", "attachment",
                        filename=f"xarf-{report['report_id']}.json")
        root.attach(part)
    # compat32 with CRLF: the modern policy re-parses every header and is ~40x slower here.
    data = root.as_bytes(policy=_WIRE)
    if dkim_key is not None and smtp.dkim_domain and smtp.dkim_selector:
        data = dkim_sign(data, smtp, dkim_key)
    return data


def dkim_key(smtp: SMTPSettings) -> bytes | None:
    """The DKIM private key (PEM) from the environment, or None when DKIM is off."""
    if not smtp.dkim_key_env:
        return None
    value = secret_from_env("smtp", "dkim_key_env", smtp.dkim_key_env)
    try:
        # deferred: optional dependency
        import dkim  # noqa: F401  (dkimpy, optional)
    except ImportError as exc:
        raise ConfigError("[smtp] dkim_*: DKIM signing needs the dkimpy package") from exc
    return (value or "").encode("ascii")


def dkim_sign(data: bytes, smtp: SMTPSettings, key: bytes) -> bytes:
    """Prepend a DKIM-Signature header (relaxed/relaxed, the usual headers)."""
    import dkim  # deferred: optional dependency

    signature = dkim.sign(
        data, (smtp.dkim_selector or "").encode(), (smtp.dkim_domain or "").encode(), key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"reply-to"])
    return bytes(signature) + data
