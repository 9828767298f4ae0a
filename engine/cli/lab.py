"""``ntd lab``: the operator's lab — the loopback world as a background process (docs/lab.md).

``ntd lab up`` starts ``engine.lab.daemon`` detached (its own session, output in
``.ntd-lab/lab.log``), waits until it has written ``lab.json`` and prints the endpoints;
``ntd lab down`` stops it by its pid file and removes what ``up`` wrote (the log stays).
``env``, ``mail``, ``takedown`` and ``status`` work on the running lab.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from engine.cli.common import JSON_OPT, emit_json
from engine.cli.root import cli
from engine.errors import InputError, NtdError
from engine.lab.files import (
    INFO_FILE,
    LOG_FILE,
    PASSWORD_ENV,
    PID_FILE,
    PUBLIC_FILES,
    state_dir,
)

START_SECONDS = 60.0  # generating images and certificates on a busy 2-core machine
STOP_SECONDS = 15.0
DIR_OPT = click.option("--dir", "folder", type=click.Path(file_okay=False), default=".",
                       show_default=True, help="Folder of the lab's files.")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running lab process (not a zombie, not a reused pid)."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():  # Linux: look closer than kill(0) can
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        return stat.rpartition(")")[2].split()[0] != "Z" and b"engine.lab.daemon" in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid(folder: Path) -> int | None:
    try:
        return int((state_dir(folder) / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _info(folder: Path) -> dict[str, Any]:
    """``lab.json`` of the running lab in ``folder`` (InputError when none runs)."""
    pid = _pid(folder)
    try:
        info = json.loads((state_dir(folder) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    if info is None or pid is None or not _alive(pid):
        raise InputError(f"no lab runs in {folder.resolve()} (start one with: ntd lab up)")
    return info  # type: ignore[no-any-return]


def _public(info: dict[str, Any]) -> dict[str, Any]:
    """The endpoints as printed (the control token stays in the file)."""
    control = {k: v for k, v in info["control"].items() if k != "token"}
    return {**info, "control": control}


def _log_tail(folder: Path, lines: int = 15) -> str:
    try:
        text = (state_dir(folder) / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@cli.group("lab")
def lab() -> None:
    """The operator's lab: the whole chain on loopback (web, RDAP, SMTP sink, ICCAM fake)."""


@lab.command("up")
@click.option("--hosters", type=click.IntRange(1, 200), default=8, show_default=True,
              help="Virtual hosting providers (countries NL, NL, NL, DE, DE, FR, BE, SC, ...).")
@click.option("--urls", type=click.IntRange(1, 100_000), default=40, show_default=True,
              help="URLs written to lab-urls.txt.")
@DIR_OPT
@JSON_OPT
def lab_up(hosters: int, urls: int, folder: str, as_json: bool) -> None:
    """Start the lab in the background; write lab.toml, lab-urls.txt and lab-hashlist.csv."""
    where = Path(folder).resolve()
    where.mkdir(parents=True, exist_ok=True)
    pid = _pid(where)
    if pid is not None and _alive(pid):
        raise InputError(f"a lab already runs in {where} (pid {pid}); stop it with: "
                         "ntd lab down")
    state = state_dir(where)
    state.mkdir(exist_ok=True)
    (state / INFO_FILE).unlink(missing_ok=True)
    with open(state / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.lab.daemon", str(where), str(hosters), str(urls)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_SECONDS
    while not (state / INFO_FILE).exists():
        if proc.poll() is not None:
            raise NtdError(f"the lab stopped while starting (exit {proc.returncode}):\n"
                           + _log_tail(where))
        if time.monotonic() > deadline:
            proc.terminate()
            raise NtdError(f"the lab did not start within {START_SECONDS:.0f}s:\n"
                           + _log_tail(where))
        time.sleep(0.05)
    info = _info(where)
    if as_json:
        emit_json(_public(info))
        return
    click.echo(f"lab up (pid {info['pid']}) in {where}\n"
               f"  web     http://<hoster>:{info['web']['port']}/  "
               f"({len(info['web']['hosts'])} hosters on 127.0.0.1)\n"
               f"  rdap    {info['rdap']['base_url']}\n"
               f"  smtp    127.0.0.1:{info['smtp']['port']}  (mail: ntd lab mail)\n"
               f"  iccam   {info['iccam']['base_url']}  (mutual TLS)\n"
               f"wrote lab.toml, lab-urls.txt ({info['urls']} URLs), lab-hashlist.csv\n"
               "next: eval \"$(ntd lab env)\"; stop with: ntd lab down")


@lab.command("down")
@DIR_OPT
def lab_down(folder: str) -> None:
    """Stop the lab and remove the files `lab up` wrote (.ntd-lab/lab.log stays)."""
    where = Path(folder).resolve()
    pid = _pid(where)
    stopped = False
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        stopped = True
    for name in PUBLIC_FILES:
        (where / name).unlink(missing_ok=True)
    state = state_dir(where)
    if state.is_dir():
        for child in state.iterdir():
            if child.name == LOG_FILE:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    click.echo(f"lab {'stopped' if stopped else 'was not running'}; files removed "
               f"(log: {state / LOG_FILE})")


def _reap(pid: int) -> None:
    """Collect the lab if it is our own child (``up`` and ``down`` in one test process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@lab.command("status")
@DIR_OPT
@JSON_OPT
def lab_status(folder: str, as_json: bool) -> None:
    """Whether the lab runs, and its endpoints."""
    info = _public(_info(Path(folder).resolve()))
    if as_json:
        emit_json(info)
    else:
        click.echo(f"lab running (pid {info['pid']}): web port {info['web']['port']}, "
                   f"rdap {info['rdap']['base_url']}, smtp port {info['smtp']['port']}, "
                   f"iccam {info['iccam']['base_url']}")


@lab.command("env")
@DIR_OPT
def lab_env(folder: str) -> None:
    """Shell lines pointing ntd at the lab: eval "$(ntd lab env)"."""
    info = _info(Path(folder).resolve())
    password = Path(info["iccam"]["password_file"]).read_text(encoding="utf-8").strip()
    click.echo(f"export NTD_CONFIG={_quote(info['files']['config'])}")
    click.echo(f"export {PASSWORD_ENV}={_quote(password)}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@lab.command("mail")
@DIR_OPT
@JSON_OPT
def lab_mail(folder: str, as_json: bool) -> None:
    """The notices the lab's SMTP sink received (oldest first)."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    import email.policy

    info = _info(Path(folder).resolve())
    rows = []
    for path in sorted(Path(info["smtp"]["spool"]).glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        rows.append({"file": path.name, "to": str(msg.get("To", "")),
                     "subject": str(msg.get("Subject", "")),
                     "message_id": str(msg.get("Message-ID", ""))})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("the SMTP sink has received no mail yet")
    for r in rows:
        click.echo(f"{r['file']}  {r['to']:<36}  {r['subject']}")


@lab.command("takedown")
@click.option("--share", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Share of the URLs still online that their hosters remove now.")
@DIR_OPT
@JSON_OPT
def lab_takedown(share: float, folder: str, as_json: bool) -> None:
    """Hosters act on the notices: a share of the lab's URLs answer 404 from now on."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    import urllib.request

    info = _info(Path(folder).resolve())
    request = urllib.request.Request(
        info["control"]["url"] + "/takedown", data=json.dumps({"share": share}).encode(),
        headers={"X-Lab-Token": info["control"]["token"], "Content-Type": "application/json"})
    # The control endpoint is the lab's own, on 127.0.0.1 (never a reported URL); no proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as answer:
        result = json.loads(answer.read())
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{len(result['removed'])} URL(s) taken down")
