"""``ntd lab``: start, refuse a second start, report endpoints, stop; lab.toml is valid TOML that
says what ntd needs; the lab clock (``NTD_FAKE_NOW=+25h``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.clock import Clock
from engine.lab.daemon import to_toml
from engine.lab.files import INFO_FILE, PID_FILE, STATE_DIR

SECONDS = 240  # safety net only


def lab(*args: str, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTD_")}
    return subprocess.run([sys.executable, "-m", "engine.cli", "lab", *args, "--dir",
                           str(folder)], capture_output=True, text=True, env=env,
                          timeout=SECONDS)


def test_lab_up_json_refuses_a_second_lab_and_down_cleans_up(tmp_path: Path) -> None:
    try:
        up = lab("up", "--hosters", "3", "--urls", "12", "--json", folder=tmp_path)
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert "token" not in info["control"]  # the control token stays in the 0600 file
        ports = {info["web"]["port"], info["smtp"]["port"],
                 int(info["rdap"]["base_url"].rsplit(":", 1)[1]),
                 int(info["iccam"]["base_url"].split(":")[2].split("/")[0])}
        assert len(ports) == 4  # four servers, four free ports
        assert info["rdap"]["base_url"].startswith("http://127.0.0.1:")
        assert info["iccam"]["base_url"].startswith("https://127.0.0.1:")
        assert info["web"]["hosts"] == [f"hoster-{i}.example.test" for i in range(3)]
        assert len((tmp_path / "lab-urls.txt").read_text().split()) == 12
        config = tomllib.loads((tmp_path / "lab.toml").read_text())
        assert config["lab"]["allow_private_networks"] is True
        assert set(config["lab"]["rdap_addresses"]) == set(info["web"]["hosts"])
        assert config["fetch"]["allowed_ports"] == [info["web"]["port"]]
        assert config["smtp"]["port"] == info["smtp"]["port"]
        assert config["iccam"]["password_env"] == "NTD_LAB_ICCAM_PASSWORD"
        assert "password" not in config["iccam"]  # secrets only in the environment
        again = lab("up", folder=tmp_path)
        assert again.returncode == 2 and "already runs" in again.stderr
        status = lab("status", "--json", folder=tmp_path)
        assert status.returncode == 0 and json.loads(status.stdout)["pid"] == info["pid"]
        env = lab("env", folder=tmp_path)
        assert f"export NTD_CONFIG='{tmp_path / 'lab.toml'}'" in env.stdout
        assert lab("mail", "--json", folder=tmp_path).stdout.strip() == "[]"
    finally:
        down = lab("down", folder=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (tmp_path / "lab.toml").exists() and not (tmp_path / "lab-urls.txt").exists()
    assert not (tmp_path / STATE_DIR / PID_FILE).exists()
    assert not (tmp_path / STATE_DIR / INFO_FILE).exists()
    assert (tmp_path / STATE_DIR / "lab.log").exists()  # the log stays for a post-mortem


@pytest.mark.parametrize("command", ["status", "env", "mail", "takedown"])
def test_lab_commands_without_a_lab_exit_2(tmp_path: Path, command: str) -> None:
    done = lab(command, folder=tmp_path)
    assert done.returncode == 2 and "no lab runs in" in done.stderr


def test_lab_down_without_a_lab_is_harmless(tmp_path: Path) -> None:
    done = lab("down", folder=tmp_path)
    assert done.returncode == 0 and "was not running" in done.stdout


def test_to_toml_round_trips() -> None:
    sections = {"lab": {"allow_private_networks": True},
                "lab.rdap_addresses": {"hoster-0.example.test": "185.4.0.10"},
                "rdap": {"domain_base_urls": {"*": "http://127.0.0.1:1"}, "backoff_base": 0.01},
                "fetch": {"allowed_ports": [8080], "max_bytes": 10},
                "notices": {"hotline_name": 'Lab "Hotline"'}}
    parsed = tomllib.loads(to_toml(sections, "a header\nof two lines"))
    assert parsed["lab"] == {"allow_private_networks": True,
                             "rdap_addresses": {"hoster-0.example.test": "185.4.0.10"}}
    assert parsed["rdap"] == sections["rdap"] and parsed["fetch"] == sections["fetch"]
    assert parsed["notices"] == sections["notices"]


def test_fake_now_ahead_of_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_FAKE_NOW", "+25h")
    ahead = Clock().now() - datetime.now(UTC)
    assert timedelta(hours=24, minutes=59) < ahead < timedelta(hours=25, minutes=1)
    monkeypatch.setenv("NTD_FAKE_NOW", "+2d")
    assert Clock().now() - datetime.now(UTC) > timedelta(days=1, hours=23)
    monkeypatch.setenv("NTD_FAKE_NOW", "2026-03-03T10:00:00Z")
    assert Clock().now() == datetime(2026, 3, 3, 10, tzinfo=UTC)
