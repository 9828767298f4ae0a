"""Hash-list parsing: good and bad lines, both formats, and no crash on arbitrary text."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import HashlistError
from engine.media.hashlist_format import (
    HASH_HEX_LENGTH,
    HashEntry,
    HashlistFormatError,
    check_hashlist,
    detect_format,
    parse_hashlist,
)

MD5 = "d41d8cd98f00b204e9800998ecf8427e"
PDQ = "f" * 64
HEADER = "hash_type,hash,category,label,source"
REPO = Path(__file__).resolve().parents[1]


def test_csv_good_lines_normalised() -> None:
    lines = [
        HEADER,
        f"MD5,{MD5.upper()},Baseline,seed 1,ntd test",
        "",
        "# a comment",
        f"pdq, {PDQ} ,national,,",
        'phash,00ff00ff00ff00ff,not_illegal,"label, with comma",',
    ]
    entries = list(parse_hashlist(lines, name="t.csv"))
    assert entries == [
        HashEntry(
            hash_type="md5",
            hash=MD5,
            category="baseline",
            label="seed 1",
            source="ntd test",
            line=2,
        ),
        HashEntry(hash_type="pdq", hash=PDQ, category="national", line=5),
        HashEntry(
            hash_type="phash",
            hash="00ff00ff00ff00ff",
            category="not_illegal",
            label="label, with comma",
            line=6,
        ),
    ]
    with pytest.raises(AttributeError):
        entries[0].hash = "x"  # type: ignore[misc]


def test_csv_header_subset_and_order() -> None:
    entries = list(parse_hashlist(["category,hash,hash_type", f"baseline,{MD5},md5"]))
    assert entries[0].hash_type == "md5" and entries[0].label is None


def test_ndjson_good_lines() -> None:
    lines = [
        json.dumps({"hash_type": "sha256", "hash": "A" * 64, "category": "baseline"}),
        json.dumps(
            {
                "hash_type": "sha1",
                "hash": "b" * 40,
                "category": "national",
                "label": "x",
                "source": None,
            }
        ),
    ]
    entries = list(parse_hashlist(lines))
    assert [e.hash_type for e in entries] == ["sha256", "sha1"]
    assert entries[0].hash == "a" * 64 and entries[1].source is None


def test_files_with_bom_and_detection(tmp_path: Path) -> None:
    p = tmp_path / "list.txt"
    p.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\r\nmd5,{MD5},baseline,,\r\n".encode())
    assert detect_format(p) == "csv"
    assert [e.hash for e in parse_hashlist(p)] == [MD5]
    j = tmp_path / "list.ndjson"
    j.write_text(json.dumps({"hash_type": "md5", "hash": MD5, "category": "baseline"}) + "\n")
    assert detect_format(j) == "ndjson"
    assert [e.line for e in parse_hashlist(str(j))] == [1]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (f"sha512,{MD5},baseline,,", "hash_type"),
        (f"md5,{MD5[:-1]},baseline,,", "hash"),
        (f"md5,{MD5[:-1]}g,baseline,,", "hash"),
        (f"sha1,{MD5},baseline,,", "hash"),
        ("md5,,baseline,,", "hash"),
        (f"md5,{MD5},,,", "category"),
        (f"md5,{MD5},Bad Category,,", "category"),
        (f"md5,{MD5},baseline,{'x' * 300},", "label"),
        (f"md5,{MD5},baseline,,bad\x07source", "source"),
        (f"md5,{MD5},baseline", None),  # wrong column count
        (f'md5,"{MD5},baseline,,', None),  # unterminated quote
    ],
)
def test_csv_bad_line_names_file_line_field(line: str, field: str | None) -> None:
    lines = [HEADER, f"md5,{MD5},baseline,,", line, f"md5,{MD5},baseline,,"]
    it = parse_hashlist(lines, name="secret.csv")
    assert next(it).line == 2
    with pytest.raises(HashlistFormatError) as err:
        next(it)
    exc = err.value
    assert isinstance(exc, HashlistError) and exc.reason == "bad_hashlist"
    assert (exc.file, exc.line, exc.field) == ("secret.csv", 3, field)
    assert str(exc).startswith("secret.csv:3")
    # Lists are confidential: the message never repeats the offending value.
    assert MD5[:-1] not in str(exc) and "Bad Category" not in str(exc)


@pytest.mark.parametrize(
    "lines",
    [
        [],
        ["# only comments", ""],
        ["hash_type,hash"],  # lacks category
        ["hash_type,hash,category,colour"],  # unknown column
        ["hash_type,hash,category,hash"],  # repeated column
    ],
)
def test_csv_bad_header(lines: list[str]) -> None:
    with pytest.raises(HashlistFormatError) as err:
        list(parse_hashlist(lines, fmt="csv"))
    assert err.value.field is None


@pytest.mark.parametrize(
    "line",
    [
        "{",
        "[1, 2]",
        '{"hash_type": "md5", "hash": 5, "category": "baseline"}',
        '{"hash_type": "md5", "hash": "' + MD5 + '", "category": "baseline", "extra": 1}',
        "[" * 100_000,  # would be a RecursionError inside json
        "1" * 5000,  # int-parsing limit
    ],
)
def test_ndjson_bad_lines(line: str) -> None:
    with pytest.raises(HashlistFormatError) as err:
        list(parse_hashlist([line[:4000]], fmt="ndjson"))
    assert err.value.line == 1


def test_line_length_cap_and_encoding(tmp_path: Path) -> None:
    with pytest.raises(HashlistFormatError):
        list(parse_hashlist([HEADER, "x" * 5000]))
    p = tmp_path / "bad.csv"
    p.write_bytes(f"{HEADER}\nmd5,{MD5},baseline,\xff,\n".encode("latin-1"))
    with pytest.raises(HashlistFormatError) as err:
        list(parse_hashlist(p))
    assert err.value.line == 2
    big = tmp_path / "big.csv"
    big.write_bytes(HEADER.encode() + b"\n" + b"a" * 100_000)
    with pytest.raises(HashlistFormatError):
        list(parse_hashlist(big))


def test_missing_file_is_hashlist_error(tmp_path: Path) -> None:
    with pytest.raises(HashlistError) as err:
        list(parse_hashlist(tmp_path / "nope.csv"))
    assert err.value.reason == "unreadable"


def test_check_hashlist_collects_errors() -> None:
    lines = [HEADER] + [
        f"md5,{MD5},baseline,," if i % 3 else "md5,zz,baseline,," for i in range(30)
    ]
    good, errors = check_hashlist(lines)
    assert good == 20 and len(errors) == 10
    assert [e.line for e in errors][:3] == [2, 5, 8]
    good, errors = check_hashlist(lines, limit=2)
    assert len(errors) == 2
    good, errors = check_hashlist(["oops,header"])
    assert good == 0 and len(errors) == 1


def test_streaming_does_not_read_ahead() -> None:
    consumed = []

    def lines():
        yield HEADER
        for i in range(1_000_000):
            consumed.append(i)
            yield f"md5,{MD5},baseline,,"

    it = parse_hashlist(lines())
    next(it)
    assert len(consumed) <= 2


def test_demo_list_is_valid() -> None:
    entries = list(parse_hashlist(REPO / "hashlists" / "demo.csv"))
    assert entries and {e.category for e in entries} == {"baseline"}
    assert {e.source for e in entries} == {"ntd synthetic demo"}
    assert {"md5", "sha256", "phash"} <= {e.hash_type for e in entries}


# ---------------------------------------------------------------- property tests

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_text, max_size=8), fmt=st.sampled_from([None, "csv", "ndjson"]))
def test_arbitrary_text_only_raises_hashlist_error(lines: list[str], fmt) -> None:
    for candidate in (lines, [HEADER, *lines]):
        try:
            for entry in parse_hashlist(candidate, fmt=fmt):
                assert len(entry.hash) == HASH_HEX_LENGTH[entry.hash_type]
        except HashlistError:
            pass
        good, errors = check_hashlist(candidate, fmt=fmt)
        assert all(isinstance(e, HashlistError) for e in errors)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=600))
def test_arbitrary_bytes_file_only_raises_hashlist_error(tmp_path_factory, raw: bytes) -> None:
    p = tmp_path_factory.mktemp("h") / "x.list"
    p.write_bytes(raw)
    try:
        list(parse_hashlist(p))
    except HashlistError:
        pass


_entry = st.builds(
    dict,
    hash_type=st.sampled_from(sorted(HASH_HEX_LENGTH)),
    category=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    label=st.one_of(
        st.none(),
        st.text(
            st.characters(max_codepoint=0x2FFF, exclude_categories=("Cc", "Cs", "Zl", "Zp")),
            min_size=1,
            max_size=40,
        ).map(str.strip),
    ),
    seed=st.integers(0, 2**256),
)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(_entry, max_size=10))
def test_round_trip_csv_and_ndjson(rows: list[dict]) -> None:
    expected = []
    for r in rows:
        n = HASH_HEX_LENGTH[r["hash_type"]]
        expected.append(
            (r["hash_type"], f"{r['seed']:0{n}x}"[-n:], r["category"], r["label"] or None)
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER.split(","))
    for t, h, c, label in expected:
        writer.writerow([t, h, c, label or "", ""])
    got = [
        (e.hash_type, e.hash, e.category, e.label)
        for e in parse_hashlist(buf.getvalue().split("\n"))
    ]
    assert got == expected
    nd = [
        json.dumps({"hash_type": t, "hash": h, "category": c, "label": label})
        for t, h, c, label in expected
    ]
    got_nd = [(e.hash_type, e.hash, e.category, e.label) for e in parse_hashlist(nd, fmt="ndjson")]
    assert got_nd == expected
