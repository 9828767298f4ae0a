"""Assembly of the ASGI app: settings, shared state, routes, middleware, error handlers."""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

import engine.web.api as api
import engine.web.approvals as approvals
import engine.web.console as console
import engine.web.form as form
import engine.web.police as police
import engine.web.workbench_web as workbench_web
from engine.intake_sources import IntakeDesk
from engine.plugin_manager import call_all_sync, implementations
from engine.web.deps import (
    HERE,
    WebSettings,
    WebState,
    state,
    wants_html,
)
from engine.web.problems import (
    Problem,
    handle_http,
    handle_problem,
    handle_server_error,
    problem_body,
)
from engine.web.security import DropClientAddress, SecurityHeaders

log = logging.getLogger("ntd.web")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api") and wants_html(request):
        body = problem_body("not-found" if exc.status_code == 404 else "bad-request",
                            str(exc.detail), request.url.path)
        body["status"] = exc.status_code
        return state(request).templates.TemplateResponse(
            request, "error.html", {"problem": body}, status_code=exc.status_code)
    return await handle_http(request, exc)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    if not request.url.path.startswith("/api") and wants_html(request):
        body = problem_body(exc.kind, exc.detail, request.url.path, **exc.extra)
        return state(request).templates.TemplateResponse(
            request, "error.html", {"problem": body}, status_code=exc.status,
            headers=exc.headers or None)
    return await handle_problem(request, exc)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s: %s", request.method, request.url.path,
              type(exc).__name__)
    return await handle_server_error(request, exc)


def intake_routes(runtime: Any) -> list[Any]:
    """Webhook routes of intake sources (``web_routes(desk)``, e.g. the Telegram bot in
    ``webhook`` mode under ``/intake/telegram/<secret>``). Sources offered for the web must be
    returned synchronously by ``ntd_intake_sources``; the hand-ins run on a context of their
    own (its database thread and CPU pool)."""
    pm = getattr(runtime, "pm", None)
    if pm is None or not implementations(pm, "ntd_intake_sources"):
        return []
    ctx = runtime.context()
    routes: list[Any] = []
    for answer, _ in call_all_sync(pm, "ntd_intake_sources", ctx=ctx):
        for source in answer if isinstance(answer, list) else ():
            make = getattr(source, "web_routes", None)
            if callable(make):
                routes += make(IntakeDesk(ctx, source.name))
    return routes


def create_app(runtime: Any, settings: WebSettings | None = None) -> Starlette:
    """The ASGI app on an opened ``Runtime`` (its store must have migration 7)."""
    settings = settings or WebSettings()
    routes = [*form.routes(), *workbench_web.routes(), *api.routes(), *console.routes(),
              *police.routes(), *approvals.routes(), *intake_routes(runtime),
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(DropClientAddress),
                    Middleware(SecurityHeaders, https=settings.https)],
        exception_handlers={Problem: _problem, HTTPException: _http_error,
                            Exception: _server_error},
    )
    app.state.ntd = WebState(runtime, settings)
    return app
