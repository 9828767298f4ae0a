"""Schemathesis against the served OpenAPI description: no input may cause a server error.

Every operation gets ~20 generated examples (valid and invalid per the schema), sent with an
analyst's token through the ASGI app. The check is "no 5xx"; the API tests pin exact statuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from engine.runtime import Runtime  # noqa: E402
from engine.web import WebSettings, create_app  # noqa: E402
from engine.web.accounts import accounts  # noqa: E402
from engine.web.auth import new_token  # noqa: E402
from engine.web.intake_web import submit_webform  # noqa: E402
from engine.web.openapi import spec  # noqa: E402

HEADERS: dict[str, str] = {}


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """Batch bodies are text: send generated strings as they are."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else b""


class CurrentApp:
    """ASGI app that forwards to the app of the running test (the schema is built at import)."""

    target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


APP = CurrentApp()
# from_dict at import plus a forwarding app: schemathesis' fixture-based lazy loading does not
# work with pytest 9 (it reads a private node attribute).
schema = schemathesis.openapi.from_dict(spec())
schema.app = APP


@pytest.fixture(autouse=True)
def app_under_test(tmp_path: Path) -> Iterator[None]:
    rt = Runtime.open(db=str(tmp_path / "ntd.db"))
    APP.target = create_app(rt, WebSettings(secret=b"k" * 32))
    acc = accounts(rt.store)
    uid = acc.add_user(name="alice", password_hash="$argon2id$unused", role="analyst",
                       country=None, now=rt.clock.now_text())
    token, digest = new_token()
    acc.add_token(user_id=uid, token_hash=digest, now=rt.clock.now_text())
    HEADERS["Authorization"] = f"Bearer {token}"
    # A few cases so reads and verdicts have something to find.
    for i in range(3):
        case_id = submit_webform(rt.store, f"http://seed-{i}.example.test/", rt.clock).case_id
        rt.store.transition(case_id, state="awaiting_assessment", stage="test", actor="test",
                            action="setup", now=rt.clock.now_text())
    try:
        yield
    finally:
        APP.target = None
        rt.close()


@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])
