"""engine.web.signin: sign-in slowing that cannot lock an account, and the argon2 work gate."""

from __future__ import annotations

import asyncio

import pytest

from engine.web.signin import GateFull, SignInThrottle, WorkGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **kw: float) -> SignInThrottle:
    return SignInThrottle(clock=clock, **{"base_delay": 1.0, "max_delay": 8.0, "free": 2,
                                          "window": 60.0, **kw})  # type: ignore[arg-type]


def fail(t: SignInThrottle, n: int, name: str = "alice", **who: str | None) -> None:
    for _ in range(n):
        t.failed(name, device=who.get("device"), client=who.get("client"))


def test_delay_grows_with_failures_and_is_capped() -> None:
    t = throttle(Clock())
    assert [t.delay_for(n) for n in range(8)] == [0, 0, 1, 2, 4, 8, 8, 8]
    assert t.delay_for(10**6) == 8  # no overflow for any count


def test_failures_are_forgotten_after_the_window() -> None:
    clock = Clock()
    t = throttle(clock)
    fail(t, 4)
    assert t.plan("alice", device=None, client=None).delay == 4
    clock.now += 61
    assert t.plan("alice", device=None, client=None).delay == 0


def test_a_known_device_is_not_slowed_by_other_clients() -> None:
    clock = Clock()
    t = throttle(clock)
    fail(t, 50, client="stranger")
    assert t.plan("alice", device=None, client=None).delay == 8  # unknown browsers: capped
    assert t.plan("alice", device="dev-1", client=None) .delay == 0
    fail(t, 3, device="dev-1")  # its own failures do count
    assert t.plan("alice", device="dev-1", client=None).delay == 2
    t.succeeded("alice", device="dev-1", client=None)
    assert t.plan("alice", device="dev-1", client=None).delay == 0


def test_a_client_is_slowed_by_its_own_failures_across_accounts() -> None:
    t = throttle(Clock())
    for name in ("a1", "a2", "a3", "a4"):
        fail(t, 1, name=name, client="nonce-1")
    assert t.plan("a5", device=None, client="nonce-1").delay == 4
    assert t.plan("a5", device=None, client="nonce-2").delay == 0


def test_parallel_attempts_on_an_account_are_spaced_then_refused_for_a_while() -> None:
    clock = Clock()
    t = throttle(clock)
    fail(t, 4)  # spacing 4 s
    plans = [t.plan("alice", device=None, client=None) for _ in range(4)]
    assert [p.delay for p in plans[:2]] == [4, 8]
    assert plans[2].refused and plans[2].retry_after == pytest.approx(4)
    clock.now += 8
    assert not t.plan("alice", device=None, client=None).refused  # later, it gets through
    assert t.plan("alice", device="dev-1", client=None).delay == 0  # known devices: no queue


def test_memory_is_bounded() -> None:
    clock = Clock()
    t = throttle(clock, max_keys=100)
    for i in range(1000):
        clock.now += 0.001
        fail(t, 1, name=f"random-{i}")
    assert len(t._failures) <= 100


async def test_gate_runs_at_most_limit_and_serves_known_devices_first() -> None:
    gate = WorkGate(2, max_waiting=10)
    release = asyncio.Event()
    order: list[str] = []

    async def work(name: str, priority: int) -> None:
        async with gate.slot(priority):
            order.append(name)
            await release.wait()

    tasks = [asyncio.create_task(work(f"u{i}", 1)) for i in range(4)]
    await asyncio.sleep(0)  # let them queue (a scheduling turn, no time passes)
    tasks.append(asyncio.create_task(work("known", 0)))
    await asyncio.sleep(0)
    assert order == ["u0", "u1"] and gate.running == 2 and gate.waiting == 3
    release.set()
    await asyncio.gather(*tasks)
    assert order[2] == "known" and gate.peak == 2 and gate.running == 0


async def test_gate_refuses_when_the_queue_is_full_and_survives_cancellation() -> None:
    gate = WorkGate(1, max_waiting=1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            await hold.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.create_task(holder())
    await asyncio.sleep(0)
    with pytest.raises(GateFull):
        async with gate.slot():
            pass
    second.cancel()  # a client that gave up: its place is freed
    await asyncio.gather(second, return_exceptions=True)
    hold.set()
    await first
    async with gate.slot():
        assert gate.running == 1
    assert gate.running == 0
