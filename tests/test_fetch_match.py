"""Fetch → hash → match → assessment, end to end against a loopback web server."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from pathlib import Path

import pytest

from engine.intake import submit_files
from engine.lab.images import jpeg_bytes, make_image, png_bytes
from engine.lab.webserver import LabWebServer
from engine.media.hashing import hash_media
from engine.runtime import Runtime
from tests.conftest import run_ntd

HOST = "hoster-1.test"


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 100000×100000 pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


@pytest.fixture
async def site():
    known = jpeg_bytes(make_image(1))
    other = jpeg_bytes(make_image(2))
    benign = png_bytes(make_image(3))
    page = (b'<html><head><meta property="og:image" content="/img/known.jpg"></head><body>'
            b'<img src="img/other.jpg" srcset="/img/other.jpg 1x, /img/benign.png 2x">'
            b'<a href="/img/missing.jpg">x</a><img src="data:image/png;base64,AAAA"></body>'
            b'</html>')
    server = LabWebServer({
        (HOST, "/img/known.jpg"): (known, "image/jpeg"),
        (HOST, "/img/other.jpg"): (other, "text/plain"),  # lying header: sniffing decides
        (HOST, "/img/benign.png"): (benign, "image/png"),
        (HOST, "/gallery.html"): (page, "text/html"),
        (HOST, "/bomb.png"): (bomb_png(), "image/png"),
        (HOST, "/notes.txt"): (b"just text", "text/plain"),
    })
    await server.start()
    server.images = {"known": known, "other": other, "benign": benign}  # type: ignore[attr-defined]
    yield server
    await server.close()


@pytest.fixture(autouse=True)
def _fetch_and_match_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Later stages would move confirmed cases on; these tests look at fetch and match."""
    monkeypatch.setenv("NTD_DISABLE_PLUGINS", "resolve,route_inhope,notify,recheck")


def lab_runtime(db: Path, server: LabWebServer) -> Runtime:
    return Runtime.open(db=str(db), overrides={
        "lab": {"allow_private_networks": True},
        "resolve.hosts": {HOST: "127.0.0.1"},
        "fetch": {"allowed_ports": [server.port], "retry_minutes": 1.0},
        "pipeline": {"poll_seconds": 0.05, "cpu_workers": 1},
    })


def add_list(rt: Runtime, name: str, data: bytes, *, trust: str = "auto",
             negative: bool = False, types: tuple[str, ...] = ("phash",)) -> None:
    h = hash_media(data)
    rt.store.import_hashlist(
        name=name, source="test", trust=trust, negative=negative, thresholds={},
        entries=[(t, h[t], "baseline", None, None) for t in types], now=rt.clock.now_text())


def submit(rt: Runtime, tmp_path: Path, *urls: str) -> list[str]:
    src = tmp_path / f"u{len(list(tmp_path.iterdir()))}.txt"
    src.write_text("\n".join(urls) + "\n")
    return submit_files(rt.store, [str(src)], keep_case_ids=True).case_ids


async def test_direct_image_on_auto_list_is_confirmed(db_path, tmp_path, site) -> None:
    rt = lab_runtime(db_path, site)
    add_list(rt, "national", site.images["known"], types=("md5", "phash"))
    [case_id] = submit(rt, tmp_path, site.url("/img/known.jpg"))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    case = rt.store.get_case(case_id)
    assert case["state"] == "confirmed"
    [item] = case["items"]
    assert set(item["hashes"]) == {"md5", "sha1", "sha256", "phash", "pdq", "pdq_quality"}
    assert item["content_type"] == "image/jpeg" and item["size"] == len(site.images["known"])
    assert {(m["list"], m["hash_type"], m["distance"], m["negative"])
            for m in item["matches"]} == {("national", "md5", 0, False),
                                          ("national", "phash", 0, False)}
    assert case["match"]["list"] == "national"
    # Bytes never reach the database.
    raw = db_path.read_bytes() + Path(f"{db_path}-wal").read_bytes()
    assert site.images["known"][200:264] not in raw
    rt.close()


async def test_page_media_review_then_verdict_learns(db_path, tmp_path, site) -> None:
    rt = lab_runtime(db_path, site)
    add_list(rt, "review-list", site.images["other"], trust="review")
    [case_id] = submit(rt, tmp_path, site.url("/gallery.html"))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    case = rt.store.get_case(case_id)
    assert case["state"] == "awaiting_assessment"
    by_url = {i["url"].rsplit("/", 1)[-1]: i for i in case["items"]}
    assert set(by_url) == {"gallery.html", "known.jpg", "other.jpg", "benign.png",
                           "missing.jpg"}
    assert by_url["other.jpg"]["content_type"] == "image/jpeg"  # sniffed, header lied
    assert by_url["other.jpg"]["matches"][0]["list"] == "review-list"
    assert by_url["missing.jpg"]["error"] == "http_404"
    assert by_url["gallery.html"]["hashes"].get("phash") is None
    # The analyst decides and teaches the engine.
    proc = run_ntd("--db", str(db_path), "queue", "--json")
    assert [c["id"] for c in json.loads(proc.stdout)] == [case_id]
    proc = run_ntd("--db", str(db_path), "verdict", case_id, "illegal", "--category",
                   "national", "--learn", "--analyst", "ana", "--json")
    assert proc.returncode == 0, proc.stderr
    trail = rt.store.get_case(case_id)["events"]
    assert trail[-1]["actor"] == "analyst:ana" and trail[-1]["action"] == "verdict"
    assert rt.store.get_case(case_id)["state"] == "confirmed"
    # The next copy of any of those images, on another URL, needs no human.
    site.set_content("hoster-1.test", "/copy.jpg", site.images["known"], "image/jpeg")
    [copy_id] = submit(rt, tmp_path, site.url("/copy.jpg"))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    copy = rt.store.get_case(copy_id)
    assert copy["state"] == "confirmed" and copy["match"]["list"] == "analyst"
    rt.close()


async def test_negative_list_suppresses(db_path, tmp_path, site) -> None:
    rt = lab_runtime(db_path, site)
    add_list(rt, "baseline", site.images["benign"])
    add_list(rt, "benign", site.images["benign"], negative=True)
    [case_id] = submit(rt, tmp_path, site.url("/img/benign.png"))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    case = rt.store.get_case(case_id)
    assert case["state"] == "dismissed"
    assert {m["negative"] for m in case["items"][0]["matches"]} == {True, False}
    rt.close()


async def test_unreachable_non_image_and_bomb(db_path, tmp_path, site) -> None:
    rt = lab_runtime(db_path, site)
    ids = submit(rt, tmp_path, site.url("/gone.jpg"), site.url("/notes.txt"),
                 site.url("/bomb.png"))
    await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    gone, notes, bomb = (rt.store.get_case(i) for i in ids)
    # A 404 is final (issue 21): failed at the first fetch, never retried.
    assert gone["state"] == "failed" and gone["state_reason"] == "gone"
    assert gone["retry_at"] is None and gone["items"][0]["error"] == "http_404"
    assert notes["state"] == "awaiting_assessment"
    assert notes["items"][0]["content_type"] == "application/octet-stream"  # sniffed
    assert bomb["state"] == "awaiting_assessment"
    assert bomb["items"][0]["error"] == "bomb" and "phash" not in bomb["items"][0]["hashes"]
    rt.close()


async def test_new_list_matches_without_restart(db_path, tmp_path, site) -> None:
    rt = lab_runtime(db_path, site)
    add_list(rt, "empty-at-start", site.images["benign"])
    task = asyncio.create_task(rt.run_pipeline(until_idle=False, install_signal_handlers=False))
    [first] = submit(rt, tmp_path, site.url("/img/other.jpg"))
    await _until(lambda: rt.store.get_case(first)["state"] == "awaiting_assessment")
    add_list(rt, "fresh", site.images["known"])  # imported while the engine runs
    [second] = submit(rt, tmp_path, site.url("/img/known.jpg"))
    await _until(lambda: rt.store.get_case(second)["state"] == "confirmed")
    assert rt.store.get_case(second)["match"]["list"] == "fresh"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rt.close()


async def _until(predicate, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_mirrored_copy_of_a_listed_image_is_confirmed_by_pdq(db_path, tmp_path) -> None:
    hash_type = "pdq"
    from engine.lab.images import mirror

    listed = jpeg_bytes(make_image(11))
    flipped = mirror(make_image(11))
    unrelated = jpeg_bytes(make_image(12))
    server = LabWebServer({(HOST, "/flipped.jpg"): (flipped, "image/jpeg"),
                           (HOST, "/unrelated.jpg"): (unrelated, "image/jpeg")})
    async with server:
        rt = lab_runtime(db_path, server)
        add_list(rt, "national", listed, types=(hash_type,))
        flipped_id, unrelated_id = submit(rt, tmp_path, server.url("/flipped.jpg"),
                                          server.url("/unrelated.jpg"))
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    case = rt.store.get_case(flipped_id)
    assert case["state"] == "confirmed"
    assert case["match"]["hash_type"] == hash_type and case["match"]["mirrored"] is True
    [item] = case["items"]
    # The item keeps the hashes of the bytes it served (the contract's keys); the mirror
    # image's hashes are case data for matching.
    assert set(item["hashes"]) == {"md5", "sha1", "sha256", "phash", "pdq", "pdq_quality"}
    assert item["hashes"][hash_type] != hash_media(listed)[hash_type]
    assert set(item["matches"][0]) == {"list", "hash_type", "distance", "category", "negative"}
    assert list(case["mirror_hashes"]) == [item["hashes"]["sha256"]]  # hashes only, no URLs
    assert rt.store.get_case(unrelated_id)["state"] == "awaiting_assessment"
    rt.close()


async def test_phash_alone_does_not_look_up_the_mirror_image(db_path, tmp_path) -> None:
    # (a second pHash lookup doubled its false matches; PDQ's dihedral hash is the one used)
    from engine.lab.images import mirror

    server = LabWebServer({(HOST, "/flipped.jpg"): (mirror(make_image(11)), "image/jpeg")})
    async with server:
        rt = lab_runtime(db_path, server)
        add_list(rt, "national", jpeg_bytes(make_image(11)), types=("phash",))
        [case_id] = submit(rt, tmp_path, server.url("/flipped.jpg"))
        await rt.run_pipeline(until_idle=True, install_signal_handlers=False)
    assert rt.store.get_case(case_id)["state"] == "awaiting_assessment"
    rt.close()


async def test_generation_checks_are_shared_yet_never_older_than_the_caller() -> None:
    """Cases matched at once share the hash-list generation read (one in flight, one waiting)
    instead of one round trip each; a case that arrives while a read is in flight waits for
    the next, so a list imported before it arrived is always seen."""
    import asyncio
    from types import SimpleNamespace

    from plugins.match.matcher import fresh_generation

    gate = asyncio.Event()
    reads: list[int] = []
    value = {"generation": 1}

    async def hashlist_generation() -> int:
        reads.append(value["generation"])
        seen = value["generation"]
        await gate.wait()
        return seen

    ctx = SimpleNamespace(state={}, store=SimpleNamespace(
        hashlist_generation=hashlist_generation))
    first = [asyncio.ensure_future(fresh_generation(ctx)) for _ in range(20)]
    deadline = asyncio.get_running_loop().time() + 5
    while not reads:  # the first read is in flight
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0)
    value["generation"] = 2  # a list import commits while it is
    late = [asyncio.ensure_future(fresh_generation(ctx)) for _ in range(20)]
    gate.set()
    assert await asyncio.gather(*first) == [1] * 20
    assert await asyncio.gather(*late) == [2] * 20
    assert reads == [1, 2]


async def test_a_matcher_rebuilt_meanwhile_from_an_older_list_is_not_taken() -> None:
    """Case A starts rebuilding for generation 1; a list import makes it 2; case B reads 2
    and waits for A's rebuild. B must not take A's generation-1 matcher: it builds again."""
    import asyncio
    from types import SimpleNamespace

    from plugins.match.matcher import _state, current_matcher

    value = {"generation": 1}
    gate = asyncio.Event()
    builds: list[int] = []

    async def hashlist_generation() -> int:
        return value["generation"]

    async def call_fn(fn, **kwargs):  # type: ignore[no-untyped-def]
        built = value["generation"]  # what Matcher.build reads when it starts
        builds.append(built)
        if len(builds) == 1:
            await gate.wait()
        return SimpleNamespace(generation=built)

    ctx = SimpleNamespace(
        state={}, config=SimpleNamespace(section=lambda name: {}),
        store=SimpleNamespace(hashlist_generation=hashlist_generation, call_fn=call_fn))
    _state(ctx).matcher = SimpleNamespace(generation=0)  # type: ignore[assignment]
    a = asyncio.ensure_future(current_matcher(ctx))
    deadline = asyncio.get_running_loop().time() + 5
    while not builds:  # A is building from generation 1
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0)
    value["generation"] = 2
    first_read = _state(ctx).reading
    b = asyncio.ensure_future(current_matcher(ctx))
    while _state(ctx).reading is first_read or not _state(ctx).reading.done():  # B read 2
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0)
    gate.set()
    assert (await a).generation == 1
    assert (await b).generation == 2
    assert builds == [1, 2]
