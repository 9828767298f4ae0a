"""The README's lab walk-through, run command by command in a fresh folder (issue 21, item 6).

The commands are read from README.md between ``<!-- lab-walkthrough -->`` markers and each runs
in its own ``bash`` with the environment the previous ones left (so ``eval "$(ntd lab env)"``
carries over), under a deadline; the lab is brought down whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from engine.lab.files import INFO_FILE, PID_FILE, STATE_DIR

ROOT = Path(__file__).resolve().parents[1]
COMMAND_SECONDS = 240  # a safety net on a loaded 2-core machine, not a measurement


def walkthrough() -> list[str]:
    """The shell commands of the README's lab walk-through, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- lab-walkthrough -->\s*```sh\n(.*?)```\s*<!-- /lab-walkthrough -->",
                      text, re.S)
    assert block, "README.md has no lab walk-through between the markers"
    return [line.strip() for line in block.group(1).splitlines()
            if line.strip() and not line.strip().startswith("#")]


def clean_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NTD_") and k not in ("http_proxy", "https_proxy")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(folder)
    return env


class Shell:
    """Runs one command at a time; exported variables carry over to the next command."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.state = folder / ".walkthrough-env.sh"
        self.state.write_text("", encoding="utf-8")
        self.env = clean_env(folder)

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        script = (f"source {shlex.quote(str(self.state))}\n{command}\nrc=$?\n"
                  f"export -p > {shlex.quote(str(self.state))}\nexit $rc\n")
        return subprocess.run(["bash", "-c", script], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=COMMAND_SECONDS)

    def variable(self, name: str) -> str | None:
        found = re.search(rf"^declare -x {name}=\"(.*)\"$", self.state.read_text(), re.M)
        return found.group(1) if found else None


def ntd_json(shell: Shell, *args: str) -> object:
    done = shell.run("ntd " + " ".join(shlex.quote(a) for a in args) + " --json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_readme_walkthrough_has_the_whole_chain() -> None:
    commands = walkthrough()
    starts = [c.split()[:3] for c in commands]
    assert starts[0] == ["ntd", "lab", "up"] and starts[-1] == ["ntd", "lab", "down"]
    for needed in ("ntd submit lab-urls.txt", "ntd run --until-idle", "ntd lab mail",
                   "ntd iccam sync", "recheck --due"):
        assert any(needed in c for c in commands), needed


@pytest.mark.skipif(sys.platform == "win32", reason="the walk-through is a POSIX shell session")
def test_readme_lab_walkthrough_runs_command_by_command(tmp_path: Path) -> None:
    shell = Shell(tmp_path)
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for command in walkthrough():
            done = shell.run(command)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            outputs[command] = done
            check_after(shell, command, done)
    finally:
        subprocess.run(["bash", "-c", "ntd lab down"], cwd=tmp_path, env=clean_env(tmp_path),
                       capture_output=True, timeout=COMMAND_SECONDS)
    assert not (tmp_path / STATE_DIR / PID_FILE).exists()
    assert len(outputs) == len(walkthrough())


def check_after(shell: Shell, command: str, done: subprocess.CompletedProcess[str]) -> None:
    """What each step of the walk-through must have achieved."""
    folder = shell.folder
    if command.startswith("ntd lab up"):
        info = json.loads((folder / STATE_DIR / INFO_FILE).read_text())
        urls = (folder / "lab-urls.txt").read_text().split()
        assert len(urls) == info["urls"] > 0
        assert all(u.startswith("http://hoster-") for u in urls)
        assert "[lab.rdap_addresses]" in (folder / "lab.toml").read_text()
        assert f"127.0.0.1:{info['smtp']['port']}" in done.stdout
    elif command.startswith("eval"):
        assert shell.variable("NTD_CONFIG") == str(folder / "lab.toml")
        assert shell.variable("NTD_LAB_ICCAM_PASSWORD")
        checked = shell.run("ntd config check")
        assert checked.returncode == 0, checked.stderr
    elif command.startswith("ntd submit"):
        assert re.search(r": [1-9]\d* accepted", done.stdout), done.stdout
    elif command.startswith("ntd run"):
        status = ntd_json(shell, "status")
        assert isinstance(status, dict)
        by_state = status["by_state"]
        assert by_state.get("noticed", 0) >= 1, by_state
        # Nothing resolvable stopped for lack of RDAP data (the trap this lab removes).
        assert not by_state.get("unresolved"), by_state
    elif command == "ntd lab mail":
        to = re.findall(r"^\d{5}\.eml\s+(\S+)", done.stdout, re.M)
        assert any(t.startswith("abuse@hoster-") for t in to), done.stdout
        assert "tbkk@police.example.test" in to
        mail = ntd_json(shell, "lab", "mail")
        assert isinstance(mail, list) and len(mail) == len(to)
    elif command.startswith("ntd iccam sync"):
        synced = json.loads(done.stdout)
        assert synced["reports_created"] >= 1 and synced["errors"] == [], synced
    elif command.startswith("ntd lab takedown"):
        assert re.match(r"[1-9]\d* URL\(s\) taken down", done.stdout), done.stdout
    elif "recheck --due" in command:
        counts = json.loads(done.stdout)
        assert counts["checked"] >= 1 and counts["removed"] >= 1, counts
    elif command.startswith("ntd lab down"):
        assert not (folder / "lab.toml").exists()
        assert not (folder / STATE_DIR / PID_FILE).exists()
        assert shell.run("ntd lab status").returncode == 2
