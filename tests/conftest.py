"""Shared fixtures: temporary databases, the ntd CLI as a subprocess, fixture plugin paths."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_PKG = ROOT / "tests" / "plugins" / "ep_pkg"
BAD_PKG = ROOT / "tests" / "plugins" / "bad_pkg"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's ntd.toml, database or fake clock."""
    for var in ("NTD_CONFIG", "NTD_DATABASE_URL", "NTD_DISABLE_PLUGINS", "NTD_FAKE_NOW"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


# Every X-ARF report any test builds in this process is validated against the official X-ARF
# v4 schemas with format checking (plugins/notify/xarf_schema.py), after the test: a report
# that does not conform fails the test that built it. (Bounded per test: the end-to-end
# benchmarks build thousands of identical-shaped reports.)
XARF_VALIDATE_PER_TEST = 200


@pytest.fixture(autouse=True)
def _xarf_reports_conform(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    import plugins.notify.xarf as xarf

    built: list[dict[str, Any]] = []
    original = xarf._report

    def recording(*args: Any, **kwargs: Any) -> dict[str, Any]:
        report = original(*args, **kwargs)
        if len(built) < XARF_VALIDATE_PER_TEST:
            built.append(copy.deepcopy(report))  # as built (a test may break it on purpose)
        return report

    monkeypatch.setattr(xarf, "_report", recording)
    yield built
    if built:
        from plugins.notify.xarf_schema import validate_report

        for report in built:
            validate_report(report, master=False)  # (test_xarf.py checks the master too)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ntd.db"


@pytest.fixture
def pki(tmp_path: Path) -> object:
    """ICCAM tests: a CA, the fake's server context and the hotline's client certificate."""
    from tests.iccam_lab import make_pki

    return make_pki(tmp_path / "pki")


@pytest.fixture
def iccam_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICCAM tests: the API user's password in the environment, as in production."""
    from tests.iccam_lab import PASSWORD, PASSWORD_ENV

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


def ntd_env(extra_path: Path | None = None, **env: str) -> dict[str, str]:
    """Environment for a child ``ntd`` process, optionally with a fixture plugin package."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("NTD_")}
    paths = [str(ROOT)]
    if extra_path:
        paths.insert(0, str(extra_path))
    out["PYTHONPATH"] = os.pathsep.join(paths)
    out.update(env)
    return out


def run_ntd(*args: str, db: Path | None = None, input: str | None = None,
            plugins: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``ntd`` in a child process and return the completed process."""
    cmd = [sys.executable, "-m", "engine.cli"]
    if db is not None:
        cmd += ["--db", str(db)]
    cmd += list(args)
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                          env=ntd_env(plugins, **(env or {})), check=False)


def ntd_json(*args: str, **kwargs: object) -> object:
    """Run ``ntd ... --json`` and parse its output (asserting success)."""
    proc = run_ntd(*args, "--json", **kwargs)  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_for(predicate: Callable[[], bool], *, timeout: float = 30.0,
             interval: float = 0.02) -> None:
    """Poll ``predicate`` until it is true or the deadline passes (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
