"""PostgreSQL test helper: a fresh schema per test on the server named by NTD_TEST_POSTGRES_URL.

Tests that need PostgreSQL use the ``pg_url`` fixture (import it into the test module). When no
server is reachable they are skipped with the reason — unless ``NTD_REQUIRE_POSTGRES=1`` (CI on
the project machine), where a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import quote

import pytest

URL_ENV = "NTD_TEST_POSTGRES_URL"
REQUIRE_ENV = "NTD_REQUIRE_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    """The test server's URL (``NTD_TEST_POSTGRES_URL`` or the local default)."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


@lru_cache(maxsize=4)
def _unavailable(url: str) -> str | None:
    """Why the server can't be used (None when it can)."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {url.split('@')[-1]}: {exc}".strip()
    return None


def require_postgres() -> str:
    """The server URL, or skip (fail when ``NTD_REQUIRE_POSTGRES=1``) when it is unusable."""
    url = server_url()
    reason = _unavailable(url)
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(f"{reason} (set {URL_ENV} to run the PostgreSQL tests)")
    return url


def with_search_path(url: str, schema: str) -> str:
    """``url`` with ``options=-csearch_path=<schema>`` so every connection lands in ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh, empty schema (dropped afterwards)."""
    import psycopg

    base = require_postgres()
    schema = f"ntd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
