"""Plugin manager factory: hookspecs, then entry points of group ``ntd.plugins``.

Built-in stages (``plugins/``) are declared as entry points in ntd's own ``pyproject.toml`` and so
load through exactly the same path as a partner hotline's plugin package. ``NTD_DISABLE_PLUGINS``
(comma-separated entry-point names) blocks plugins by name, built-ins included. A plugin that fails
to import or declares an unknown hook is a ``PluginError`` naming it.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from engine import PROJECT, hookimpl, hookspecs
from engine.errors import PluginError

ENTRY_POINT_GROUP = "ntd.plugins"
DISABLE_ENV = "NTD_DISABLE_PLUGINS"

__all__ = ["ENTRY_POINT_GROUP", "DISABLE_ENV", "PluginInfo", "get_plugin_manager", "hookimpl"]


@dataclass(frozen=True)
class PluginInfo:
    """What ``ntd plugins`` shows for one plugin."""

    name: str
    version: str | None
    distribution: str | None
    module: str
    hooks: tuple[str, ...]
    builtin: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "version": self.version, "distribution": self.distribution,
                "module": self.module, "hooks": list(self.hooks), "builtin": self.builtin}


def disabled_names(env: str | None = None) -> set[str]:
    """Plugin names blocked by ``NTD_DISABLE_PLUGINS``."""
    raw = os.environ.get(DISABLE_ENV, "") if env is None else env
    return {part.strip() for part in raw.split(",") if part.strip()}


def get_plugin_manager(
    *,
    load_entrypoints: bool = True,
    extra_plugins: Iterable[tuple[str, object]] = (),
    disabled: set[str] | None = None,
) -> pluggy.PluginManager:
    """A fresh plugin manager: specs added, entry points loaded, extra plugins registered.

    ``extra_plugins`` are ``(name, module_or_object)`` pairs, used by tests and embedding code.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = disabled_names() if disabled is None else disabled
    for name in blocked:
        pm.set_blocked(name)
    pm._ntd_meta = {}  # type: ignore[attr-defined]
    if load_entrypoints:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time failure of foreign code
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}) failed to load: "
                    f"{type(exc).__name__}: {exc}") from exc
            dist = getattr(ep, "dist", None)
            _register(pm, ep.name, plugin,
                      version=dist.version if dist else None,
                      distribution=dist.metadata["Name"] if dist else None)
    for name, plugin in extra_plugins:
        if pm.is_blocked(name):
            continue
        if isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        if pm.is_registered(plugin):
            continue  # a built-in already loaded from its entry point
        _register(pm, name, plugin, version=None, distribution=None)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {_plugin_name(pm, exc.plugin)!r}: {exc}") from exc
    return pm


def _plugin_name(pm: pluggy.PluginManager, plugin: object) -> str:
    name = pm.get_name(plugin) or getattr(plugin, "__name__", None)
    return name if isinstance(name, str) else repr(plugin)


def _register(pm: pluggy.PluginManager, name: str, plugin: object, *,
              version: str | None, distribution: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from exc
    pm._ntd_meta[name] = (version, distribution)  # type: ignore[attr-defined]


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Each registered plugin with its version and the hooks it implements (``ntd plugins``)."""
    infos = []
    meta = getattr(pm, "_ntd_meta", {})
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda pair: pair[0]):
        if plugin is None:  # a blocked name
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        version, dist = meta.get(name, (None, None))
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        infos.append(PluginInfo(name=name, version=version, distribution=dist, module=module,
                                hooks=tuple(hooks), builtin=dist == PROJECT))
    return infos


def implementations(pm: pluggy.PluginManager, hook_name: str) -> list[pluggy.HookImpl]:
    """The implementations of a hook in call order (what pluggy would call first, first)."""
    caller = getattr(pm.hook, hook_name)
    return list(reversed(caller.get_hookimpls()))


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable (hooks may return either)."""
    if inspect.isawaitable(value):
        return await value
    return value


async def call_first(pm: pluggy.PluginManager, hook_name: str,
                     **kwargs: Any) -> tuple[Any, str | None]:
    """Call a hook's implementations one by one; return the first non-None answer and its plugin.

    Each implementation gets only the arguments it declares, as pluggy would pass them.
    """
    for impl in implementations(pm, hook_name):
        args = {name: kwargs[name] for name in impl.argnames}
        try:
            result = impl.function(**args)
            result = await await_me_maybe(result)
        except Exception as exc:
            exc.add_note(f"in hook {hook_name} of plugin {impl.plugin_name!r}")
            raise
        if result is not None:
            return result, impl.plugin_name
    return None, None


async def call_all(pm: pluggy.PluginManager, hook_name: str, _sync: bool = False,
                   **kwargs: Any) -> list[tuple[Any, str]]:
    """Call every implementation, awaiting each; ``(answer, plugin)`` of non-None answers.

    With ``_sync`` the answers are returned as they are (not awaited), for hooks that hand back
    coroutines to be scheduled (``ntd_service``).
    """
    answers: list[tuple[Any, str]] = []
    for impl in implementations(pm, hook_name):
        args = {name: kwargs[name] for name in impl.argnames}
        result: Awaitable[Any] | Any = impl.function(**args)
        if not _sync:
            result = await await_me_maybe(result)
        if result is not None:
            answers.append((result, impl.plugin_name))
    return answers


def call_all_sync(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[Any, str]]:
    """Like ``call_all`` for synchronous set-up hooks (config schema, commands)."""
    answers = []
    for impl in implementations(pm, hook_name):
        args = {name: kwargs[name] for name in impl.argnames}
        result = impl.function(**args)
        if inspect.isawaitable(result):
            raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} must not be async")
        if result is not None:
            answers.append((result, impl.plugin_name))
    return answers
