"""JSON Schema (draft 2020-12) of the X-ARF v4 ``content``/``csam`` reports ntd sends.

Written from the X-ARF v4.0.0 specification (core fields, the content-category base and the csam
type merged into one self-contained schema), plus ntd's one extension: ``classification`` may be
``national``. Tests validate every report against it; ``validate_report`` needs ``jsonschema``.
"""

from __future__ import annotations

from typing import Any

_CONTACT = {
    "type": "object",
    "required": ["org", "contact", "domain"],
    "properties": {
        "org": {"type": "string", "maxLength": 200},
        "contact": {"type": "string", "format": "email"},
        "domain": {"type": "string", "format": "hostname"},
    },
    "additionalProperties": False,
}

XARF_CSAM_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://ntd.invalid/schemas/xarf-v4-content-csam.json",
    "title": "X-ARF v4 content/csam report as sent by ntd",
    "type": "object",
    "required": ["xarf_version", "report_id", "timestamp", "reporter", "sender",
                 "source_identifier", "category", "type", "url", "classification",
                 "detection_method"],
    "properties": {
        "xarf_version": {"type": "string", "pattern": r"^4\.[0-9]+\.[0-9]+$"},
        "report_id": {"type": "string", "format": "uuid"},
        "timestamp": {"type": "string", "format": "date-time"},
        "reporter": _CONTACT,
        "sender": _CONTACT,
        "source_identifier": {"type": "string", "minLength": 1},
        "source_port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "category": {"const": "content"},
        "type": {"const": "csam"},
        "evidence_source": {"type": "string"},
        "evidence": {"type": "array", "maxItems": 50},
        "tags": {"type": "array", "maxItems": 20,
                 "items": {"type": "string",
                           "pattern": r"^[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+\-.]*$"}},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "description": {"type": "string", "maxLength": 1000},
        "url": {"type": "string", "format": "uri", "minLength": 1},
        "domain": {"type": "string", "format": "hostname"},
        "registrar": {"type": "string"},
        "asn": {"type": "integer", "minimum": 1, "maximum": 4294967295},
        "country_code": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "classification": {"enum": ["baseline", "A1", "A2", "B1", "B2", "national"]},
        "media_type": {"enum": ["image", "video", "audio", "text", "mixed"]},
        "detection_method": {"enum": ["hash_match", "ai_detection", "manual_review",
                                      "user_report", "automated_scan"]},
        "hash_values": {
            "type": "object",
            "properties": {
                "md5": {"type": "string", "pattern": "^[a-fA-F0-9]{32}$"},
                "sha1": {"type": "string", "pattern": "^[a-fA-F0-9]{40}$"},
                "sha256": {"type": "string", "pattern": "^[a-fA-F0-9]{64}$"},
                "photodna": {"type": "string"},
            },
        },
        "content_removed": {"type": "boolean"},
        "account_suspended": {"type": "boolean"},
    },
    "additionalProperties": True,
}


def validate_report(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``report`` does not fit the schema."""
    import jsonschema  # deferred: heavy dependency, loaded on first use

    validator = jsonschema.Draft202012Validator(
        XARF_CSAM_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(report)
