"""Hostile intake (issue 17, item 5): every line ends stored or rejected with its number.

Each test here failed before the bounded readers: a 5,000-digit integer or 50,000 ``[`` in one
NDJSON line crashed ``ntd submit`` (nothing stored), a CSV with a byte order mark was refused
whole, an unclosed quote swallowed the next URLs into a note, the "not UTF-8" byte offset was
relative to a decoder chunk, and a 64 MB line was held (and copied) in memory.
"""

from __future__ import annotations

import io
import json
import re
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.bounded_lines import MAX_LINE_BYTES, read_lines
from engine.errors import InputError
from engine.intake import submit_files
from engine.intake_formats import read_records
from engine.store import open_store
from engine.web.intake_web import parse_batch
from tests.conftest import ntd_json

HUGE_INT = '{"url": "http://a.example/huge", "n": ' + "1" * 5000 + "}"
DEEP = "[" * 50_000
GOOD = ['{"url": "http://a.example/1"}', '{"url": "http://a.example/2", "tag": "x"}']


@pytest.fixture
def store(db_path: Path):
    s = open_store(str(db_path))
    yield s
    s.close()


def write(tmp_path: Path, name: str, data: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return str(path)


def reasons(result) -> dict[int, str]:
    return {r["line"]: r["reason"] for r in result.rejected}


# -- NDJSON ------------------------------------------------------------------------------------
def test_ndjson_huge_number_deep_nesting_and_nan_are_rejected_lines(tmp_path: Path,
                                                                    store) -> None:
    body = "\n".join([GOOD[0], HUGE_INT, DEEP, '{"url": "http://a.example/n", "x": NaN}',
                      '{"url": "http://a.example/d", "m": ' + "[" * 40 + "]" * 40 + "}",
                      GOOD[1]]) + "\n"
    result = submit_files(store, [write(tmp_path, "x.ndjson", body)])
    assert result.accepted == 2
    got = reasons(result)
    assert sorted(got) == [2, 3, 4, 5]
    assert "number too long (5000 characters" in got[2]
    assert "nested deeper than 32 levels" in got[3] and "nested deeper" in got[5]
    assert "NaN is not JSON" in got[4]
    assert sorted(c["canonical_url"] for c in store.list_cases()) == [
        "http://a.example/1", "http://a.example/2"]


def test_cli_submit_of_hostile_ndjson_stores_the_good_lines(tmp_path: Path,
                                                            db_path: Path) -> None:
    src = write(tmp_path, "x.ndjson", "\n".join([HUGE_INT, GOOD[0], DEEP, GOOD[1]]) + "\n")
    out = ntd_json("submit", src, db=db_path)  # asserts exit 0: no traceback
    assert out["accepted"] == 2
    assert [r["line"] for r in out["rejected"]] == [1, 3]


def test_json_array_elements_are_rejected_one_by_one(tmp_path: Path, store) -> None:
    doc = '[{"url": "http://a.example/1"}, ' + HUGE_INT + ", " + "[" * 100 + "]" * 100 + \
        ', "http://a.example/2", ]'
    result = submit_files(store, [write(tmp_path, "a.json", doc)])
    assert result.accepted == 2
    got = reasons(result)
    assert sorted(got) == [2, 3, 5]
    assert "number too long" in got[2] and "nested deeper" in got[3] and "empty" in got[5]
    with pytest.raises(InputError, match="line 3: invalid JSON: the array is not closed"):
        submit_files(store, [write(tmp_path, "b.json", '[\n"http://a.example/3",\n')])
    assert store.count_by_state() == {"new": 2}  # nothing of the broken array was stored


# -- CSV ---------------------------------------------------------------------------------------
def test_csv_with_a_byte_order_mark_is_read(tmp_path: Path, store) -> None:
    src = write(tmp_path, "excel.csv", b"\xef\xbb\xbfurl,source\r\nhttp://a.example/1,feed\r\n")
    result = submit_files(store, [src])
    assert (result.accepted, result.rejected) == (1, [])
    assert store.list_cases()[0]["reports"][0]["metadata"] == {"source": "feed"}
    # Detected from the content too (stdin, no .csv name): the BOM does not hide the header.
    rows, rejected = parse_batch(b"\xef\xbb\xbfurl,source\nhttp://a.example/2,feed\n", None,
                                 channel="analyst")
    assert [r.canonical_url for r in rows] == ["http://a.example/2"] and rejected == []


def test_csv_unterminated_quote_rejects_its_line_and_keeps_the_next_urls(tmp_path: Path,
                                                                         store) -> None:
    src = write(tmp_path, "q.csv", 'url,note\nhttp://a.example/1,"oops\nhttp://a.example/2\n'
                                   "http://a.example/3\nhttp://a.example/4,fine\n")
    result = submit_files(store, [src])
    assert result.accepted == 3
    assert reasons(result) == {2: "quote opened at column 20 is not closed on this line"}
    assert sorted(c["canonical_url"] for c in store.list_cases()) == [
        "http://a.example/2", "http://a.example/3", "http://a.example/4"]


def test_csv_quote_closed_lines_later_never_swallows_a_url(tmp_path: Path, store) -> None:
    src = write(tmp_path, "q.csv", 'url,note\nhttp://a.example/1,"oops\nhttp://a.example/2,x\n'
                                   'more text"\n')
    result = submit_files(store, [src])
    assert 2 in reasons(result) and "quote opened at column 20" in reasons(result)[2]
    assert "http://a.example/2" in [c["canonical_url"] for c in store.list_cases()]


def test_csv_multiline_cell_is_one_record(tmp_path: Path, store) -> None:
    src = write(tmp_path, "m.csv", 'url,note\r\nhttp://a.example/1,"first line\nsecond, line"\r\n'
                                   "http://a.example/2,ok\r\n")
    result = submit_files(store, [src])
    assert (result.accepted, result.rejected) == (2, [])
    notes = {c["canonical_url"]: c["reports"][0]["metadata"] for c in store.list_cases()}
    assert notes == {"http://a.example/1": {"note": "first line\nsecond, line"},
                     "http://a.example/2": {"note": "ok"}}


# -- encoding, long lines ----------------------------------------------------------------------
def test_not_utf8_names_the_right_byte_and_rejects_only_its_line(tmp_path: Path,
                                                                 store) -> None:
    good = "".join(f"http://h{i}.example/page\n" for i in range(5000))  # past every decoder chunk
    bad_line = b"http://caf\xe9.example/\n"
    data = good.encode() + bad_line + b"http://after.example/\n"
    result = submit_files(store, [write(tmp_path, "latin.txt", data)])
    assert result.accepted == 5001
    offset = len(good.encode()) + len(b"http://caf")
    assert reasons(result) == {5001: f"not UTF-8 text (invalid continuation byte at byte "
                                     f"{offset})"}
    assert data[offset] == 0xE9


class _Stream:
    """A 64 MB line between two good ones, generated while read (no disk, no big buffer)."""

    def __init__(self, size: int) -> None:
        self.parts = [b"http://a.example/before\n", size, b"\nhttp://a.example/after\n"]

    def read(self, n: int = -1) -> bytes:
        while self.parts:
            head = self.parts[0]
            if isinstance(head, int):
                take = min(n, head)
                self.parts[0] = head - take
                if head - take == 0:
                    self.parts.pop(0)
                if take:
                    return b"x" * take
                continue
            self.parts.pop(0)
            return head
        return b""


def test_a_64mb_line_is_one_rejected_line_in_bounded_memory() -> None:
    size = 64 * 1024 * 1024
    tracemalloc.start()
    try:
        records = list(read_records(_Stream(size), "big.txt"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(r.line, r.url, r.error) for r in records] == [
        (1, "http://a.example/before", None),
        (2, "x" * 200 + "…", f"line too long ({size} bytes; the limit is {MAX_LINE_BYTES})"),
        (3, "http://a.example/after", None)]
    assert peak < 2 * 1024 * 1024  # a few blocks, never the line


def test_cli_submit_with_an_overlong_line(tmp_path: Path, db_path: Path) -> None:
    src = write(tmp_path, "long.txt", b"http://a.example/1\nhttp://a.example/" + b"p" * 3_000_000
                + b"\nhttp://a.example/2\n")
    out = ntd_json("submit", src, db=db_path)
    assert out["accepted"] == 2
    assert [(r["line"], r["reason"].split(" (")[0]) for r in out["rejected"]] == [
        (2, "line too long")]


# -- fuzzing: every line is accounted for --------------------------------------------------------
_URL = st.builds(lambda host, path: f"http://{host}.example/{path}",
                 st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
                 st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True))
_NOISE = st.text(alphabet=st.sampled_from(list('",\r\n\\[]{}:x é\x00\ufeff\u2028')),
                 max_size=12)
_ENDING = st.sampled_from(["\n", "\r\n", "\r"])


def _accounted(rows, rejected, expected: dict[int, str]) -> None:
    stored = {r.line: r.canonical_url for r in rows}
    bad = [r["line"] for r in rejected]
    assert len(stored) == len(rows) and len(set(bad)) == len(bad), "a line counted twice"
    assert not set(stored) & set(bad), "a line both stored and rejected"
    for line, url in expected.items():
        assert stored.get(line) == url or line in bad, f"line {line} ({url}) lost"


def _line_of(body: str, offset: int) -> int:
    return len(re.findall(r"\r\n|\r|\n", body[:offset])) + 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_URL, _NOISE, st.booleans()), min_size=1, max_size=12), _ENDING)
@example([("http://a.example/1", "oops", True), ("http://b.example/2", "", False)], "\n")
@example([("http://a.example/1", "a\nb", True), ("http://b.example/2", 'c"', False)], "\r\n")
def test_fuzz_csv_every_url_line_is_stored_or_rejected(rows, ending) -> None:
    """A URL starting a row is stored from that row's line or rejected with that line's
    number, whatever the cells around it hold (stray quotes, commas, line breaks, NUL, BOM)."""
    body = "url,note" + ending
    expected: dict[int, str] = {}
    for url, noise, quote in rows:
        expected[_line_of(body, len(body))] = url
        opening = '"' if quote else ""
        body += f"{url},{opening}{noise}{ending}"
    out_rows, rejected = parse_batch(body.encode("utf-8"), "csv", channel="analyst")
    _accounted(out_rows, rejected, expected)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_URL.map(lambda u: json.dumps({"url": u})),
                          st.text(alphabet=st.sampled_from(list('[]{}"1e-:,.NaN \\x')),
                                  max_size=40)),
                min_size=1, max_size=15),
       _ENDING)
def test_fuzz_ndjson_every_line_is_stored_or_rejected(lines, ending) -> None:
    body = ending.join(lines) + ending
    expected = {i: json.loads(text)["url"] for i, text in enumerate(lines, 1)
                if text.startswith('{"url"')}
    rows, rejected = parse_batch(body.encode("utf-8"), "ndjson", channel="analyst")
    _accounted(rows, rejected, expected)
    blank = {i for i, text in enumerate(lines, 1) if not text.strip()}
    handled = {r.line for r in rows} | {r["line"] for r in rejected}
    assert handled == set(range(1, len(lines) + 1)) - blank


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([None, "text", "csv", "ndjson", "json"]))
def test_fuzz_any_bytes_give_rejections_or_a_clean_input_error(data, fmt) -> None:
    try:
        rows, rejected = parse_batch(data, fmt, channel="analyst")
    except InputError:
        return  # a whole-file refusal, with a message (no other exception type escapes)
    numbers = [r.line for r in rows] + [r["line"] for r in rejected]
    assert len(set(numbers)) == len(numbers) and all(n >= 1 for n in numbers)
    if fmt in ("text", "csv", "ndjson"):
        assert max(numbers, default=0) <= len(list(read_lines(io.BytesIO(data))))
