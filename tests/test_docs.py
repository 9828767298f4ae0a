"""Documentation stays true: every hook is documented; README commands match CI."""

from __future__ import annotations

import re
from pathlib import Path

from engine import hookspecs
from engine.plugin_manager import get_plugin_manager

ROOT = Path(__file__).resolve().parent.parent


def test_every_hook_is_documented() -> None:
    docs = (ROOT / "docs" / "hooks.md").read_text()
    pm = get_plugin_manager(load_entrypoints=False)
    hooks = sorted(name for name in dir(pm.hook) if name.startswith("ntd_"))
    assert hooks, "no hooks found"
    missing = [h for h in hooks if f"### `{h}(" not in docs]
    assert not missing, f"hooks missing from docs/hooks.md: {missing}"
    for name in hooks:
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", readme, re.S)
    test_cmds = [b.strip() for b in blocks if "pytest" in b]
    assert test_cmds, "README has no test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci or test_cmds[0] in ci
