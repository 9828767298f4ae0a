"""The layout's rules, checked on the source: no import cycles, no stage importing another.

Every ``import`` statement counts — at module level, inside functions and under
``TYPE_CHECKING`` — because an import hidden in a function is still a dependency. An edge goes
from a module to each ``engine.*``/``plugins.*`` module it names (``from a import b`` counts
``a.b`` when that is a module, else ``a``); the implicit import of a parent package by its
submodules is Python's mechanics, not a dependency, and is not counted.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("fetch", "match", "resolve", "route", "notify", "recheck")
# Cycles tolerated for now (none since the store was unified). This list may only shrink.
KNOWN_CYCLES: list[set[str]] = []
DEFERRED_TAG = "# deferred:"


def _modules() -> dict[str, Path]:
    mods = {}
    for base in ("engine", "plugins"):
        for path in (ROOT / base).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def known(name: str) -> str | None:
        parts = name.split(".")
        while parts:
            if ".".join(parts) in mods:
                return ".".join(parts)
            parts.pop()
        return None

    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up) + (f".{base}" if base else "")
                names = [f"{base}.{a.name}" if known(f"{base}.{a.name}") == f"{base}.{a.name}"
                         else base for a in node.names]
            for name in names:
                target = known(name)
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_engine_and_plugins() -> None:
    cycles = _cycles(_graph())
    unexpected = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert unexpected == []


def test_known_cycles_are_still_real() -> None:
    """A known cycle that is gone must leave the list (so the list only shrinks)."""
    cycles = _cycles(_graph())
    assert all(c in cycles for c in KNOWN_CYCLES)


def test_no_stage_imports_another_stage() -> None:
    bad = []
    for mod, targets in _graph().items():
        parts = mod.split(".")
        if parts[0] != "plugins" or len(parts) < 2:
            continue
        for target in targets:
            tparts = target.split(".")
            if tparts[0] == "plugins" and len(tparts) > 1 and tparts[1] != parts[1]:
                bad.append(f"{mod} -> {target}")
    assert bad == []


def test_engine_product_modules_import_no_stage() -> None:
    """The core knows no stage's internals; only benchmarks and the demo drive stages."""
    allowed = ("engine.bench", "engine.demo")
    bad = [f"{mod} -> {t}" for mod, targets in _graph().items()
           if mod.startswith("engine") and not mod.startswith(allowed)
           for t in targets if t.startswith("plugins")]
    assert bad == []


def test_every_stage_is_a_package_with_hooks_in_its_init() -> None:
    for stage in STAGES:
        init = ROOT / "plugins" / stage / "__init__.py"
        tree = ast.parse(init.read_text(encoding="utf-8"))
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        assert funcs, stage
        for fn in funcs:
            assert fn.name.startswith("ntd_"), f"{stage}: {fn.name} is not a hook"
            assert any(getattr(d, "id", None) == "hookimpl" for d in fn.decorator_list), fn.name
        others = [n for n in tree.body if isinstance(n, ast.ClassDef | ast.Assign)]
        assert others == [], f"plugins/{stage}/__init__.py holds more than hooks"


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]


def test_imports_inside_functions_say_why() -> None:
    """An import inside a function keeps start-up fast or defers a heavy or optional
    dependency, and says which in a ``# deferred: ...`` comment (same line or the line
    above); any other import belongs at the top of its module."""
    silent = []
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    here, above = lines[sub.lineno - 1], lines[sub.lineno - 2]
                    if DEFERRED_TAG not in here and not above.strip().startswith(DEFERRED_TAG):
                        silent.append(f"{path.relative_to(ROOT)}:{sub.lineno}: {here.strip()}")
    assert silent == []
