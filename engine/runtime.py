"""Start-up wiring: plugins → merged config schema → validated config → store → run context."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from engine import retention
from engine.assessment import SCHEMA as ASSESSMENT_SCHEMA
from engine.clock import Clock
from engine.config import ENGINE_SCHEMA, Config, Option, find_config_path, read_toml, validate
from engine.context import StageContext, fetch_policy
from engine.errors import ConfigError, InputError, PluginError
from engine.logs import setup_logging
from engine.pipeline import Pipeline, RunSummary, default_owner
from engine.plugin_manager import call_all, call_all_sync, get_plugin_manager
from engine.retention import SCHEMA as RETENTION_SCHEMA
from engine.store import Store, missing_database, open_store


def merged_schema(pm: pluggy.PluginManager) -> dict[str, dict[str, Option]]:
    """The engine's config schema plus every plugin's sections (a section has one owner)."""

    schema: dict[str, dict[str, Option]] = {
        k: dict(v) for k, v in {**ENGINE_SCHEMA, **RETENTION_SCHEMA,
                                **ASSESSMENT_SCHEMA}.items()}
    owners = {name: "engine" for name in schema}
    for sections, plugin in call_all_sync(pm, "ntd_config_schema"):
        for section, options in sections.items():
            if section in owners:
                raise PluginError(f"plugin {plugin!r}: config section [{section}] is already "
                                  f"declared by {owners[section]!r}")
            owners[section] = plugin
            schema[section] = dict(options)
    return schema


def load_config(pm: pluggy.PluginManager, path: str | Path | None = None,
                overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read and validate the configuration (``--config``, ``NTD_CONFIG``, ``./ntd.toml``).

    Besides the schema, what start-up builds from it is checked here too (the fetcher's policy,
    the log file's folder), so ``ntd config check`` refuses exactly what start-up would."""
    found = find_config_path(path)
    raw: dict[str, Any] = read_toml(found) if found else {}
    for section, values in (overrides or {}).items():
        target = raw
        for part in section.split("."):
            target = target.setdefault(part, {})
        target.update(values)
    config = validate(raw, merged_schema(pm), path=found)
    where = f"{found}: " if found else ""
    try:
        fetch_policy(config)
    except ConfigError as exc:
        raise ConfigError(where + exc.message) from exc
    log_file = config.get("logging", "file")
    if log_file:
        folder = Path(log_file).expanduser().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ConfigError(f"{where}[logging] file: cannot write {log_file} "
                              f"(no writable folder {folder})")
    return config


@dataclass
class Runtime:
    """Everything a command needs: plugins, configuration, store and clock."""

    pm: pluggy.PluginManager
    config: Config
    store: Store
    clock: Clock

    @classmethod
    def open(cls, *, db: str | None = None, config_path: str | Path | None = None,
             extra_plugins: Iterable[tuple[str, object]] = (),
             overrides: dict[str, dict[str, Any]] | None = None,
             clock: Clock | None = None, must_exist: bool = False) -> Runtime:
        """Load plugins and configuration, then open (and migrate) the store.

        ``must_exist``: a SQLite database that is not there is an ``InputError`` ("no database
        at PATH"), reported after any configuration error, instead of a new empty file."""
        pm = get_plugin_manager(extra_plugins=extra_plugins)
        config = load_config(pm, config_path, overrides)

        try:
            setup_logging(config.get("logging", "level", "WARNING"),
                          fmt=config.get("logging", "format", "text"),
                          file=config.get("logging", "file"))
        except OSError as exc:
            raise ConfigError(f"[logging] file: cannot open {config.get('logging', 'file')}: "
                              f"{exc.strerror or exc}") from exc
        missing = missing_database(db) if must_exist else None
        if missing:
            raise InputError(f"no database at {missing} (run `ntd db migrate` to create one, "
                             "or give --db / NTD_DATABASE_URL)")
        return cls(pm=pm, config=config, store=open_store(db), clock=clock or Clock())

    def context(self, owner: str | None = None) -> StageContext:
        """A fresh run context."""
        return StageContext(config=self.config, pm=self.pm, store=self.store, clock=self.clock,
                            owner=owner or default_owner())

    async def run_pipeline(self, *, until_idle: bool = True, workers: int | None = None,
                           owner: str | None = None, on_progress: Any = None,
                           install_signal_handlers: bool = True,
                           retention: bool = False) -> RunSummary:
        """Start plugins, run the pipeline, shut plugins down.

        ``retention`` (``ntd run --daemon``) also runs feedback and purge every
        ``[retention] purge_interval_minutes``.
        """
        ctx = self.context(owner)
        ctx.daemon = retention
        purger: asyncio.Task[None] | None = None
        try:
            await call_all(self.pm, "ntd_startup", ctx=ctx)
            pipeline = Pipeline(ctx, workers=workers, until_idle=until_idle,
                                on_progress=on_progress,
                                install_signal_handlers=install_signal_handlers)
            if retention:
                purger = asyncio.create_task(self._purge_loop(pipeline))
            return await pipeline.run()
        finally:
            if purger is not None:
                purger.cancel()
                await asyncio.gather(purger, return_exceptions=True)
            try:
                await call_all(self.pm, "ntd_shutdown", ctx=ctx)
            finally:
                await ctx.aclose()

    async def _purge_loop(self, pipeline: Pipeline) -> None:
        """Feedback and retention on a schedule, off the event loop (its own store thread)."""

        interval = self.config.get("retention", "purge_interval_minutes", 60.0) * 60
        while True:
            await asyncio.to_thread(self._purge_once, retention)
            await asyncio.sleep(interval)

    def _purge_once(self, retention: Any) -> None:
        # A separate connection: the pipeline's store thread keeps its own.
        store = open_store(getattr(self.store, "url", None))
        try:
            rt = Runtime(pm=self.pm, config=self.config, store=store, clock=self.clock)
            retention.send_feedback(rt)
            retention.purge(rt)
        finally:
            store.close()

    def run_pipeline_sync(self, **kwargs: Any) -> RunSummary:
        """``run_pipeline`` from synchronous code."""
        return asyncio.run(self.run_pipeline(**kwargs))

    def close(self) -> None:
        """Close the store."""
        self.store.close()
