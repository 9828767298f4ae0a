"""RFC 9457 problem details: every API error is ``application/problem+json``.

A body has ``type`` (a URN naming the kind of problem, listed in docs/web.md), ``title`` (same for
every occurrence of the type), ``status``, ``detail`` (this occurrence, in words) and
``instance`` (the request path; never the query, which may hold submitted input).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

MEDIA_TYPE = "application/problem+json"
PREFIX = "urn:ntd:problem:"

# slug -> (status, title)
KINDS: dict[str, tuple[int, str]] = {
    "bad-request": (400, "The request is malformed"),
    "invalid-url": (422, "The URL cannot be accepted"),
    "invalid-input": (422, "The input is invalid"),
    "unauthorized": (401, "Authentication required"),
    "forbidden": (403, "Not allowed for this account"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "not-acceptable": (406, "Not acceptable"),
    "conflict": (409, "The case is not in a state that allows this"),
    "content-changed": (409, "The content changed since it was hashed"),
    "content-offline": (410, "The content is no longer online"),
    "not-an-image": (422, "The item is not an image that can be shown safely"),
    "too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Unsupported content type"),
    "rate-limited": (429, "Too many requests"),
    "storage-unavailable": (503, "The store is unavailable"),
    "server-error": (500, "Internal server error"),
}
_BY_STATUS = {status: slug for slug, (status, _) in KINDS.items()
              if slug not in ("invalid-url", "invalid-input", "content-changed", "not-an-image")}


class Problem(Exception):
    """Raise to answer with a problem body; ``extra`` adds members (e.g. ``errors``)."""

    def __init__(self, kind: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.kind = kind
        self.status = KINDS[kind][0]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_body(kind: str, detail: str, instance: str, **extra: Any) -> dict[str, Any]:
    """The JSON object of a problem."""
    status, title = KINDS[kind]
    return {"type": PREFIX + kind, "title": title, "status": status, "detail": detail,
            "instance": instance, **extra}


def problem_response(request: Request, kind: str, detail: str, *,
                     headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """A ``Response`` carrying a problem body."""
    body = problem_body(kind, detail, request.url.path, **extra)
    return Response(json.dumps(body, ensure_ascii=False), status_code=body["status"],
                    media_type=MEDIA_TYPE, headers=headers)


async def handle_problem(request: Request, exc: Exception) -> Response:
    """Exception handler for ``Problem``."""
    assert isinstance(exc, Problem)
    return problem_response(request, exc.kind, exc.detail, headers=exc.headers, **exc.extra)


async def handle_http(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405/... as problems."""
    assert isinstance(exc, HTTPException)
    kind = _BY_STATUS.get(exc.status_code)
    if kind is None:
        kind = "bad-request" if exc.status_code < 500 else "server-error"
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404:
        detail = f"nothing at {request.url.path}"
    body = problem_body(kind, detail, request.url.path)
    body["status"] = exc.status_code
    return Response(json.dumps(body), status_code=exc.status_code, media_type=MEDIA_TYPE,
                    headers=dict(exc.headers or {}))


async def handle_server_error(request: Request, exc: Exception) -> Response:
    """Unexpected errors: a problem body without internals (they go to the log, not the client)."""
    return problem_response(request, "server-error",
                            "an unexpected error occurred; it has been logged")
