"""The public report form (``GET /``, ``GET/POST /report``): anonymous, no JavaScript, NL/EN.

The page sets no cookie, loads nothing from elsewhere, and the handler never reads a client
address (the app does not hold one). A valid URL is stored through the same code path as
``POST /api/reports``; invalid input re-renders the form with a message in the page's language
(HTML, status 422) — or an RFC 9457 problem when the client does not ask for HTML.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import engine.web.i18n as i18n
from engine.errors import InputError
from engine.web.api import submit_anonymous
from engine.web.deps import read_body, state, wants_html
from engine.web.problems import Problem


def _page(request: Request, lang: str, *, status: int = 200, **context: Any) -> Response:
    other = "en" if lang == "nl" else "nl"
    response = state(request).templates.TemplateResponse(
        request, "report.html",
        {"t": i18n.TEXT[lang], "lang": lang, "other_lang": other, **context},
        status_code=status)
    response.headers["Vary"] = "Accept-Language"
    response.headers["Content-Language"] = lang
    return response


async def show_form(request: Request) -> Response:
    """GET / and GET /report."""
    lang = i18n.choose(request.query_params.get("lang"),
                       request.headers.get("accept-language"))
    return _page(request, lang)


async def submit_form(request: Request) -> Response:
    """POST /report (application/x-www-form-urlencoded)."""
    st = state(request)
    body = await read_body(request, st.settings.max_report_bytes)
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    chosen = fields["lang"][0] if fields.get("lang") else request.query_params.get("lang")
    lang = i18n.choose(chosen,
                       request.headers.get("accept-language"))
    url = (fields.get("url") or [""])[0]
    html = wants_html(request)
    try:
        await submit_anonymous(st, url)
    except InputError as exc:
        if not html:
            raise Problem("invalid-url", exc.message, field="url") from exc
        return _page(request, lang, status=422, url=url[:8192],
                     error=i18n.TEXT[lang][i18n.error_key(exc.message)],
                     reason=exc.message)
    except Problem as problem:
        if problem.kind != "rate-limited" or not html:
            raise
        key = "rate_limited" if problem.extra.get("limit") == "url" else "busy"
        response = _page(request, lang, status=429, url=url[:8192],
                         error=i18n.TEXT[lang][key])
        response.headers["Retry-After"] = problem.headers.get("Retry-After", "60")
        return response
    if not html:
        return Response('{"received":true}', status_code=202, media_type="application/json")
    return _page(request, lang, thanks=True)


def routes() -> list[Route]:
    """The public form routes."""
    return [Route("/", show_form, methods=["GET"]),
            Route("/report", show_form, methods=["GET"]),
            Route("/report", submit_form, methods=["POST"])]

