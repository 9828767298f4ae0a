"""Intake: every format, bad lines with line numbers, dedup, privacy of web-form reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.intake import submit_files
from engine.intake_formats import detect_format
from engine.store import open_store
from tests.conftest import ntd_json, run_ntd


@pytest.fixture
def store(db_path: Path):
    s = open_store(str(db_path))
    yield s
    s.close()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_submit_text_with_bad_lines(tmp_path: Path, store) -> None:
    src = write(tmp_path, "urls.txt", "http://a.example/1\n\n# comment\njavascript:alert(1)\n"
                "http://b.example/2\nftp://c.example/\n")
    result = submit_files(store, [src])
    assert result.accepted == 2
    assert result.duplicates == 0
    assert [(r["line"], r["input"]) for r in result.rejected] == [
        (4, "javascript:alert(1)"), (6, "ftp://c.example/")]
    assert all(r["reason"] for r in result.rejected)
    assert store.count_by_state() == {"new": 2}


def test_submit_csv_keeps_metadata_but_not_personal_fields(tmp_path: Path, store) -> None:
    src = write(tmp_path, "batch.csv", "url,source,email,ip\n"
                "http://a.example/x,partner-feed,someone@example.org,198.51.100.7\n"
                "not a url at all,partner-feed,,\n")
    result = submit_files(store, [src], channel="partner")
    assert result.accepted == 1
    assert result.rejected[0]["line"] == 3
    case = store.list_cases()[0]
    assert case["reports"][0]["metadata"] == {"source": "partner-feed"}
    assert case["reports"][0]["channel"] == "partner"


def test_submit_csv_without_url_column_is_an_error(tmp_path: Path, store) -> None:
    src = write(tmp_path, "bad.csv", "link,source\nhttp://a.example/,x\n")
    with pytest.raises(InputError, match="no 'url' column"):
        submit_files(store, [src])


def test_submit_json_array_and_ndjson(tmp_path: Path, store) -> None:
    arr = write(tmp_path, "a.json", json.dumps(
        [{"url": "http://a.example/1", "tag": "x"}, "http://a.example/2", 42, {"nourl": 1}]))
    nd = write(tmp_path, "b.ndjson", '{"url": "http://a.example/3"}\n{broken\n'
               '{"url": "http://a.example/1"}\n')
    result = submit_files(store, [arr, nd])
    assert result.accepted == 3
    assert result.duplicates == 1  # a.example/1 again in the NDJSON file
    assert sorted((r["file"].rsplit("/", 1)[-1], r["line"]) for r in result.rejected) == [
        ("a.json", 3), ("a.json", 4), ("b.ndjson", 2)]


def test_webform_reports_drop_reporter_fields(tmp_path: Path, store) -> None:
    src = write(tmp_path, "form.ndjson", json.dumps({
        "url": "http://a.example/p", "username": "canary-user", "phone": "+31600000000",
        "first_name": "Canary", "email": "x@example.org", "ip": "203.0.113.9",
        "comment": "seen on a forum"}) + "\n")
    submit_files(store, [src], channel="webform")
    raw = Path(store.path).read_bytes() + _wal(store)
    for marker in (b"canary-user", b"+31600000000", b"Canary", b"x@example.org",
                   b"203.0.113.9"):
        assert marker not in raw
    case = store.list_cases()[0]
    assert case["reports"][0]["metadata"] == {"comment": "seen on a forum"}


def _wal(store) -> bytes:
    wal = Path(str(store.path) + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_rereport_of_open_case_is_a_duplicate(tmp_path: Path, store) -> None:
    first = submit_files(store, [write(tmp_path, "1.txt", "HTTP://A.Example:80/x/../y#frag\n")])
    second = submit_files(store, [write(tmp_path, "2.txt", "http://a.example/y\n")])
    assert (first.accepted, second.accepted, second.duplicates) == (1, 0, 1)
    case = store.list_cases()[0]
    assert case["canonical_url"] == "http://a.example/y"
    assert [r["duplicate"] for r in case["reports"]] == [False, True]
    assert len({r["batch"] for r in case["reports"]}) == 2


def test_rereport_of_closed_case_opens_a_new_case(tmp_path: Path, store) -> None:
    submit_files(store, [write(tmp_path, "1.txt", "http://a.example/y\n")])
    case_id = store.list_cases()[0]["id"]
    store.transition(case_id, state="closed", stage="test", actor="test", action="closed",
                     now="2026-01-01T00:00:00.000000Z")
    again = submit_files(store, [write(tmp_path, "2.txt", "http://a.example/y\n")])
    assert again.accepted == 1 and again.duplicates == 0
    assert len(store.list_cases()) == 2


def test_large_file_streams_in_chunks(tmp_path: Path, store, monkeypatch) -> None:
    monkeypatch.setattr("engine.intake.CHUNK", 2000)
    lines = [f"http://h{i % 50}.example/p/{i}\n" for i in range(5000)]
    src = write(tmp_path, "big.txt", "".join(lines + lines[:40]))  # 40 duplicates at the end
    seen: list[int] = []
    result = submit_files(store, [src], progress=seen.append)
    assert (result.accepted, result.duplicates) == (5000, 40)
    assert len(seen) >= 3 and seen == sorted(seen)  # progress reported per chunk


def test_cyclic_gc_pauses_during_intake_and_resumes(tmp_path: Path, store) -> None:
    import gc

    src = write(tmp_path, "a.txt", "http://a.example/1\nhttp://a.example/2\n")
    during: list[bool] = []
    assert gc.isenabled()
    submit_files(store, [src], progress=lambda n: during.append(gc.isenabled()))
    assert during and not any(during) and gc.isenabled()
    gc.disable()  # a caller that had it off keeps it off
    try:
        submit_files(store, [src])
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize(("name", "head", "fmt"), [
    ("x.txt", "http://a", "text"), ("x.csv", "url\n", "csv"), ("-", "[", "json"),
    ("-", '{"url":1}', "ndjson"), ("-", "url,src\nhttp://a,b", "csv"), ("-", "http://a", "text"),
])
def test_detect_format(name: str, head: str, fmt: str) -> None:
    assert detect_format(name, head) == fmt


def test_cli_submit_json_contract_and_stdin(db_path: Path) -> None:
    out = ntd_json("submit", "-", db=db_path,
                   input="http://a.example/1\nhttp://a.example/1\nfile:///etc/passwd\n")
    assert set(out) == {"accepted", "duplicates", "rejected", "batch"}
    assert (out["accepted"], out["duplicates"]) == (1, 1)
    assert out["rejected"] == [{"line": 3, "input": "file:///etc/passwd",
                                "reason": out["rejected"][0]["reason"]}]
    status = ntd_json("status", db=db_path)
    assert status == {"cases": 1, "by_state": {"new": 1}}


def test_cli_unreadable_file_exits_2(db_path: Path, tmp_path: Path) -> None:
    proc = run_ntd("submit", str(tmp_path / "missing.txt"), db=db_path)
    assert proc.returncode == 2
    assert "missing.txt" in proc.stderr
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02garbage\xff")
    proc = run_ntd("submit", str(binary), db=db_path)
    assert proc.returncode == 2 and "blob.bin" in proc.stderr
