"""Notice templates: Jinja2, autoescaped HTML plus plain text, strict about undefined names.

Templates live in ``notice_templates/<recipient_kind>/<language>.{txt,html}.j2``
(shipped in the package) and define a ``subject`` block; operators override any of them by
pointing ``[notices] template_dir`` at a folder with the same layout (files there win, the rest
fall back to the built-ins). Every template is rendered once with a sample notice at start-up,
so a typo or an undefined variable stops the run with the template's name and line instead of
failing a notice at 3 a.m.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

import notice_templates
from engine.errors import ConfigError
from engine.media.signals import HASH_TYPES

BUILTIN_DIR = Path(notice_templates.__file__).resolve().parent
KINDS = ("hosting", "registrar", "cdn", "platform", "hotline", "police", "interpol")
LANGUAGES = ("nl", "en")
FORMATS = ("txt", "html")


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """A notice's human-readable parts."""

    subject: str
    text: str
    html: str


def template_name(kind: str, language: str, fmt: str) -> str:
    """Relative path of one template."""
    return f"{kind}/{language}.{fmt}.j2"


class Renderer:
    """A Jinja2 environment over the override folder (if any) and the built-in templates."""

    def __init__(self, template_dir: str | Path | None = None) -> None:
        search = [str(template_dir)] if template_dir else []
        search.append(str(BUILTIN_DIR))
        if template_dir and not Path(template_dir).is_dir():
            raise ConfigError(f"[notices] template_dir: {template_dir} is not a folder")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            autoescape=lambda name: bool(name and name.endswith(".html.j2")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)

    def _render(self, name: str, context: dict[str, Any]) -> tuple[str, str]:
        template = self.env.get_template(name)
        body = template.render(context)
        if "subject" not in template.blocks:
            raise ConfigError(f"notice template {name}: has no {{% block subject %}}")
        subject = "".join(template.blocks["subject"](template.new_context(context)))
        return " ".join(subject.split()), body

    def render(self, context: dict[str, Any]) -> Rendered:
        """Render a notice (``context`` as built by ``plugins.notify.message``)."""
        kind = context["notice"]["recipient_kind"]
        language = context["notice"]["language"]
        if kind not in KINDS:
            kind = "hosting"
        if language not in LANGUAGES:
            language = "en"
        subject, text = self._render(template_name(kind, language, "txt"), context)
        _, html = self._render(template_name(kind, language, "html"), context)
        return Rendered(subject=subject, text=text, html=html)

    def validate(self) -> int:
        """Render every template with a sample notice; ``ConfigError`` names file and line."""
        checked = 0
        for kind in KINDS:
            for language in LANGUAGES:
                for fmt in FORMATS:
                    name = template_name(kind, language, fmt)
                    try:
                        self._render(name, sample_context(kind, language))
                    except jinja2.TemplateSyntaxError as exc:
                        where = exc.filename or exc.name or name
                        raise ConfigError(f"notice template {where}, line {exc.lineno}: "
                                          f"{exc.message}") from exc
                    except jinja2.TemplateNotFound as exc:
                        raise ConfigError(f"notice template {exc.name} is missing "
                                          f"(needed for {kind}/{language})") from exc
                    except jinja2.TemplateError as exc:
                        raise ConfigError(f"notice template {_where(exc, name)}: "
                                          f"{exc.message or exc}") from exc
                    checked += 1
        return checked


def _where(exc: BaseException, name: str) -> str:
    """``file, line N`` of the innermost template frame in a rendering traceback."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2"):
            found = frame
    if found is None:
        return name
    return f"{found.filename}, line {found.lineno}"


def sample_context(kind: str, language: str) -> dict[str, Any]:
    """A complete notice context with synthetic values (for validation and docs)."""
    entry = {"url": "http://hoster.example/gallery/1.html", "classification": "baseline",
             "detection_method": "hash_match", "first_seen": "2026-01-01T00:00:00.000000Z",
             "host": "hoster.example", "ip": "192.0.2.10",
             "hashes": {name: "0" * t.hex_length for name, t in HASH_TYPES.items()}}
    return {
        "notice": {"id": "N0000000000000000", "reference": "NTD-N0000000000000000",
                   "recipient": "abuse@hoster.example", "recipient_kind": kind,
                   "action": "notice", "language": language, "country": "NL",
                   "hotline_name": "Example Hotline", "reply_to": "reply@hotline.example",
                   "legal_basis": None, "deadline": "2026-01-02T00:00:00Z",
                   "deadline_hours": 24, "created_at": "2026-01-01T00:00:00Z",
                   "url_count": 1, "idempotency_key": "ntd-n0000000000000000"},
        "cases": [{"case_id": "C0000000000000000", "reference": "NTD-C0000000000000000",
                   "domain": "hoster.example", "entries": [entry]}],
    }
