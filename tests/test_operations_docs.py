"""docs/operations.md: the systemd and cron examples are real command lines (issue 21, item 7).

Every ``ExecStart=`` of the systemd block and every command of the crontab block is run through
``sh`` — with the unit's ``Environment=`` lines or the crontab's variables, and the install
paths replaced by a temporary folder — first against a database made by ``ntd db migrate`` that
holds a few cases (exit 0, JSON on stdout), then where there is no database (exit 2, "no
database at", nothing created).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "operations.md"
SECONDS = 240  # a safety net on a loaded machine, not a measurement


def _block(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {name} -->\s*```\w+\n(.*?)```\s*<!-- /{name} -->", text, re.S)
    assert found, f"docs/operations.md has no {name} block"
    return found.group(1)


def systemd_jobs() -> list[tuple[dict[str, str], str]]:
    """(environment, command) of every ExecStart= in the systemd block."""
    jobs: list[tuple[dict[str, str], str]] = []
    env: dict[str, str] = {}
    for line in _block("operations-systemd").splitlines():
        line = line.strip()
        if line.startswith("# /etc/systemd/"):
            env = {}  # a new unit file
        elif line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
        elif line.startswith("ExecStart="):
            jobs.append((dict(env), line.removeprefix("ExecStart=")))
    return jobs


def cron_jobs() -> list[tuple[dict[str, str], str]]:
    """(environment, command) of every crontab line (after its five time fields)."""
    env: dict[str, str] = {}
    jobs: list[tuple[dict[str, str], str]] = []
    for line in _block("operations-cron").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        variable = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", line)
        if variable:
            env[variable[1]] = variable[2]
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a crontab line: {line}"
        jobs.append((dict(env), fields[5]))
    return jobs


def local(text: str, tmp: Path) -> str:
    """The documented paths replaced by the test's interpreter and folder."""
    ntd = shlex.quote(str(Path(sys.executable).parent / "ntd"))
    return (text.replace("/opt/ntd/.venv/bin/ntd", ntd)
            .replace("/etc/ntd/ntd.toml", str(tmp / "etc" / "ntd.toml"))
            .replace("/var/lib/ntd", str(tmp / "lib"))
            .replace("/var/log/ntd", str(tmp / "log")))


def prepare(tmp: Path) -> dict[str, str]:
    for sub in ("etc", "lib", "log"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    # The lab host map points the cases at loopback, which the fetcher refuses without the lab
    # switch: the pipeline has work and nothing leaves the machine (not even a DNS query).
    (tmp / "etc" / "ntd.toml").write_text(
        '[resolve.hosts]\n"ops.example.test" = "127.0.0.1"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTD_")}
    env["NTD_MASTER_KEY_FILE"] = str(tmp / "lib" / "master.key")
    return env


def run(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=SECONDS)


def test_operations_doc_has_every_scheduled_job() -> None:
    for jobs in (systemd_jobs(), cron_jobs()):
        commands = " | ".join(c for _, c in jobs)
        for needed in ("run --until-idle", "recheck --due", "notices send", "purge"):
            assert needed in commands, needed
        assert all("--db /var/lib/ntd/ntd.db" in c for _, c in jobs)


@pytest.mark.parametrize("jobs", [systemd_jobs(), cron_jobs()], ids=["systemd", "cron"])
def test_operations_examples_run(tmp_path: Path, jobs: list[tuple[dict[str, str], str]]) -> None:
    if shutil.which("flock") is None and any("flock" in c for _, c in jobs):
        pytest.skip("flock (util-linux) is not installed")
    base = prepare(tmp_path)
    ntd = str(Path(sys.executable).parent / "ntd")
    db = tmp_path / "lib" / "ntd.db"
    migrate = subprocess.run([ntd, "--db", str(db), "db", "migrate"], env=base,
                             capture_output=True, text=True, timeout=SECONDS)
    assert migrate.returncode == 0, migrate.stderr
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"http://ops.example.test/p/{i}.jpg\n" for i in range(3)))
    submit = subprocess.run([ntd, "--db", str(db), "--config", str(tmp_path / "etc/ntd.toml"),
                             "submit", str(urls)], env=base, capture_output=True, text=True,
                            timeout=SECONDS)
    assert submit.returncode == 0, submit.stderr
    for env, command in jobs:
        done = run(local(command, tmp_path), {**base, **{k: local(v, tmp_path)
                                                          for k, v in env.items()}}, tmp_path)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        logged = re.search(r">>? *(\S+)\s*$", local(command, tmp_path))
        output = Path(logged[1]).read_text() if logged else done.stdout
        assert isinstance(json.loads(output), dict | list), command  # one JSON document
    # The pipeline really ran: the cases moved on from `new`.
    status = subprocess.run([ntd, "--db", str(db), "status", "--json"], env=base,
                            capture_output=True, text=True, timeout=SECONDS)
    assert json.loads(status.stdout)["by_state"].get("new", 0) == 0


@pytest.mark.parametrize("jobs", [systemd_jobs(), cron_jobs()], ids=["systemd", "cron"])
def test_operations_examples_refuse_a_missing_database(
        tmp_path: Path, jobs: list[tuple[dict[str, str], str]]) -> None:
    if shutil.which("flock") is None and any("flock" in c for _, c in jobs):
        pytest.skip("flock (util-linux) is not installed")
    base = prepare(tmp_path)
    for env, command in jobs:
        done = run(local(command, tmp_path), {**base, **{k: local(v, tmp_path)
                                                          for k, v in env.items()}}, tmp_path)
        assert done.returncode == 2, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "no database at" in done.stderr
    assert not (tmp_path / "lib" / "ntd.db").exists()
    assert not list(tmp_path.glob("*.db"))
