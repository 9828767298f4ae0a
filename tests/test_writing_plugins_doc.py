"""The plugin-author guide stays complete: one section per hook, and its example is real."""

from __future__ import annotations

import tomllib

from engine import hookspecs
from engine.plugin_manager import get_plugin_manager
from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "writing-plugins.md"


def hook_names() -> list[str]:
    pm = get_plugin_manager(load_entrypoints=False)
    names = sorted(name for name in dir(pm.hook) if name.startswith("ntd_"))
    assert names, "no hooks found"
    return names


def test_every_hook_has_a_section_in_the_guide() -> None:
    text = GUIDE.read_text()
    missing = [name for name in hook_names() if f"### `{name}`" not in text]
    assert not missing, f"hooks without a section in docs/writing-plugins.md: {missing}"


def test_guide_names_no_hook_that_does_not_exist() -> None:
    text = GUIDE.read_text()
    known = set(hook_names())
    sections = [line[len("### `"):].split("`")[0] for line in text.splitlines()
                if line.startswith("### `ntd_")]
    assert set(sections) <= known, set(sections) - known
    assert all(hasattr(hookspecs, name) for name in sections)


def test_example_package_matches_the_guide() -> None:
    """The guide's entry-point group and example plugin are what the example package ships."""
    text = GUIDE.read_text()
    meta = tomllib.loads((ROOT / "examples" / "ntd-hotline-de" / "pyproject.toml").read_text())
    eps = meta["project"]["entry-points"]["ntd.plugins"]
    assert eps == {"hotline_de": "ntd_hotline_de.rules"}
    assert '[project.entry-points."ntd.plugins"]' in text
    rules = (ROOT / "examples" / "ntd-hotline-de" / "src" / "ntd_hotline_de" / "rules.py")
    source = rules.read_text()
    for rule in ("de-forward", "de-no-direct-hoster"):
        assert rule in text and rule in source
