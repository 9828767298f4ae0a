"""Configuration: validation errors name the key; defaults fill in."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ENGINE_SCHEMA, validate
from engine.errors import ConfigError
from tests.conftest import ntd_json, run_ntd


def test_defaults_fill_in() -> None:
    config = validate({}, ENGINE_SCHEMA)
    assert config.get("pipeline", "workers") is None  # per-stage defaults
    assert config.get("lab", "allow_private_networks") is False


@pytest.mark.parametrize(("raw", "message"), [
    ({"pipeline": {"workers": "many"}}, r"\[pipeline\] workers: expected an integer"),
    ({"pipeline": {"workers": 0}}, r"\[pipeline\] workers: must be greater than 0"),
    ({"pipeline": {"wrokers": 3}}, r"\[pipeline\] wrokers: unknown key"),
    ({"pipline": {"workers": 3}}, r"\[pipline\]: unknown section"),
    ({"lab": {"allow_private_networks": 1}}, r"allow_private_networks: expected true/false"),
    ({"pipeline": {"concurrency": {"fetch": -1}}}, r"\[pipeline.concurrency\] fetch: must be"),
])
def test_validation_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(raw, ENGINE_SCHEMA)


def test_nested_tables_validate() -> None:
    config = validate({"pipeline": {"workers": 2, "concurrency": {"fetch": 8}}}, ENGINE_SCHEMA)
    assert config.section("pipeline.concurrency") == {"fetch": 8}
    assert config.get("pipeline", "workers") == 2


def test_cli_config_check(tmp_path: Path) -> None:
    good = tmp_path / "ntd.toml"
    good.write_text("[pipeline]\nworkers = 3\n")
    out = ntd_json("config", "check", env={"NTD_CONFIG": str(good)})
    assert out["values"]["pipeline"]["workers"] == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nworkers = 'x'\n")
    proc = run_ntd("--config", str(bad), "config", "check")
    assert proc.returncode == 2
    assert "bad.toml" in proc.stderr and "[pipeline] workers" in proc.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[pipeline\n")
    proc = run_ntd("--config", str(broken), "status")
    assert proc.returncode == 2 and "invalid TOML" in proc.stderr
