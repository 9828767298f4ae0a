"""The smaller frictions of issue 21 (item 8), one test each: hash-list round trip, strict and
empty submissions, final fetch failures, IDs that never wrap, progress lines that end, the
sign-in form that keeps the account name, ``demo --keep PATH``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.cli.cases import _run_progress
from engine.demo import kept_database
from engine.errors import ConfigError, InputError
from engine.lab.images import jpeg_bytes, make_image, png_bytes
from engine.lab.webserver import LabWebServer
from engine.media.hashlist_format import parse_hashlist
from engine.runtime import Runtime
from tests.test_fetch_match import lab_runtime, submit
from tests.test_web_api import World, attempt

HOST = "hoster-1.test"


@dataclass
class Ran:
    exit_code: int
    output: str


def ntd(*args: str, env: dict[str, str] | None = None) -> Ran:
    """``ntd ARGS`` in this process, with the exit codes ``engine.cli.main`` maps errors to."""
    result = CliRunner().invoke(cli, list(args), env=env)
    exc = result.exception
    if isinstance(exc, InputError | ConfigError):
        return Ran(2, result.output + str(exc))
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    return Ran(result.exit_code, result.output)


# -- ntd hash --format → ntd hashlist import ----------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_hash_format_writes_what_hashlist_import_reads(tmp_path: Path, fmt: str) -> None:
    images = []
    for seed in (1, 2):
        path = tmp_path / f"img{seed}.jpg"
        path.write_bytes(jpeg_bytes(make_image(seed)))
        images.append(str(path))
    printed = ntd("hash", *images, "--json")
    assert printed.exit_code == 0
    hashes = json.loads(printed.output)
    listed = ntd("hash", *images, "--format", fmt, "--category", "national",
                 "--source", "our analysts")
    assert listed.exit_code == 0, listed.output
    out = tmp_path / f"list.{fmt}"
    out.write_text(listed.output, encoding="utf-8")
    entries = list(parse_hashlist(out))
    wanted = {(t, row[t]) for row in hashes for t in ("md5", "sha1", "sha256", "phash", "pdq")
              if row.get(t)}
    assert {(e.hash_type, e.hash) for e in entries} == wanted
    assert {e.category for e in entries} == {"national"}
    assert {e.label for e in entries} == {"img1.jpg", "img2.jpg"}
    assert {e.source for e in entries} == {"our analysts"}
    db = str(tmp_path / "ntd.db")
    assert ntd("--db", db, "db", "migrate").exit_code == 0
    imported = ntd("--db", db, "hashlist", "import", str(out), "--name", "ours", "--json")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output)["entries"] == len(wanted)


def test_hash_format_refuses_a_category_import_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(make_image(3)))
    bad = ntd("hash", str(path), "--format", "csv", "--category", "not a category")
    assert bad.exit_code == 2 and "category" in bad.output


# -- ntd submit: empty input, --strict ----------------------------------------------------------
def test_submit_empty_file_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    done = ntd("--db", str(tmp_path / "ntd.db"), "submit", str(empty))
    assert done.exit_code == 2 and "no URL in the input" in done.output


def test_submit_strict_exits_2_when_a_line_was_rejected(tmp_path: Path) -> None:
    src = tmp_path / "mixed.txt"
    src.write_text("http://good.example/1\njavascript:alert(1)\n")
    db = str(tmp_path / "ntd.db")
    lenient = ntd("--db", db, "submit", str(src), "--json")
    assert lenient.exit_code == 0 and json.loads(lenient.output)["accepted"] == 1
    strict = ntd("--db", db, "submit", "--strict", str(src))
    assert strict.exit_code == 2 and "--strict: 1 line(s) rejected" in strict.output
    assert "1 duplicates" in strict.output  # the good line is stored (linked) all the same
    src.write_text("http://good.example/2\n")
    assert ntd("--db", db, "submit", "--strict", str(src)).exit_code == 0


# -- final fetch failures -----------------------------------------------------------------------
@pytest.fixture
async def site() -> AsyncIterator[LabWebServer]:
    server = LabWebServer({(HOST, "/ok.jpg"): (jpeg_bytes(make_image(4)), "image/jpeg")})
    server.set_content(HOST, "/withdrawn.jpg", b"gone for good", "text/plain", status=410)
    await server.start()
    yield server
    await server.close()


async def test_refused_port_and_404_410_are_final(tmp_path: Path, site: LabWebServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "resolve,route_inhope,notify,recheck")
    rt = lab_runtime(tmp_path / "ntd.db", site)
    try:
        ids = submit(rt, tmp_path, site.url("/missing.jpg"), site.url("/withdrawn.jpg"),
                     f"http://{HOST}:{site.port + 1 if site.port < 65535 else 1}/x.jpg",
                     site.url("/ok.jpg"))
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        missing, withdrawn, port, ok = (rt.store.get_case(i) for i in ids)
        assert (missing["state"], missing["state_reason"]) == ("failed", "gone")
        assert (withdrawn["state"], withdrawn["state_reason"]) == ("failed", "gone")
        assert (port["state"], port["state_reason"]) == ("failed", "blocked_port")
        for case in (missing, withdrawn, port):
            assert case["retry_at"] is None
            fetches = [e for e in case["events"] if e["stage"] == "fetch"]
            assert len(fetches) == 1 and fetches[0]["detail"]["final"] is True
        assert ok["state"] != "failed"
        assert site.hits(HOST, "/missing.jpg") == 1  # asked once, not five times
    finally:
        rt.close()


async def test_a_timeout_is_still_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          site: LabWebServer) -> None:
    """Only answers that cannot change are final: a server error is tried again later."""
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "resolve,route_inhope,notify,recheck")
    site.set_content(HOST, "/busy.jpg", b"try later", "text/plain", status=503)
    rt = lab_runtime(tmp_path / "ntd.db", site)
    try:
        [busy] = submit(rt, tmp_path, site.url("/busy.jpg"))
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
        case = rt.store.get_case(busy)
        assert case["state"] == "unreachable" and case["retry_at"]
    finally:
        rt.close()


# -- tables, progress ----------------------------------------------------------------------------
def test_ids_never_wrap_in_narrow_tables(tmp_path: Path) -> None:
    src = tmp_path / "u.txt"
    src.write_text("".join(f"http://a-rather-long-host-name-{i}.example/with/a/long/path/{i}"
                           f".jpg\n" for i in range(3)))
    db = str(tmp_path / "ntd.db")
    assert ntd("--db", db, "submit", str(src)).exit_code == 0
    rt = Runtime.open(db=db)
    ids = [c["id"] for c in rt.store.list_cases()]
    rt.close()
    for command in (["cases"], ["cases", "--state", "new"]):
        shown = ntd("--db", db, *command, env={"COLUMNS": "50"})
        assert shown.exit_code == 0
        assert max(len(line) for line in shown.output.splitlines()) <= 50  # it is narrow
        for case_id in ids:
            assert case_id in shown.output, shown.output  # whole, on one line


def test_progress_line_ends_before_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    class Summary:
        processed = {"fetch": 3, "match": 2}

    progress = _run_progress()
    progress.end()
    assert capsys.readouterr().err == ""  # nothing drawn, nothing to clear
    progress(Summary())
    progress.end()
    err = capsys.readouterr().err
    assert err.startswith("\r\x1b[Kfetch:3 match:2") and err.endswith("\r\x1b[K")


# -- the sign-in form keeps the account name ----------------------------------------------------
async def test_sign_in_form_keeps_the_account_name_after_a_wrong_password(
        tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        wrong = await attempt(world.client, "alice", "not her password")
        assert wrong.status_code == 401
        assert 'name="name" autocomplete="username" value="alice"' in wrong.text
        hostile = await attempt(world.client, '"><script>x</script>', "whatever it is")
        assert hostile.status_code == 401 and "<script>x" not in hostile.text
        assert "&#34;&gt;&lt;script&gt;" in hostile.text or "&quot;&gt;" in hostile.text
        fresh = await world.client.get("/console/login")
        assert 'value=""' in fresh.text  # a new visit starts empty
    finally:
        await world.client.aclose()
        world.rt.close()


# -- ntd demo --keep PATH ------------------------------------------------------------------------
def test_demo_keep_takes_a_file_path(tmp_path: Path) -> None:
    assert kept_database(str(tmp_path / "runs" / "demo-1.db")) == tmp_path / "runs" / "demo-1.db"
    assert (tmp_path / "runs").is_dir()  # its folder is made
    assert kept_database(str(tmp_path)) == tmp_path / "demo.db"  # a folder keeps working
    assert "file path" in ntd("demo", "--help").output
