"""The supervised CPU pool: a task over its time or memory budget, or a worker that dies, costs
that task only; the worker is restarted and every other task goes on."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError

import pytest

from engine.cpu_pool import CpuPool, resident_mb
from engine.errors import WorkerError
from tests.conftest import wait_for


def spin(seconds: float) -> str:
    """Burn CPU for ``seconds`` (a parser gone quadratic)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def hog(mb: int) -> int:
    """Touch ``mb`` MiB and hold them for a while (a decoder allocating a gigabyte)."""
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    spin(5.0)
    return len(block)


def keep(mb: int) -> int:
    """Allocate ``mb`` MiB that stay resident after the task returns."""
    global _KEPT
    _KEPT = bytearray(mb * 2**20)
    for i in range(0, len(_KEPT), 4096):
        _KEPT[i] = 1
    return os.getpid()


_KEPT = bytearray()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fail() -> None:
    raise ValueError("bad input")


def setting(name: str) -> str:
    return os.environ.get(name, "")


def set_env(name: str, value: str) -> None:
    os.environ[name] = value


@pytest.fixture
def pool() -> Iterator[CpuPool]:
    p = CpuPool(2, memory_mb=400, setup=[(set_env, ("NTD_POOL_TEST", "set up"))])
    p.start()
    try:
        yield p
    finally:
        p.shutdown()


def test_results_exceptions_and_setup(pool: CpuPool) -> None:
    assert pool.submit(os.getpid).result() in pool.pids
    with pytest.raises(ValueError, match="bad input"):
        pool.submit(fail).result()
    assert pool.submit(setting, "NTD_POOL_TEST").result() == "set up"
    with pytest.raises(Exception, match="pickle"):
        pool.submit(lambda: 1).result()  # the caller's mistake; the worker is fine
    assert pool.submit(spin, 0.0).result() == "done"
    assert pool.restarts == {"worker_timeout": 0, "worker_memory": 0, "worker_crashed": 0,
                             "recycled": 0}


def test_a_task_over_its_time_budget_is_stopped_and_others_go_on(pool: CpuPool) -> None:
    started = time.monotonic()
    slow = pool.submit(spin, 60.0, timeout=0.3)
    quick = [pool.submit(spin, 0.01) for _ in range(20)]
    with pytest.raises(WorkerError) as info:
        slow.result(timeout=30)
    assert info.value.reason == "worker_timeout"
    assert time.monotonic() - started < 30  # not the 60 s the task wanted
    assert [f.result(timeout=30) for f in quick] == ["done"] * 20
    assert pool.restarts["worker_timeout"] == 1
    assert pool.submit(spin, 0.0).result(timeout=30) == "done"  # a fresh worker took its place


def test_a_worker_over_its_memory_budget_is_restarted(pool: CpuPool) -> None:
    with pytest.raises(WorkerError) as info:
        pool.submit(hog, 800).result(timeout=60)
    assert info.value.reason == "worker_memory"
    assert pool.restarts["worker_memory"] == 1
    assert pool.submit(spin, 0.0).result(timeout=30) == "done"


def own_rss() -> float:
    return resident_mb(os.getpid()) or 0.0


def test_a_worker_that_keeps_its_memory_is_recycled_after_the_task(pool: CpuPool) -> None:
    base = pool.submit(own_rss).result(timeout=30)  # what a worker holds before any task
    small = CpuPool(1, memory_mb=base + 200)
    small.start()
    try:
        pid = small.submit(keep, 170).result(timeout=60)  # under the budget, over 3/4 of it
        assert small.restarts["recycled"] == 1
        assert resident_mb(pid) is None and pid not in small.pids
        assert small.submit(spin, 0.0).result(timeout=30) == "done"
    finally:
        small.shutdown()


def test_a_worker_that_dies_costs_only_its_task(pool: CpuPool) -> None:
    with pytest.raises(WorkerError) as info:
        pool.submit(die).result(timeout=30)
    assert info.value.reason == "worker_crashed"
    assert [pool.submit(spin, 0.0).result(timeout=30) for _ in range(4)] == ["done"] * 4


def test_shutdown_cancels_what_is_queued() -> None:
    p = CpuPool(1)
    p.start()
    running = p.submit(spin, 0.3)
    queued = [p.submit(spin, 0.3) for _ in range(3)]
    wait_for(running.running, timeout=30)
    p.shutdown()
    assert running.result() == "done"
    for f in queued:
        with pytest.raises(CancelledError):
            f.result()
    with pytest.raises(RuntimeError):
        p.submit(spin, 0.0)
