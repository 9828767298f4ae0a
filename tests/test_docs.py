"""Documentation stays true: the hooks reference is what the hookspecs say; README commands
match CI; the docs the code points to exist."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pytest

from engine import hookspecs, hookspecs_doc
from engine.plugin_manager import get_plugin_manager

ROOT = Path(__file__).resolve().parent.parent


def hook_names() -> list[str]:
    pm = get_plugin_manager(load_entrypoints=False)
    hooks = sorted(name for name in dir(pm.hook) if name.startswith("ntd_"))
    assert hooks, "no hooks found"
    return hooks


def test_every_hook_is_documented() -> None:
    docs = (ROOT / "docs" / "hooks.md").read_text()
    hooks = hook_names()
    missing = [h for h in hooks if f"### `{h}(" not in docs]
    assert not missing, f"hooks missing from docs/hooks.md: {missing}"
    for name in hooks:
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


def test_hooks_md_is_generated_from_the_hookspecs() -> None:
    """docs/hooks.md equals the generator's output: edit the docstrings, then run
    ``python -m engine.hookspecs_doc``."""
    expected = hookspecs_doc.render()
    current = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert current == expected, ("docs/hooks.md is stale: run `python -m engine.hookspecs_doc`")


@pytest.mark.parametrize("name", hook_names())
def test_hook_docstring_documents_every_parameter_and_the_return(name: str) -> None:
    hook = hookspecs_doc.parse_hook(getattr(hookspecs, name))  # raises when one is missing
    args = list(inspect.signature(getattr(hookspecs, name)).parameters)
    assert list(hook.param_docs) == args, "document the parameters in signature order"
    assert hook.returns_doc
    # Today's contract words stay: the lifecycle position and how answers are combined.
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    words = " ".join(doc.split())
    assert re.search(r"first non-None answer wins|all (answers|implementations) are "
                     r"(collected|called)", words, re.I), f"{name}: say how answers combine"


def test_every_section_of_hookspecs_is_rendered() -> None:
    text = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    source = inspect.getsource(hookspecs)
    sections = hookspecs_doc.parse_sections(source, hook_names())
    assert [s.title for s in sections] == [
        "Start-up and configuration", "Analyst decisions",
        "Stage helpers: hooks the built-in stages call so plugins can extend them",
        "Pipeline stages: one hook per stage, first non-None answer wins"]
    assert sorted(h for s in sections for h in s.hooks) == hook_names()
    for section in sections:
        assert f"## {section.title}\n" in text
    assert "## The `StageResult`" in text


def test_generator_check_mode(tmp_path: Path) -> None:
    stale = tmp_path / "hooks.md"
    stale.write_text("# old\n")
    assert hookspecs_doc.main([str(stale), "--check"]) == 1
    assert hookspecs_doc.main([str(stale)]) == 0
    assert hookspecs_doc.main([str(stale), "--check"]) == 0
    assert stale.read_text() == hookspecs_doc.render()


def test_generator_rejects_an_undocumented_parameter() -> None:
    def ntd_example(case, ctx):  # type: ignore[no-untyped-def]
        """A hook.

        :param case: the case.
        :returns: nothing.
        """

    with pytest.raises(ValueError, match=r"missing for \['ctx'\]"):
        hookspecs_doc.parse_hook(ntd_example)


def test_generator_markdown_conversion() -> None:
    text = ("Use ``ctx.fetcher``, split ``across\nlines``::\n\n    @hookimpl\n    def f():\n"
            "        ...\n\nAfter.")
    assert hookspecs_doc.to_markdown(text) == (
        "Use `ctx.fetcher`, split `across\nlines`:\n\n```python\n@hookimpl\ndef f():\n"
        "    ...\n```\n\nAfter.")


def test_docs_referenced_by_the_code_exist() -> None:
    """Every ``docs/<name>.md`` named in engine/ and plugins/ sources is a real file."""
    missing = set()
    for path in [*ROOT.joinpath("engine").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]:
        for ref in re.findall(r"docs/([\w.-]+\.md)", path.read_text(encoding="utf-8")):
            if not (ROOT / "docs" / ref).exists():
                missing.add(f"{path.relative_to(ROOT)}: docs/{ref}")
    assert not missing, sorted(missing)


def test_lifecycle_doc_names_every_state() -> None:
    from engine.models import STATES

    text = (ROOT / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    assert [s for s in STATES if f"`{s}`" not in text] == []


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", readme, re.S)
    test_cmds = [b.strip() for b in blocks if "pytest" in b]
    assert test_cmds, "README has no test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci or test_cmds[0] in ci


def test_writing_plugins_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's plugin (``src/ntd_hotline_xx/rules.py``) and its tests, as printed, pass."""
    text = (ROOT / "docs" / "writing-plugins.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    [plugin] = [b for b in blocks if b.startswith("# src/ntd_hotline_xx/rules.py")]
    [tests] = [b for b in blocks if b.startswith("# tests/test_rules.py")]
    package = tmp_path / "ntd_hotline_xx"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rules.py").write_text(plugin)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("ntd_hotline_xx")]:
        monkeypatch.delitem(sys.modules, name)
    namespace: dict[str, object] = {}
    exec(compile(tests, "writing-plugins.md", "exec"), namespace)  # noqa: S102
    ran = [name for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert ran, "the guide's test block has no tests"
    for name in ran:
        namespace[name]()  # type: ignore[operator]
