"""The run context handed to every stage hook: configuration, clock, store, fetcher, CPU pool.

Plugins reach the outside world only through what this offers: ``ctx.fetcher`` is the SSRF-safe
fetcher (one shared instance per run), ``ctx.run_cpu`` runs CPU-bound work in the process pool so
the event loop never blocks (each task under a time budget, each worker under a memory budget:
``engine.cpu_pool``), ``ctx.store`` is the asynchronous facade of the case store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from engine.clock import Clock
from engine.config import Config
from engine.cpu_pool import CpuPool, Setup
from engine.errors import ConfigError, InputError, StorageError
from engine.models import Case
from engine.store import Store

if TYPE_CHECKING:
    from engine.safe_fetch import SafeFetcher

T = TypeVar("T")
log = logging.getLogger("ntd")


# Methods that only read: they run on reader threads with their own connections, so a busy
# writer thread (commits, claims) never delays loading a case.
READ_METHODS = frozenset({
    "load_case", "load_cases", "get_case", "list_cases", "count_by_state", "events",
    "hashlist_generation", "hashlists", "cache_get", "cache_items", "contacts_list",
    "contact_failures", "lease_owners", "list_notices", "get_notice", "notice_counts",
})
# Point reads by primary key that an embedded store (SQLite: a local file, ~40 µs for a whole
# case) answers faster than a hop to a reader thread costs the loop. Stores that say
# ``inline_reads = True`` run these on the loop's thread, on a connection of its own.
INLINE_READS = frozenset({"load_case", "hashlist_generation", "cache_get"})


class AsyncStore:
    """Runs ``Store`` methods off the event loop: writes on one dedicated thread (one writer,
    as SQLite wants), reads on a small pool of reader threads with their own connections."""

    def __init__(self, store: Store, *, readers: int = 2) -> None:
        self.sync = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ntd-db")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="ntd-db-read")
        self._local = threading.local()
        self._clones: list[Store] = []
        self._clone_lock = threading.Lock()
        self._inline = bool(getattr(store, "inline_reads", False))
        self._reader_count = readers
        self._wanted: dict[str, list[asyncio.Future[Case]]] = {}  # load_case: next batch
        self._loaders = 0  # batches of load_case being read
        # What the store raises when another process holds a lock ("database is locked").
        self._busy: tuple[type[Exception], ...] = (*getattr(store, "busy_errors", ()),
                                                   StorageError)

    def _thread_store(self, attr: str, make: Callable[[], Store]) -> Store:
        store = getattr(self._local, attr, None)
        if store is None:
            store = make()
            setattr(self._local, attr, store)
            with self._clone_lock:
                self._clones.append(store)
        return store

    def _read(self, method: str, args: Any, kwargs: Any) -> Any:
        return getattr(self._thread_store("store", self.sync.clone), method)(*args, **kwargs)

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Await ``store.method(*args, **kwargs)`` on the writer or a reader thread."""
        loop = asyncio.get_running_loop()
        if self._inline and method in INLINE_READS:
            try:
                inline = self._thread_store("inline", self.sync.inline_clone)  # type: ignore
                return getattr(inline, method)(*args, **kwargs)
            except self._busy:  # locked by another process (a VACUUM, a migration): wait for
                pass  # it on a reader thread, not on the event loop
        if method in READ_METHODS:
            return await loop.run_in_executor(self._readers,
                                              partial(self._read, method, args, kwargs))
        fn = getattr(self.sync, method)
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def load_case(self, case_id: str) -> Case:
        """A case for a stage. An embedded store reads it inline; a database server's reads
        are batched: the cases asked for while the readers are busy go out together in the
        next ``load_cases`` (one round trip for all of them: on PostgreSQL one per case kept
        the stages' workers waiting on the readers)."""
        if self._inline:
            return await self.call("load_case", case_id)  # type: ignore[no-any-return]
        fut: asyncio.Future[Case] = asyncio.get_running_loop().create_future()
        self._wanted.setdefault(case_id, []).append(fut)
        if self._loaders < self._reader_count:
            self._loaders += 1
            asyncio.get_running_loop().create_task(self._load_batches())
        return await fut

    async def _load_batches(self) -> None:
        try:
            while self._wanted:
                batch, self._wanted = self._wanted, {}
                failure: Exception | None = None
                try:
                    cases = await self.call("load_cases", list(batch))
                except Exception as exc:  # every waiter of the batch learns it
                    cases, failure = {}, exc
                for case_id, futures in batch.items():
                    case = cases.get(case_id)
                    for fut in futures:
                        if fut.done():
                            continue
                        if case is not None:
                            fut.set_result(case)
                        else:
                            fut.set_exception(failure or InputError(f"no case {case_id!r}"))
        finally:
            self._loaders -= 1

    async def call_fn(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(store, *args, **kwargs)`` run on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, self.sync, *args, **kwargs))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return partial(self.call, name)

    def close(self) -> None:
        """Stop the database threads and close the readers' connections (not the store)."""
        self._executor.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        for store in self._clones:
            store.close()
        self._clones.clear()


class StageContext:
    """What a stage hook may use. One per run; shared by all workers."""

    def __init__(self, *, config: Config, pm: pluggy.PluginManager, store: Store,
                 clock: Clock | None = None, owner: str = "ntd") -> None:
        self.config = config
        self.pm = pm
        self.clock = clock or Clock()
        self.store = AsyncStore(store)
        self.owner = owner
        self.daemon = False  # ``ntd run --daemon``: scheduled services (purge, ICCAM) run
        self.log = log
        self.state: dict[str, Any] = {}  # per-run scratch space for plugins, keyed by plugin
        self._fetcher: SafeFetcher | None = None
        self._cpu_pool: CpuPool | None = None
        self.cpu_preload: set[str] = set()  # modules the CPU pool's processes start with
        # Set by plugins before the pool starts (``ntd_startup``): functions (module-level,
        # with their arguments) every pool process calls when it starts, and the pool's total
        # memory budget in MiB (None: no limit), shared equally by its processes.
        self.cpu_setup: list[Setup] = []
        self.cpu_memory_mb: float | None = None
        self._cpu_lock = asyncio.Lock()

    # -- outbound HTTP -------------------------------------------------------------------------
    @property
    def fetcher(self) -> SafeFetcher:
        """The run's SSRF-safe fetcher, created on first use from ``[fetch]`` and ``[lab]``."""
        if self._fetcher is None:
            # deferred: pulls in aiohttp, loaded on first use
            from engine.safe_fetch import SafeFetcher

            self._fetcher = SafeFetcher(fetch_policy(self.config))
        return self._fetcher

    # -- CPU-bound work ------------------------------------------------------------------------
    async def start_cpu_pool(self) -> None:
        """Start the process pool now rather than at the first ``run_cpu`` (``ntd run`` does,
        before its first case). Its processes fork from a server that has already imported
        the modules plugins named in ``cpu_preload`` (the imaging stack, templates), so no
        worker imports them and the first cases do not wait for it."""
        if self._cpu_pool is not None:
            return
        async with self._cpu_lock:
            if self._cpu_pool is not None:
                return
            size = self.config.get("pipeline", "cpu_workers") or os.cpu_count() or 1
            nice = self.config.get("pipeline", "cpu_nice") or 0
            share = self.cpu_memory_mb / size if self.cpu_memory_mb else None
            pool = CpuPool(size, nice=nice, preload=sorted(self.cpu_preload),
                           setup=self.cpu_setup, memory_mb=share)
            # Starting the worker processes blocks; do it off the event loop.
            await asyncio.to_thread(pool.start)
            self._cpu_pool = pool

    async def run_cpu(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run a picklable module-level function in the process pool.

        ``timeout``: seconds the task may run before its worker is stopped and restarted (the
        call then raises :class:`~engine.errors.WorkerError`, reason ``worker_timeout``); a
        worker over its memory budget raises the same with ``worker_memory``.
        """
        if self._cpu_pool is None:
            await self.start_cpu_pool()
        assert self._cpu_pool is not None
        return await asyncio.wrap_future(self._cpu_pool.submit(fn, *args, timeout=timeout))

    async def aclose(self) -> None:
        """Close the fetcher, the process pool and the database thread."""
        if self._fetcher is not None:
            await self._fetcher.aclose()
            self._fetcher = None
        if self._cpu_pool is not None:
            pool, self._cpu_pool = self._cpu_pool, None
            await asyncio.to_thread(pool.shutdown, cancel_futures=True)
        self.store.close()


def fetch_policy(config: Config) -> Any:
    """Build the fetcher's policy from ``[fetch]`` and ``[lab]`` configuration.

    A value the policy refuses is a ``ConfigError`` (not a ``ValueError`` in every fetch)."""
    from engine.safe_fetch import FetchPolicy  # deferred: pulls in aiohttp, loaded on first use

    fetch = config.section("fetch")
    kwargs: dict[str, Any] = {
        "allow_private_networks": bool(config.get("lab", "allow_private_networks", False)),
        "per_host_limit": config.get("pipeline", "per_host_limit", 4),
    }
    for key in ("max_bytes", "max_video_bytes", "total_timeout", "connect_timeout",
                "max_redirects", "user_agent"):
        if fetch.get(key) is not None:
            kwargs[key] = fetch[key]
    if fetch.get("allowed_ports"):
        kwargs["allowed_ports"] = frozenset(fetch["allowed_ports"])
    hosts = config.section("resolve.hosts")
    if hosts:
        kwargs["static_hosts"] = {k: list(v) if isinstance(v, list) else [v]
                                  for k, v in hosts.items()}
    try:
        return FetchPolicy(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[fetch]: {exc}") from exc
