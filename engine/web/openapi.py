"""The OpenAPI 3.1 description of the JSON API (hand-written; served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from engine.models import STATES
from engine.store.roles import NOTICE_STATES

_PROBLEM = {"$ref": "#/components/responses/Problem"}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _PROBLEM for code in codes}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                "At most this many rows.")
_CASE_ID = {"name": "case_id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "Case id (``C`` + 16 characters)."}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def spec() -> dict[str, Any]:
    """The OpenAPI document."""
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {"title": "ntd API", "version": "1",
                 "description": "Notice-and-takedown engine: reports, cases, assessment, "
                                "notices and statistics. Errors are RFC 9457 problems."},
        "servers": [{"url": "/"}],
        "security": _AUTH,
        "paths": {
            "/healthz": {"get": {
                "operationId": "healthz", "summary": "Liveness: the store answers.",
                "security": [],
                "responses": {"200": _ok(ref("Health")), **_errors(503)}}},
            "/api/reports": {"post": {
                "operationId": "postReport",
                "summary": "Report one URL anonymously (web-form channel).",
                "description": "Nothing about the reporter is stored. Rate limited per "
                               "submitted URL and for the channel as a whole (429).",
                "security": [],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref("ReportIn")},
                    "application/x-www-form-urlencoded": {"schema": ref("ReportIn")}}},
                "responses": {"202": _ok(ref("Received"), "Received"),
                              **_errors(400, 413, 415, 422, 429, 503)}}},
            "/api/batches": {"post": {
                "operationId": "postBatch",
                "summary": "Upload a batch of URLs (same validation as `ntd submit`).",
                "parameters": [_query("channel", {"type": "string",
                                                  "enum": ["analyst", "partner"]},
                                      "Where the reports came from (default analyst).")],
                "requestBody": {"required": True, "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "array", "items": {
                        "oneOf": [{"type": "string"}, {"type": "object"}]}}}}},
                "responses": {"201": _ok(ref("SubmitResult"), "Stored (rejected lines listed)"),
                              **_errors(401, 403, 413, 415, 422, 503)}}},
            "/api/cases": {"get": {
                "operationId": "listCases", "summary": "Cases, oldest first.",
                "parameters": [_query("state", {"type": "string", "enum": list(STATES)},
                                      "Only cases in this state."),
                               _LIMIT,
                               _query("offset", {"type": "integer", "minimum": 0},
                                      "Skip this many.")],
                "responses": {"200": _ok(ref("CaseList")), **_errors(401, 422)}}},
            "/api/cases/{case_id}": {"get": {
                "operationId": "getCase",
                "summary": "One case with its trail (the view is audited).",
                "parameters": [_CASE_ID],
                "responses": {"200": _ok(ref("Case")), **_errors(401, 404)}}},
            "/api/cases/{case_id}/verdict": {"post": {
                "operationId": "postVerdict",
                "summary": "Record an analyst's verdict on a case awaiting assessment.",
                "parameters": [_CASE_ID],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref("VerdictIn")}}},
                "responses": {"200": _ok(ref("VerdictOut")),
                              **_errors(400, 401, 403, 404, 409, 415, 422)}}},
            "/api/queue": {"get": {
                "operationId": "getQueue",
                "summary": "Cases awaiting assessment: oldest first, or in groups (`group`).",
                "parameters": [
                    _query("group", {"type": "string", "enum": ["sha256", "pdq"]},
                           "Byte-identical (sha256) or near-identical (pdq) groups."),
                    _LIMIT, _query("offset", {"type": "integer", "minimum": 0},
                                   "Skip this many groups."),
                    _query("channel", {"type": "string", "maxLength": 64},
                           "Only cases first reported on this channel."),
                    _query("list", {"type": "string", "maxLength": 64},
                           "Only cases with a (non-deciding) match on this list."),
                    _query("age", {"type": "string", "enum": ["1h", "24h", "7d"]},
                           "Only cases waiting at least this long."),
                    _query("sort", {"type": "string", "enum": ["oldest", "largest"]},
                           "Oldest group first, or largest.")],
                "responses": {"200": _ok({"oneOf": [ref("CaseList"), ref("GroupPage")]}),
                              **_errors(401, 403, 422)}}},
            "/api/cases/{case_id}/items/{n}/preview": {"get": {
                "operationId": "getPreview",
                "summary": "The safe viewer: item n re-fetched live, checked, downscaled, "
                           "blurred and greyscale by default; a fresh JPEG (audited).",
                "parameters": [_CASE_ID,
                               {"name": "n", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 0}},
                               _query("max", {"type": "integer", "enum": [256, 512]},
                                      "Longest side (default 256)."),
                               _query("blur", {"type": "integer", "minimum": 0,
                                               "maximum": 100},
                                      "Blur level (default: the account's; 0 = reveal)."),
                               _query("grey", {"type": "integer", "enum": [0, 1]},
                                      "Greyscale (default: the account's).")],
                "responses": {"200": {"description": "JPEG",
                                      "content": {"image/jpeg": {"schema": {
                                          "type": "string", "format": "binary"}}}},
                              **_errors(401, 403, 404, 409, 410, 422, 429)}}},
            "/api/verdicts": {"post": {
                "operationId": "postVerdicts",
                "summary": "One verdict for many cases (`cases` or `group`), one transaction.",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref("VerdictsIn")}}},
                "responses": {"200": _ok(ref("VerdictsOut")),
                              **_errors(400, 401, 403, 404, 413, 415, 422)}}},
            "/api/cases/{case_id}/verdict/undo": {"post": {
                "operationId": "undoVerdict",
                "summary": "Undo the last verdict within [assessment] undo_minutes.",
                "parameters": [_CASE_ID],
                "responses": {"200": _ok({"type": "object"}), **_errors(401, 403, 404, 409)}}},
            "/api/disputed": {"get": {
                "operationId": "getDisputed",
                "summary": "Verdicts two analysts disagreed on (admins decide).",
                "responses": {"200": _ok({"type": "object"}), **_errors(401, 403)}}},
            "/api/settings": {
                "get": {"operationId": "getSettings",
                        "summary": "This account's wellbeing settings.",
                        "responses": {"200": _ok(ref("Settings")), **_errors(401, 403)}},
                "put": {"operationId": "putSettings",
                        "summary": "Change this account's wellbeing settings.",
                        "requestBody": {"required": True, "content": {
                            "application/json": {"schema": ref("Settings")}}},
                        "responses": {"200": _ok(ref("Settings")),
                                      **_errors(400, 401, 403, 413, 415, 422)}}},
            "/api/notices": {"get": {
                "operationId": "listNotices", "summary": "Notices with delivery state.",
                "parameters": [_query("state", {"type": "string",
                                                "enum": list(NOTICE_STATES)},
                                      "Only notices in this state."), _LIMIT],
                "responses": {"200": _ok(ref("NoticeList")), **_errors(401, 403, 422)}}},
            "/api/stats": {"get": {
                "operationId": "getStats",
                "summary": "Anonymised statistics (as `ntd stats --json`).",
                "parameters": [_query("from", {"type": "string", "format": "date"},
                                      "First day, YYYY-MM-DD."),
                               _query("to", {"type": "string", "format": "date"},
                                      "Last day, YYYY-MM-DD.")],
                "responses": {"200": _ok({"type": "object"}), **_errors(401, 422)}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "ntd users token NAME"}},
            "responses": {"Problem": {
                "description": "RFC 9457 problem",
                "content": {"application/problem+json": {"schema": ref("Problem")}}}},
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status"],
                            "properties": {"type": {"type": "string"},
                                           "title": {"type": "string"},
                                           "status": {"type": "integer"},
                                           "detail": {"type": "string"},
                                           "instance": {"type": "string"},
                                           "rejected": {
                                               "type": "array", "items": ref("Rejection"),
                                               "description": "POST /api/batches when no "
                                                              "line could be stored"}}},
                "Health": {"type": "object", "required": ["status"],
                           "properties": {"status": {"const": "ok"},
                                          "schema_version": {"type": "integer"}}},
                "ReportIn": {"type": "object", "required": ["url"],
                             "properties": {"url": {"type": "string", "maxLength": 8192,
                                                    "description": "http(s) URL"}}},
                "Received": {"type": "object", "required": ["received"],
                             "properties": {"received": {"const": True}}},
                "SubmitResult": {
                    "type": "object",
                    "required": ["accepted", "duplicates", "rejected", "batch"],
                    "properties": {
                        "accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
                        "batch": {"type": "string"},
                        "rejected": {"type": "array", "items": ref("Rejection")}}},
                "Rejection": {"type": "object", "required": ["line", "input", "reason"],
                              "properties": {"line": {"type": "integer"},
                                             "input": {"type": "string"},
                                             "reason": {"type": "string"}}},
                "Case": {"type": "object", "required": ["id", "state", "canonical_url"],
                         "properties": {"id": {"type": "string"},
                                        "state": {"type": "string", "enum": list(STATES)},
                                        "canonical_url": {"type": "string"},
                                        "domain": {"type": "string"},
                                        "items": {"type": "array"},
                                        "reports": {"type": "array"},
                                        "events": {"type": "array"},
                                        "routes": {"type": "array"},
                                        "resolution": {"type": "object"}}},
                "CaseList": {"type": "object", "required": ["cases"],
                             "properties": {"cases": {"type": "array", "items": ref("Case")},
                                            "limit": {"type": "integer"},
                                            "offset": {"type": "integer"}}},
                "VerdictIn": {"type": "object", "required": ["verdict"],
                              "additionalProperties": False,
                              "properties": {
                                  "verdict": {"type": "string",
                                              "enum": ["illegal", "not_illegal", "ignore"]},
                                  "category": {"type": ["string", "null"], "maxLength": 64},
                                  "classification": ref("Classification"),
                                  "answers": {"type": "object"},
                                  "note": {"type": ["string", "null"], "maxLength": 2000},
                                  "learn": {"type": "boolean", "default": False}}},
                "Classification": {
                    "type": "object", "additionalProperties": False,
                    "required": ["class", "age", "gender", "virtual", "user_generated",
                                 "child_modelling"],
                    "properties": {
                        "class": {"type": "string", "enum": ["baseline", "national",
                                                             "doubtful"]},
                        "age": {"type": "string", "enum": ["ND", "IN", "PP", "PU"]},
                        "gender": {"type": "string", "enum": ["UN", "FE", "MA", "BO"]},
                        "virtual": {"type": "boolean"}, "user_generated": {"type": "boolean"},
                        "child_modelling": {"type": "boolean"}}},
                "VerdictsIn": {
                    "type": "object", "required": ["verdict"], "additionalProperties": False,
                    "properties": {
                        "cases": {"type": "array", "items": {"type": "string"}},
                        "group": {"type": "string"},
                        "verdict": {"type": "string",
                                    "enum": ["illegal", "not_illegal", "ignore"]},
                        "classification": ref("Classification"),
                        "answers": {"type": "object"},
                        "learn": {"type": "boolean", "default": False},
                        "note": {"type": ["string", "null"], "maxLength": 2000}}},
                "VerdictsOut": {
                    "type": "object", "required": ["recorded", "skipped"],
                    "properties": {"recorded": {"type": "integer"},
                                   "skipped": {"type": "array", "items": {"type": "object"}},
                                   "pending": {"type": "array"},
                                   "disputed": {"type": "array"},
                                   "rematched": {"type": "integer"}}},
                "GroupPage": {
                    "type": "object", "required": ["groups", "total_cases", "total_groups"],
                    "properties": {"groups": {"type": "array", "items": {
                        "type": "object",
                        "required": ["key", "kind", "count", "cases", "sample", "nearest"]}},
                        "total_cases": {"type": "integer"},
                        "total_groups": {"type": "integer"}}},
                "Settings": {"type": "object", "additionalProperties": False, "properties": {
                    "blur": {"type": "integer", "minimum": 0, "maximum": 100},
                    "grey": {"type": "boolean"},
                    "break_minutes": {"type": "integer", "minimum": 0, "maximum": 600}}},
                "VerdictOut": {"type": "object",
                               "required": ["id", "state", "verdict", "actor"],
                               "properties": {"id": {"type": "string"},
                                              "state": {"type": "string"},
                                              "verdict": {"type": "string"},
                                              "actor": {"type": "string"}}},
                "NoticeList": {"type": "object", "required": ["notices"],
                               "properties": {"notices": {"type": "array",
                                                          "items": {"type": "object"}},
                                              "counts": {"type": "object"}}},
            },
        },
    }
