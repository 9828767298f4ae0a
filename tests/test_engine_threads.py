"""Where the engine does its work: the CPU pool runs below the event loop, and SQLite point
reads stay on the loop's thread (a hop to a reader thread cost the loop more than the read)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from engine.intake import submit_files
from engine.runtime import Runtime


async def test_cpu_pool_processes_run_at_a_lower_priority(db_path: Path) -> None:
    rt = Runtime.open(db=str(db_path), overrides={"pipeline": {"cpu_workers": 1,
                                                               "cpu_nice": 7}})
    ctx = rt.context()
    try:
        assert await ctx.run_cpu(os.nice, 0) == os.nice(0) + 7
    finally:
        await ctx.aclose()
        rt.close()


async def test_cpu_nice_zero_keeps_the_engine_priority(db_path: Path) -> None:
    rt = Runtime.open(db=str(db_path), overrides={"pipeline": {"cpu_workers": 1,
                                                               "cpu_nice": 0}})
    ctx = rt.context()
    try:
        assert await ctx.run_cpu(os.nice, 0) == os.nice(0)
    finally:
        await ctx.aclose()
        rt.close()


def _one_case(db_path: Path, tmp_path: Path) -> tuple[Runtime, str]:
    rt = Runtime.open(db=str(db_path))
    src = tmp_path / "urls.txt"
    src.write_text("http://h.example/1.png\n")
    submit_files(rt.store, [str(src)])
    (case_id,) = [c["id"] for c in rt.store.list_cases()]
    return rt, case_id


async def test_sqlite_point_reads_run_on_the_loop_thread(db_path: Path, tmp_path: Path) -> None:
    rt, case_id = _one_case(db_path, tmp_path)
    ctx = rt.context()
    seen: list[int] = []
    original = type(rt.store).load_case

    def spy(self, case_id):  # type: ignore[no-untyped-def]
        seen.append(threading.get_ident())
        return original(self, case_id)

    type(rt.store).load_case = spy  # type: ignore[method-assign]
    try:
        case = await ctx.store.load_case(case_id)
        listed = await ctx.store.list_cases()  # not a point read: a reader thread
    finally:
        type(rt.store).load_case = original  # type: ignore[method-assign]
        await ctx.aclose()
        rt.close()
    assert case.id == case_id and listed[0]["id"] == case_id
    assert seen == [threading.get_ident()]


async def test_a_locked_database_sends_point_reads_to_a_reader_thread(db_path: Path,
                                                                      tmp_path: Path) -> None:
    import sqlite3

    rt, case_id = _one_case(db_path, tmp_path)
    ctx = rt.context()
    loop_thread = threading.get_ident()
    threads: list[int] = []
    original = type(rt.store).load_case

    def locked_on_the_loop(self, case_id):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        if threading.get_ident() == loop_thread:
            raise sqlite3.OperationalError("database is locked")
        return original(self, case_id)

    type(rt.store).load_case = locked_on_the_loop  # type: ignore[method-assign]
    try:
        case = await ctx.store.load_case(case_id)
    finally:
        type(rt.store).load_case = original  # type: ignore[method-assign]
        await ctx.aclose()
        rt.close()
    assert case.id == case_id
    assert threads[0] == loop_thread and threads[1] != loop_thread


async def test_a_server_stores_case_loads_are_batched(db_path: Path, tmp_path: Path) -> None:
    """Where reads are not inline (PostgreSQL), the cases stages ask for while the readers
    are busy go out together in one ``load_cases``; a missing case fails only its caller."""
    import asyncio

    import pytest

    from engine.errors import InputError

    rt = Runtime.open(db=str(db_path))
    src = tmp_path / "urls.txt"
    src.write_text("".join(f"http://h.example/{n}.png\n" for n in range(40)))
    submit_files(rt.store, [str(src)])
    ids = [c["id"] for c in rt.store.list_cases(limit=100)]
    ctx = rt.context()
    ctx.store._inline = False  # as a server's store says (no inline_reads)
    batches: list[int] = []
    original = type(rt.store).load_cases

    def spy(self, case_ids):  # type: ignore[no-untyped-def]
        batches.append(len(case_ids))
        return original(self, case_ids)

    type(rt.store).load_cases = spy  # type: ignore[method-assign]
    try:
        cases = await asyncio.gather(*(ctx.store.load_case(i) for i in ids))
        with pytest.raises(InputError, match="no case"):
            await ctx.store.load_case("C-missing")
    finally:
        type(rt.store).load_cases = original  # type: ignore[method-assign]
        await ctx.aclose()
        rt.close()
    assert [c.id for c in cases] == ids
    assert sum(batches[:-1]) == len(ids) and len(batches) - 1 < len(ids) // 4
    assert batches[-1] == 1
