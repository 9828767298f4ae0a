"""The CPU pool: worker processes for decoding, hashing, page parsing and notice rendering, each
watched for time and memory.

``concurrent.futures.ProcessPoolExecutor`` cannot stop one task: a page that makes a parser go
quadratic, or an image whose decode allocates a gigabyte, holds its worker as long as it likes,
and a worker that dies (killed for memory, or a crash in a decoder) breaks the whole executor for
every later task. Here each worker process has a thread in the parent that hands it one task at a
time and, while it runs, looks at the clock and at the worker's resident memory every
``poll_seconds``:

* a task past its ``timeout`` → the worker is killed and restarted, the task fails with
  :class:`~engine.errors.WorkerError` reason ``worker_timeout``;
* a worker over ``memory_mb`` (its share of the pool's budget) → likewise, ``worker_memory``;
* a worker that died by itself → ``worker_crashed``; the next task gets a fresh worker;
* a worker that *finished* its task but kept more than ``RECYCLE_SHARE`` of its budget resident
  (memory the allocator did not give back) is restarted before its next task.

Only the task that was running fails; every other task, queued or on another worker, goes on.
Workers start from the ``forkserver`` (forking a process that runs threads is unsafe) with the
modules of ``preload`` already imported, lowered by ``nice``, after calling each ``setup``
function (module-level, picklable) with its arguments.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from engine.errors import WorkerError

log = logging.getLogger("ntd.cpu")

RECYCLE_SHARE = 0.75  # restart an idle worker holding more than this share of its budget
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_START_TIMEOUT = 120.0  # a worker must be ready (imports and setup done) within this


Setup = tuple[Callable[..., Any], tuple[Any, ...]]


def resident_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``), or None if unknown."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _worker_main(conn: Connection, nice: int, preload: Sequence[str],
                 setup: Sequence[Setup]) -> None:
    """A worker process: imports and setup, then one task at a time until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine decides when its workers stop
    if nice:
        os.nice(nice)
    # Normally the forkserver has imported these already; if it was started earlier without
    # them (another pool in this process), import them now: no task's time budget pays for it.
    for name in preload:
        importlib.import_module(name)
    for fn, args in setup:
        fn(*args)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args = task
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = ("error", exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result or exception
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


@dataclass
class _Task:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    timeout: float | None
    future: Future[Any] = field(default_factory=Future)


class _Worker:
    """One worker process and the pipe to it (used by its slot thread only)."""

    def __init__(self, pool: CpuPool) -> None:
        self.pool = pool
        self.conn, child = pool.mp.Pipe(duplex=True)
        self.proc = pool.mp.Process(target=_worker_main,
                                    args=(child, pool.nice, pool.preload, pool.setup),
                                    daemon=True, name="ntd-cpu")
        self.proc.start()
        child.close()
        if not self.conn.poll(_START_TIMEOUT):
            self.kill()
            raise WorkerError("a CPU worker did not start", reason="worker_crashed")
        self.conn.recv()  # ("ready", pid)

    @property
    def pid(self) -> int:
        return int(self.proc.pid or 0)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.join(10)
        with contextlib.suppress(Exception):
            self.conn.close()

    def stop(self) -> None:
        """Ask the worker to exit; kill it if it does not."""
        with contextlib.suppress(Exception):
            self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.kill()
        with contextlib.suppress(Exception):
            self.conn.close()


class CpuPool:
    """``size`` supervised worker processes; ``submit`` returns a ``concurrent`` future.

    ``memory_mb`` is the budget of each worker (resident memory), None for no limit.
    """

    def __init__(self, size: int, *, nice: int = 0, preload: Sequence[str] = (),
                 setup: Sequence[Setup] = (), memory_mb: float | None = None,
                 poll_seconds: float = 0.02) -> None:
        self.size = max(1, size)
        self.nice = nice
        self.setup = list(setup)
        self.preload = sorted(preload)
        self.memory_mb = memory_mb
        self.poll_seconds = poll_seconds
        self.mp = multiprocessing.get_context("forkserver")
        if preload:  # (the server starts once per process: later lists are moot)
            self.mp.set_forkserver_preload(sorted(preload))
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._slots: list[threading.Thread] = []
        self._closed = False
        self.restarts = {"worker_timeout": 0, "worker_memory": 0, "worker_crashed": 0,
                         "recycled": 0}
        self.pids: list[int] = []

    def start(self) -> None:
        """Start every worker process and its slot thread (blocks until all are ready)."""
        workers: list[_Worker | None] = [None] * self.size
        errors: list[BaseException] = []

        def make(i: int) -> None:
            try:
                workers[i] = _Worker(self)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        starters = [threading.Thread(target=make, args=(i,)) for i in range(self.size)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if errors:
            for w in workers:
                if w is not None:
                    w.kill()
            raise errors[0]
        self.pids = [w.pid if w is not None else 0 for w in workers]
        for i, worker in enumerate(workers):
            slot = threading.Thread(target=self._slot, args=(i, worker), daemon=True,
                                    name=f"ntd-cpu-{i}")
            slot.start()
            self._slots.append(slot)

    def submit(self, fn: Callable[..., Any], *args: Any,
               timeout: float | None = None) -> Future[Any]:
        """Queue ``fn(*args)`` for the next free worker; ``timeout`` in seconds once it runs."""
        if self._closed:
            raise RuntimeError("the CPU pool is shut down")
        task = _Task(fn, args, timeout)
        self._tasks.put(task)
        return task.future

    def shutdown(self, *, cancel_futures: bool = True) -> None:
        """Stop the workers after the running tasks; queued tasks are cancelled (or run)."""
        if self._closed:
            return
        self._closed = True
        if cancel_futures:
            with contextlib.suppress(queue.Empty):
                while True:
                    task = self._tasks.get_nowait()
                    if task is not None:
                        task.future.cancel()
        for _ in self._slots:
            self._tasks.put(None)
        for slot in self._slots:
            slot.join()

    # -- the slot thread: one per worker process ------------------------------------------------
    def _slot(self, index: int, worker: _Worker | None) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                break
            if not task.future.set_running_or_notify_cancel():
                continue
            try:
                if worker is None:
                    worker = _Worker(self)
                    self.pids[index] = worker.pid
                worker = self._run(worker, task)
                if worker is None:
                    self.pids[index] = 0
            except BaseException as exc:  # noqa: BLE001 - never lose the slot thread
                if not task.future.done():
                    task.future.set_exception(exc)
                if worker is not None:
                    worker.kill()
                worker = None
        if worker is not None:
            worker.stop()

    def _run(self, worker: _Worker, task: _Task) -> _Worker | None:
        """Run one task on ``worker``; returns the worker to use next (None: start a new one)."""
        try:
            payload = bytes(ForkingPickler.dumps((task.fn, task.args)))
        except Exception as exc:  # an unpicklable task: the caller's error, the worker is fine
            task.future.set_exception(exc)
            return worker
        try:
            worker.conn.send_bytes(payload)
        except (BrokenPipeError, EOFError, OSError):
            worker.kill()
            self._fail(task, "worker_crashed", "the CPU worker had died")
            return None
        del payload
        started = time.monotonic()
        while not worker.conn.poll(self.poll_seconds):
            if not worker.proc.is_alive():
                worker.kill()
                self._fail(task, "worker_crashed",
                           f"the CPU worker died (exit code {worker.proc.exitcode})")
                return None
            if task.timeout is not None and time.monotonic() - started > task.timeout:
                worker.kill()
                self._fail(task, "worker_timeout",
                           f"stopped after {task.timeout:g} s (the task's time budget)")
                return None
            if self.memory_mb is not None:
                used = resident_mb(worker.pid)
                if used is not None and used > self.memory_mb:
                    worker.kill()
                    self._fail(task, "worker_memory",
                               f"stopped at {used:.0f} MiB resident (budget "
                               f"{self.memory_mb:.0f} MiB)")
                    return None
        try:
            status, value = worker.conn.recv()
        except (EOFError, OSError):
            worker.kill()
            self._fail(task, "worker_crashed", "the CPU worker died while answering")
            return None
        keep: _Worker | None = worker
        if self.memory_mb is not None:
            used = resident_mb(worker.pid)
            if used is not None and used > RECYCLE_SHARE * self.memory_mb:
                self.restarts["recycled"] += 1
                worker.stop()  # give the memory back; the next task starts a fresh worker
                keep = None
        if status == "ok":
            task.future.set_result(value)
        else:
            task.future.set_exception(value)
        return keep

    def _fail(self, task: _Task, reason: str, message: str) -> None:
        self.restarts[reason] += 1
        name = getattr(task.fn, "__qualname__", repr(task.fn))
        log.warning("CPU worker restarted: %s %s", name, message)
        task.future.set_exception(WorkerError(f"{name}: {message}", reason=reason))
