"""Validation of ntd's X-ARF reports against the official X-ARF v4 schemas, formats checked.

The schemas are the ones the PyPI package ``xarf`` ships (``xarf/schemas``: byte-for-byte
``schemas/v4`` of the official ``xarf/xarf-spec`` repository, MIT licence), loaded through a
``referencing`` registry so their relative ``$ref``s resolve offline. A report is checked
against ``types/content-csam.json`` (which includes ``content-base.json`` and
``xarf-core.json``) and against ``xarf-v4-master.json``, with jsonschema's format checker: the
``uri``, ``email``, ``hostname``, ``date-time``, ``uuid``, ``ipv4`` and ``ipv6`` formats are
enforced (they need ``jsonschema[format]``; :func:`format_checker` refuses to run without them
rather than silently accept ``url: "not a uri"``).

``xarf`` and ``jsonschema[format]`` are test dependencies: nothing at run time needs this.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

CSAM_SCHEMA = "https://xarf.org/schemas/v4/types/content-csam.json"
MASTER_SCHEMA = "https://xarf.org/schemas/v4/xarf-v4-master.json"
# Formats the X-ARF schemas use that must really be checked (jsonschema skips a format whose
# checker library is missing).
REQUIRED_FORMATS = ("uri", "email", "hostname", "date-time", "uuid", "ipv4", "ipv6")


@functools.cache
def _registry() -> Any:
    import referencing  # deferred: test-only dependency (jsonschema)

    root = resources.files("xarf") / "schemas"
    resources_list = []
    for path in [root / "xarf-core.json", root / "xarf-v4-master.json",
                 *sorted((root / "types").iterdir(), key=lambda p: p.name)]:
        if path.name.endswith(".json"):
            doc = json.loads(path.read_text(encoding="utf-8"))
            resources_list.append((doc["$id"], referencing.Resource.from_contents(doc)))
    return referencing.Registry().with_resources(resources_list)


def format_checker() -> Any:
    """jsonschema's draft 2020-12 format checker, after making sure every format the X-ARF
    schemas use has a real checker installed."""
    import jsonschema  # deferred: test-only dependency

    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    missing = [f for f in REQUIRED_FORMATS if f not in checker.checkers]
    if missing:
        raise RuntimeError(f"jsonschema cannot check the formats {missing}: install "
                           "jsonschema[format]")
    return checker


def official_schema(uri: str = CSAM_SCHEMA) -> dict[str, Any]:
    """One official schema document by its ``$id``."""
    contents = _registry().contents(uri)
    assert isinstance(contents, dict)  # noqa: S101
    return contents


@functools.cache
def _validators() -> tuple[Any, ...]:
    import jsonschema  # deferred: test-only dependency

    checker = format_checker()
    return tuple(jsonschema.Draft202012Validator(official_schema(uri), registry=_registry(),
                                                 format_checker=checker)
                 for uri in (CSAM_SCHEMA, MASTER_SCHEMA))


def validate_report(report: dict[str, Any], *, master: bool = True) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``report`` is a valid X-ARF 4 content/csam
    report: the official csam type schema (with the content base and core schemas it
    includes), and with ``master`` also the master schema's category/type check (five times
    slower: it tries every type), formats checked."""
    csam, whole = _validators()
    csam.validate(report)
    if master:
        whole.validate(report)
