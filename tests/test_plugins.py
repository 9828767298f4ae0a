"""Plugin loading: entry points, versions, blocking, clear errors, config schemas, commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import hookimpl
from engine.errors import PluginError
from engine.plugin_manager import call_first, get_plugin_manager, plugin_infos
from engine.runtime import load_config
from tests.conftest import BAD_PKG, PLUGIN_PKG, ntd_json, run_ntd


def test_entry_point_plugin_is_loaded_with_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN_PKG))
    pm = get_plugin_manager()
    infos = {i.name: i for i in plugin_infos(pm)}
    assert infos["sample"].version == "1.2.3"
    assert infos["sample"].distribution == "ntd-sample-plugin"
    assert infos["sample"].hooks == ("ntd_config_schema", "ntd_register_commands")
    assert set(infos["stubs"].hooks) == {"ntd_fetch", "ntd_match"}
    # The plugin's config section is validated like the engine's own.
    config = load_config(pm)
    assert config.get("sample", "greeting") == "hello"


def test_disable_plugins_env_blocks_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGIN_PKG))
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "sample, stubs")
    names = {i.name for i in plugin_infos(get_plugin_manager())}
    assert "sample" not in names and "stubs" not in names


def test_misspelt_hook_names_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BAD_PKG))
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "broken")
    with pytest.raises(PluginError, match="misspelt") as err:
        get_plugin_manager()
    assert "ntd_fecth" in str(err.value)


def test_import_failure_names_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BAD_PKG))
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "misspelt")
    with pytest.raises(PluginError, match="'broken'.*failed to load.*ModuleNotFoundError"):
        get_plugin_manager()


def test_two_plugins_declaring_one_section_is_an_error() -> None:
    from engine.config import Option

    class A:
        @hookimpl
        def ntd_config_schema(self):
            return {"shared": {"x": Option(type=int, default=1)}}

    class B(A):
        pass

    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[("a", A()), ("b", B())])
    with pytest.raises(PluginError, match=r"\[shared\] is already declared"):
        load_config(pm)


async def test_call_first_skips_none_and_awaits_coroutines() -> None:
    class Silent:
        @hookimpl(tryfirst=True)
        def ntd_fetch(self, case):
            return None

    class Async:
        @hookimpl
        async def ntd_fetch(self, case, ctx):
            return ("fetched", case, ctx)

    class Never:
        @hookimpl(trylast=True)
        def ntd_fetch(self):
            raise AssertionError("must not be called after an answer")

    pm = get_plugin_manager(load_entrypoints=False,
                            extra_plugins=[("never", Never()), ("async", Async()),
                                           ("silent", Silent())])
    answer, plugin = await call_first(pm, "ntd_fetch", case="C1", ctx="ctx")
    assert answer == ("fetched", "C1", "ctx") and plugin == "async"


def test_cli_plugins_json_and_plugin_command(tmp_path: Path) -> None:
    rows = ntd_json("plugins", plugins=PLUGIN_PKG)
    sample = next(r for r in rows if r["name"] == "sample")
    assert sample["version"] == "1.2.3" and "ntd_register_commands" in sample["hooks"]
    proc = run_ntd("sample-hello", plugins=PLUGIN_PKG)
    assert proc.returncode == 0 and "hello from sample plugin" in proc.stdout


def test_cli_bad_plugin_exits_with_message() -> None:
    proc = run_ntd("status", plugins=BAD_PKG, env={"NTD_DISABLE_PLUGINS": "broken"})
    assert proc.returncode == 1
    assert "misspelt" in proc.stderr and "NTD_DISABLE_PLUGINS" in proc.stderr
