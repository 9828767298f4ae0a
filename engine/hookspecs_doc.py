"""Generate ``docs/hooks.md`` from ``engine/hookspecs.py``: the docstrings are the reference.

``python -m engine.hookspecs_doc`` writes the file; ``--check`` exits 1 when the file differs
from what the hookspecs say (``tests/test_docs.py`` runs the same comparison). The page is:

- the module docstring of ``engine.hookspecs`` (how hooks are written and called);
- one section per banner of ``hookspecs.py`` (``# ---- / # Title / # ----`` comment blocks, in
  source order; text under the title becomes the section's introduction);
- per hook: its typed signature, its docstring, and its ``:param name:`` / ``:returns:``
  fields as a parameter list and a return line;
- the table of pipeline stages (from ``engine.pipeline.STAGES``) and of ``StageResult`` fields.

Docstrings are written in reStructuredText's small common subset with Markdown: ````code````
becomes ```code```, a paragraph ending in ``::`` introduces an indented code block. A hook
without a ``:param:`` line for each argument or without ``:returns:`` is an error, so the
reference cannot silently lose a parameter.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"
_BANNER = re.compile(r"^# -{20,}\s*$")
_FIELD = re.compile(r"^:(param (?P<name>\w+)|returns):\s*(?P<text>.*)$")
_LITERAL = re.compile(r"``(.+?)``", re.S)

HEADER = """\
# Hooks reference

<!-- Generated from engine/hookspecs.py by `python -m engine.hookspecs_doc`: edit the
     docstrings there, then regenerate. tests/test_docs.py fails when this file is stale. -->

(For a guided walk-through with a worked example, see `docs/writing-plugins.md`; for the routing
policy, `docs/routing.md`; for the case states, `docs/lifecycle.md`.)
"""

# StageResult's fields in words. Kept here, not in engine/models.py, because this table is the
# reference's; ``stage_result_table`` fails when a field is missing or gone.
STAGE_RESULT_FIELDS = {
    "state": "the case's next state (one of `engine.api.STATES`)",
    "action": "the event's action word in the trail, e.g. `fetched`",
    "reason": "short reason (failure states), also shown as the case's `state_reason`",
    "detail": "JSON-able details for the trail",
    "items": "`engine.api.Item`s to store (replace stored items with the same URL)",
    "data": "named case fields to set, e.g. `resolution`, `routes`, `monitoring` "
            "(`engine.api.CaseData`)",
    "outbox": "notices to queue with the state change (`engine.api.NoticeAction`)",
    "retry_at": "when the case re-enters the stage (failure states)",
    "actor": "who decided (default: your plugin's name)",
}


@dataclass(frozen=True)
class HookDoc:
    """One hookspec, parsed: signature parts, body text and its fields."""

    name: str
    params: tuple[tuple[str, str], ...]  # (name, annotation text)
    returns: str  # annotation text
    body: str
    param_docs: dict[str, str]
    returns_doc: str


@dataclass(frozen=True)
class Section:
    """A banner of hookspecs.py: title, introduction and the hooks under it."""

    title: str
    intro: str
    hooks: tuple[str, ...]


# -- parsing ---------------------------------------------------------------------------------


def split_fields(doc: str, name: str = "?") -> tuple[str, dict[str, str], str | None]:
    """``(body, {param: text}, returns_text)`` of a cleaned docstring.

    Fields (``:param x:``, ``:returns:``) follow the body; a field continues on the following
    lines until the next field or a blank line.
    """
    body: list[str] = []
    params: dict[str, str] = {}
    returns: str | None = None
    current: list[str] | None = None
    key: str | None = None

    def close() -> None:
        nonlocal returns
        if current is None:
            return
        text = " ".join(part.strip() for part in current)
        if key == ":returns":
            returns = text
        elif key is not None:
            if key in params:
                raise ValueError(f"{name}: parameter {key!r} documented twice")
            params[key] = text

    for line in doc.splitlines():
        match = _FIELD.match(line)
        if match:
            close()
            key = match["name"] or ":returns"
            current = [match["text"]]
        elif current is not None and line.strip():
            current.append(line)
        elif current is not None:
            close()
            current, key = None, None
        else:
            body.append(line)
    close()
    return "\n".join(body).strip(), params, returns


def parse_hook(fn: Callable[..., Any]) -> HookDoc:
    """Read one hookspec function (its annotations are text: hookspecs uses postponed
    evaluation, so nothing is imported to document it)."""
    name = fn.__name__
    doc = inspect.getdoc(fn)
    if not doc:
        raise ValueError(f"{name} has no docstring")
    body, param_docs, returns_doc = split_fields(doc, name)
    sig = inspect.signature(fn, eval_str=False)
    params = tuple((p.name, _annotation(p.annotation)) for p in sig.parameters.values())
    names = [p for p, _ in params]
    missing = [p for p in names if p not in param_docs]
    extra = [p for p in param_docs if p not in names]
    if missing or extra:
        raise ValueError(f"{name}: :param: lines missing for {missing}, unknown {extra}")
    if not returns_doc:
        raise ValueError(f"{name}: no :returns: line")
    return HookDoc(name=name, params=params, returns=_annotation(sig.return_annotation),
                   body=body, param_docs=param_docs, returns_doc=returns_doc)


def _annotation(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "Any"
    return value if isinstance(value, str) else inspect.formatannotation(value)


def parse_sections(source: str, hook_names: Sequence[str]) -> list[Section]:
    """The banners of ``source`` in order, each with the hooks defined below it."""
    lines = source.splitlines()
    sections: list[tuple[str, list[str], list[str]]] = []
    i = 0
    while i < len(lines):
        if _BANNER.match(lines[i]):
            j = i + 1
            text: list[str] = []
            while j < len(lines) and not _BANNER.match(lines[j]):
                if not lines[j].startswith("#"):
                    break
                text.append(lines[j][1:].removeprefix(" "))
                j += 1
            if j < len(lines) and _BANNER.match(lines[j]) and text:
                sections.append((text[0].strip(), text[1:], []))
                i = j + 1
                continue
        match = re.match(r"def (ntd_\w+)\(", lines[i])
        if match and match[1] in hook_names:
            if not sections:
                raise ValueError(f"{match[1]} is defined before the first banner")
            sections[-1][2].append(match[1])
        i += 1
    return [Section(title=title, intro="\n".join(intro).strip(), hooks=tuple(hooks))
            for title, intro, hooks in sections]


# -- rendering -------------------------------------------------------------------------------


def to_markdown(text: str) -> str:
    """Docstring text → Markdown: ````x```` → ```x```, ``::`` blocks → fenced code."""
    out: list[str] = []
    prose: list[str] = []  # converted as one piece: a ````literal```` may span a line break
    lines = text.splitlines()

    def flush() -> None:
        if prose:
            out.extend(_inline("\n".join(prose)).splitlines())
            prose.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            prose.append(line)
            i += 1
            continue
        head = line.rstrip()[:-2].rstrip()
        if head:
            prose.append(head + ":")
        flush()
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        language = "toml" if any(b.strip().startswith("[") for b in block[:2]) else "python"
        if out and out[-1]:
            out.append("")
        out += [f"```{language}", *inspect.cleandoc("\n".join(block)).splitlines(), "```"]
        if i < len(lines):
            out.append("")
    flush()
    return "\n".join(out).strip()


def _inline(text: str) -> str:
    if text.count("``") % 2:
        raise ValueError(f"unbalanced ``literal`` in: {text[:80]!r}")
    return _LITERAL.sub(lambda m: f"`{m[1]}`", text)


def render_hook(hook: HookDoc) -> str:
    """The Markdown section of one hook."""
    args = ", ".join(name for name, _ in hook.params)
    typed = ", ".join(f"{name}: {ann}" for name, ann in hook.params)
    lines = [f"### `{hook.name}({args})`", "", "```python",
             f"def {hook.name}({typed}) -> {hook.returns}", "```", "", to_markdown(hook.body), ""]
    if hook.params:
        lines += ["**Parameters**", ""]
        lines += [f"- `{name}` (`{ann}`): {_inline(hook.param_docs[name])}"
                  for name, ann in hook.params]
        lines.append("")
    lines += [f"**Returns** `{hook.returns}`: {_inline(hook.returns_doc)}", ""]
    return "\n".join(lines)


def stage_table(hooks: dict[str, HookDoc]) -> str:
    """Pipeline stages: hook, the states it consumes (``engine.pipeline.STAGES``) and the
    states its ``:returns:`` line names."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.models import STATES

    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.pipeline import STAGES

    rows = ["| stage | hook | consumes states | results |", "|---|---|---|---|"]
    for stage in STAGES:
        hook = hooks.get(stage.hook)
        named = _LITERAL.findall(hook.returns_doc) if hook else []
        results = list(dict.fromkeys(s for s in named if s in STATES))
        rows.append(f"| {stage.name} | `{stage.hook}` | "
                    f"{', '.join(f'`{s}`' for s in stage.consumes)} | "
                    f"{', '.join(f'`{s}`' for s in results)} |")
    return "\n".join(rows)


def stage_result_table() -> str:
    """The fields of ``StageResult`` with their meaning."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.models import StageResult

    names = [f.name for f in dataclasses.fields(StageResult)]
    if set(names) != set(STAGE_RESULT_FIELDS):
        raise ValueError(f"STAGE_RESULT_FIELDS does not match StageResult's fields: {names}")
    rows = ["| field | meaning |", "|---|---|"]
    rows += [f"| `{name}` | {STAGE_RESULT_FIELDS[name]} |" for name in names]
    return "\n".join(rows)


def render(module: ModuleType | None = None) -> str:
    """The whole ``docs/hooks.md`` for ``module`` (default: ``engine.hookspecs``)."""
    if module is None:
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine import hookspecs

        module = hookspecs
    source = inspect.getsource(module)
    names = [name for name, value in vars(module).items()
             if name.startswith("ntd_") and callable(value)]
    hooks = {name: parse_hook(getattr(module, name)) for name in names}
    sections = parse_sections(source, names)
    placed = [h for s in sections for h in s.hooks]
    unplaced = sorted(set(names) - set(placed))
    if unplaced:
        raise ValueError(f"hooks outside any banner: {unplaced}")
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine.pipeline import STAGES

    stage_hooks = {s.hook for s in STAGES}
    parts = [HEADER, to_markdown(inspect.getdoc(module) or ""), ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        if section.intro:
            parts += [to_markdown(section.intro), ""]
        if stage_hooks & set(section.hooks):
            parts += [stage_table(hooks), ""]
        parts += [render_hook(hooks[name]) for name in section.hooks]
    parts += ["## The `StageResult`", "", stage_result_table(), ""]
    text = "\n".join(parts)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``docs/hooks.md`` (or, with ``--check``, report whether it is up to date)."""
    parser = argparse.ArgumentParser(prog="python -m engine.hookspecs_doc",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, default=DOC_PATH,
                        help=f"file to write (default: {DOC_PATH})")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the file differs from the hookspecs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run python -m engine.hookspecs_doc", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
