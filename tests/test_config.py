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
    ({"pipeline": {"workers": 0}}, r"\[pipeline\] workers: must be between 1 and 10000"),
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


# -- hostile or mistaken files (issue 17, item 5) -----------------------------------------------
def _check(tmp_path: Path, data: bytes, *command: str):
    path = tmp_path / "ntd.toml"
    path.write_bytes(data)
    proc = run_ntd("--config", str(path), *(command or ("config", "check")))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_non_utf8_config_is_a_clear_error(tmp_path: Path) -> None:
    data = "[notices]\nhotline_name = 'Meldpunt é'\n".encode("latin-1")
    for command in (("config", "check"), ("status",)):  # config check and start-up alike
        proc = _check(tmp_path, data, *command)
        assert proc.returncode == 2
        assert f"not UTF-8 text (invalid continuation byte at byte {data.index(0xE9)})" \
            in proc.stderr


@pytest.mark.parametrize(("text", "message"), [
    ('[resolve.hosts]\n"h.test" = "not-an-ip"\n',
     "[resolve.hosts] h.test: 'not-an-ip' is not an IP address"),
    ('[resolve.hosts]\n"h.test" = ["127.0.0.1", 7]\n', "7 is not an IP address"),
    ('[fetch]\nallowed_ports = ["80", 0, 70000]\n',
     """[fetch] allowed_ports: '80' is not a port number (write 80, not "80")"""),
    ("[fetch]\nallowed_ports = [80, 70000]\n", "70000 is not a port (1-65535)"),
    ("[fetch]\nallowed_ports = []\n", "must list at least one port"),
    ("[fetch]\nretry_minutes = inf\n", "[fetch] retry_minutes: expected a finite number"),
    ("[pipeline]\ncpu_workers = 100000\n", "[pipeline] cpu_workers: must be between 0 and 512"),
    ('[fetch]\nuser_agent = "a\\r\\nX-Injected: 1"\n', "must not contain control characters"),
    ('[logging]\nfile = "/nonexistent-folder/ntd.log"\n', "[logging] file: cannot write"),
    ("[fetch.browser]\npool = 0\n", "[fetch.browser] pool: must be between 1 and 16"),
    ('[fetch.browser]\nexecutable = "chromium"\n',
     "[fetch.browser] executable: must be an absolute path to a chromium binary"),
    ('[fetch.browser]\ndomains = ["https://g.example/"]\n',
     """[fetch.browser] domains: 'https://g.example/' is not a host or domain name"""),
    ("[fetch.browser]\nmax_rss_mb = 10\n", "[fetch.browser] max_rss_mb: must be between 64"),
    ("[fetch.browser]\npage_seconds = 0\n", "[fetch.browser] page_seconds: must be between"),
    ("[fetch.browser]\nheadless = false\n", "[fetch.browser] headless: unknown key"),
])
def test_config_check_and_start_up_refuse_bad_values(tmp_path: Path, text: str,
                                                     message: str) -> None:
    from engine.plugin_manager import get_plugin_manager
    from engine.runtime import Runtime, load_config

    path = tmp_path / "ntd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as checked:  # what `ntd config check` runs
        load_config(get_plugin_manager(), path)
    assert message in checked.value.message
    with pytest.raises(ConfigError) as started:  # what every command opens first
        Runtime.open(db=str(tmp_path / "ntd.db"), config_path=path)
    assert message in started.value.message


def test_cli_refuses_the_issue_config_with_a_message(tmp_path: Path) -> None:
    proc = _check(tmp_path, b'[resolve.hosts]\n"h.test" = "not-an-ip"\n'
                            b'[fetch]\nallowed_ports = ["80", 0, 70000]\n')
    assert proc.returncode == 2
    assert "2 problems" in proc.stderr and "'not-an-ip' is not an IP address" in proc.stderr


def test_config_check_lists_every_problem_at_once() -> None:
    raw = {"pipeline": {"workers": 0, "queue_size": "big"},
           "resolve": {"hosts": {"h.test": "nope"}}}
    with pytest.raises(ConfigError) as exc:
        validate(raw, ENGINE_SCHEMA)
    lines = exc.value.message.splitlines()
    assert lines[0] == "3 problems:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "[pipeline] workers", "[pipeline] queue_size", "[resolve.hosts] h.test"]


def test_an_unvalidated_fetch_policy_is_a_config_error() -> None:
    """Code that builds a config without validation still gets a ConfigError, not a
    ValueError in every fetch."""
    from engine.config import Config
    from engine.context import fetch_policy

    with pytest.raises(ConfigError, match="allowed_ports"):
        fetch_policy(Config(values={"fetch": {"allowed_ports": [0]}}))


def test_run_until_idle_exits_1_when_every_case_failed_on_the_configuration(
        tmp_path: Path, db_path: Path) -> None:
    from tests.conftest import PLUGIN_PKG

    env = {"NTD_DISABLE_PLUGINS": "fetch,hashmatch,resolve,route_inhope,notify,recheck"}
    src = tmp_path / "urls.txt"
    src.write_text("http://config-broken.example/1\nhttp://config-broken.example/2\n")
    assert run_ntd("submit", str(src), db=db_path, plugins=PLUGIN_PKG, env=env).returncode == 0
    proc = run_ntd("run", "--until-idle", db=db_path, plugins=PLUGIN_PKG, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "every case of this run failed on the configuration: [fixture] endpoint: " \
        "synthetic configuration problem" in proc.stderr
    assert "Traceback" not in proc.stderr
    # One case that works makes it an ordinary run with errors (exit 0).
    src.write_text("http://fine.example/1\n")
    run_ntd("submit", str(src), db=db_path, plugins=PLUGIN_PKG, env=env)
    out = ntd_json("run", "--until-idle", db=db_path, plugins=PLUGIN_PKG, env=env)
    assert out["config_failure"] is None and out["processed"]["fetch"] >= 1
