"""Hash types (``engine.media.signals``): tests generated from the registry and ``examples()``.

Every test below is parametrised over ``HASH_TYPES`` (and each type's examples), so a kind added
to the registry — a video hash, say — is tested here without a line of new test code: its
examples must validate, its computation on synthetic generated images must give a hash its own
validation accepts, a hash list must import its examples and the matcher must find them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import notice_content
from engine.lab.images import jpeg_bytes, make_image, png_bytes
from engine.media import hash_index, hashlist_format, items
from engine.media.digests import crypto_hashes
from engine.media.hashing import MediaError, hash_media
from engine.media.hashlist_format import HashlistFormatError, parse_hashlist
from engine.media.signals import (
    CRYPTO_TYPES,
    HASH_TYPES,
    PDQ,
    PERCEPTUAL_TYPES,
    SHA256,
    HashType,
    PHash,
    default_radii,
    hash_type,
    perceptually_hashed,
)
from engine.store import Store, open_store
from plugins.match.matcher import Matcher

TYPES = list(HASH_TYPES.values())
EXAMPLES = [(t, ex) for t in TYPES for ex in t.examples()]
NOW = "2026-01-01T00:00:00.000000Z"


def _type_id(t: type[HashType]) -> str:
    return t.name


def _example_ids() -> list[str]:
    return [f"{t.name}-{i}" for t in TYPES for i, _ in enumerate(t.examples())]


by_type = pytest.mark.parametrize("kind", TYPES, ids=_type_id)
by_example = pytest.mark.parametrize(("kind", "example"), EXAMPLES, ids=_example_ids())


def _flip(kind: type[HashType], value: str, bits: int) -> str:
    """``value`` with its ``bits`` lowest bits inverted."""
    return f"{int(value, 16) ^ ((1 << bits) - 1):0{kind.hex_length}x}"


def _synthetic_images() -> list[bytes]:
    # generated scenes, never real material: a JPEG and a PNG of two seeds
    return [jpeg_bytes(make_image(11)), png_bytes(make_image(12, (300, 200)))]


# -- the registry ------------------------------------------------------------------------------


@by_type
def test_registry_entry_is_consistent(kind: type[HashType]) -> None:
    assert HASH_TYPES[kind.name] is kind
    assert kind.name.isidentifier() and kind.name == kind.name.lower()
    assert kind.hex_length * 4 == kind.bits
    if kind.perceptual:
        assert 0 < kind.default_radius < kind.bits // 2
        assert kind.bits % 64 == 0  # the Hamming index works in 64-bit words
    else:
        assert kind.default_radius == 0
    assert (kind.quality_key is None) or kind.quality_key not in HASH_TYPES


def test_crypto_and_perceptual_lists_partition_the_registry_in_order() -> None:
    assert [*CRYPTO_TYPES, *PERCEPTUAL_TYPES] == TYPES
    assert all(not t.perceptual for t in CRYPTO_TYPES)
    assert all(t.perceptual for t in PERCEPTUAL_TYPES)
    assert default_radii() == {"phash": 8, "pdq": 31}
    assert list(HASH_TYPES) == ["md5", "sha1", "sha256", "phash", "pdq"]  # stored names


def test_hash_type_lookup() -> None:
    assert hash_type("pdq") is PDQ
    assert hash_type(" PHash ") is PHash
    with pytest.raises(ValueError, match=r"unknown hash type 'tmk' \(known: md5, sha1, sha256, "
                                         r"phash, pdq, vpdq\)"):
        hash_type("tmk")


def test_a_kind_needs_a_whole_number_of_hex_digits() -> None:
    class Fake60(HashType, name="fake60", bits=60):
        pass

    assert (Fake60.name, Fake60.label, Fake60.hex_length) == ("fake60", "fake60", 15)
    assert Fake60.validate("A" * 15) == "a" * 15 and Fake60.default_radius == 0
    assert "fake60" not in HASH_TYPES  # a kind counts once it is in the registry
    with pytest.raises(TypeError, match="multiple of 4"):
        class Fake6(HashType, name="fake6", bits=6):
            pass


@by_type
def test_every_kind_has_distinct_examples(kind: type[HashType]) -> None:
    examples = kind.examples()
    assert examples and len(set(examples)) == len(examples)


# -- validation --------------------------------------------------------------------------------


@by_example
def test_validate_round_trips_and_normalises(kind: type[HashType], example: str) -> None:
    assert kind.validate(example) == example
    assert kind.validate(example.upper()) == example
    assert kind.validate(f"  {example.upper()}\n") == example


@by_example
def test_validate_rejects_wrong_lengths(kind: type[HashType], example: str) -> None:
    for bad in (example[:-1], example + "0", example * 2, ""):
        with pytest.raises(ValueError) as info:
            kind.validate(bad)
        message = str(info.value)
        assert message == f"expected {kind.hex_length} hex characters for {kind.name}"
        assert not bad or bad not in message  # hashes are confidential: never echoed


@by_example
def test_validate_rejects_non_hex(kind: type[HashType], example: str) -> None:
    for bad in ("g" + example[1:], "0x" + example[2:], example[:-1] + " ", example[:-1] + "٣",
                example[:4] + "-" + example[5:]):
        with pytest.raises(ValueError, match=f"hex characters for {kind.name}"):
            kind.validate(bad)
    with pytest.raises(ValueError, match="must be a string"):
        kind.validate(example.encode())  # type: ignore[arg-type]


@by_type
def test_validate_rejects_another_kinds_length(kind: type[HashType]) -> None:
    for other in TYPES:
        if other.hex_length != kind.hex_length:
            with pytest.raises(ValueError):
                kind.validate(other.examples()[0])


# -- distance ----------------------------------------------------------------------------------


@by_example
def test_distance(kind: type[HashType], example: str) -> None:
    assert kind.distance(example, example) == 0
    assert kind.distance(example, example.upper()) == 0
    one = _flip(kind, example, 1)
    assert kind.distance(example, one) == kind.distance(one, example) == 1
    assert kind.distance(example, _flip(kind, example, kind.bits)) == kind.bits
    with pytest.raises(ValueError):
        kind.distance(example, example[:-1])


@by_example
def test_matches_within_the_default_radius_only(kind: type[HashType], example: str) -> None:
    assert kind.matches(example, example)
    near = _flip(kind, example, kind.default_radius)
    far = _flip(kind, example, kind.default_radius + 1)
    assert kind.matches(example, near) and not kind.matches(example, far)
    assert kind.matches(example, far, radius=kind.default_radius + 1)
    if kind.default_radius:
        assert not kind.matches(example, near, radius=kind.default_radius - 1)


# -- computation on synthetic images -----------------------------------------------------------


@by_type
def test_compute_on_synthetic_images(kind: type[HashType]) -> None:
    images = _synthetic_images()
    values = [kind.compute(data) for data in images]
    if any(v is None for v in values):
        assert kind is PDQ and hash_media(images[0])["pdq"] is None
        pytest.skip("pdqhash is not installed")
    for data, value in zip(images, values, strict=True):
        assert isinstance(value, str)
        assert kind.validate(value) == value  # lower-case hex of the right length
        assert value == hash_media(data)[kind.name]  # what a fetched item gets
        assert kind.compute(data) == value  # deterministic
    assert values[0] != values[1]


@by_type
def test_compute_is_what_fetching_stores(kind: type[HashType]) -> None:
    data = _synthetic_images()[0]
    value = kind.compute(data)
    assert items.hash_bytes(data, "image/jpeg").get(kind.name) == value
    if not kind.perceptual:  # non-images keep their cryptographic hashes only
        assert items.hash_bytes(b"plain text", "text/plain")[kind.name] == kind.compute(
            b"plain text")


def test_crypto_digests_agree_with_the_crypto_types() -> None:
    for data in (b"", b"ntd", *_synthetic_images()):
        assert crypto_hashes(data) == {t.name: t.compute(data) for t in CRYPTO_TYPES}


def test_crypto_known_answers() -> None:
    assert {t.name: t.compute(b"") for t in CRYPTO_TYPES} == {
        "md5": "d41d8cd98f00b204e9800998ecf8427e",
        "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}


@pytest.mark.parametrize("kind", PERCEPTUAL_TYPES, ids=_type_id)
def test_perceptual_compute_rejects_what_is_not_an_image(kind: type[HashType]) -> None:
    with pytest.raises(MediaError) as info:
        kind.compute(b"<html>not an image</html>")
    assert info.value.reason == "not_image"


def test_perceptually_hashed() -> None:
    data = _synthetic_images()[0]
    assert perceptually_hashed(items.hash_bytes(data, "image/jpeg"))
    assert not perceptually_hashed(items.hash_bytes(data, "text/plain"))
    assert not perceptually_hashed({SHA256.name: SHA256.compute(data), "phash": None})


# -- hash lists and matching -------------------------------------------------------------------


@by_example
def test_hashlist_import_accepts_each_example(kind: type[HashType], example: str) -> None:
    csv_lines = ["hash_type,hash,category", f"{kind.name.upper()},{example.upper()},baseline"]
    ndjson = [json.dumps({"hash_type": kind.name, "hash": f" {example} ", "category": "a1"})]
    for lines in (csv_lines, ndjson):
        [entry] = parse_hashlist(lines)
        assert (entry.hash_type, entry.hash) == (kind.name, example)


@by_example
def test_hashlist_rejects_a_wrong_length_without_echoing_it(kind: type[HashType],
                                                           example: str) -> None:
    bad = example[:-1]
    with pytest.raises(HashlistFormatError) as info:
        list(parse_hashlist(["hash_type,hash,category", f"{kind.name},{bad},baseline"]))
    assert info.value.field == "hash" and info.value.line == 2
    assert info.value.problem == f"expected {kind.hex_length} hex characters for {kind.name}"
    assert bad not in str(info.value)


def test_hashlist_names_every_registered_type_for_an_unknown_one() -> None:
    with pytest.raises(HashlistFormatError) as info:
        list(parse_hashlist(["hash_type,hash,category", "tmk,00,baseline"]))
    assert info.value.problem == f"must be one of {', '.join(HASH_TYPES)}, vpdq"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "ntd.db"))
    yield s
    s.close()


def test_matcher_finds_every_example_exactly(store: Store, tmp_path: Path) -> None:
    listing = tmp_path / "examples.ndjson"
    listing.write_text("".join(json.dumps({"hash_type": t.name, "hash": ex,
                                           "category": "baseline"}) + "\n"
                               for t, ex in EXAMPLES))
    entries = ((e.hash_type, e.hash, e.category, e.label, e.source)
               for e in parse_hashlist(listing))
    assert store.import_hashlist(name="examples", source="test", trust="auto", negative=False,
                                 thresholds={}, entries=entries, now=NOW) == len(EXAMPLES)
    # the type names go into the database and come back as the same strings
    assert {e[2] for e in store.hashlist_entries()} == set(HASH_TYPES)
    matcher = Matcher.build(store)
    for kind, example in EXAMPLES:
        hashes: dict[str, object] = {kind.name: example}
        if kind.quality_key:
            hashes[kind.quality_key] = 100
        records = matcher.match_hashes(hashes)
        assert {"list": "examples", "hash_type": kind.name, "distance": 0,
                "category": "baseline", "negative": False} in records
        assert {r["hash_type"] for r in records} == {kind.name}
        if not kind.perceptual:
            other = _flip(kind, example, kind.bits)
            if other not in kind.examples():
                assert matcher.match_hashes({kind.name: other}) == []


@pytest.mark.parametrize("kind", PERCEPTUAL_TYPES, ids=_type_id)
def test_matcher_uses_the_default_radius(store: Store, kind: type[HashType]) -> None:
    example = kind.examples()[0]
    store.import_hashlist(name="l", source=None, trust="review", negative=False, thresholds={},
                          entries=[(kind.name, example, "baseline", None, None)], now=NOW)
    matcher = Matcher.build(store)
    quality = {kind.quality_key: 100} if kind.quality_key else {}
    near = _flip(kind, example, kind.default_radius)
    far = _flip(kind, example, kind.default_radius + 1)
    [hit] = matcher.match_hashes({kind.name: near, **quality})
    assert hit["distance"] == kind.default_radius
    assert matcher.match_hashes({kind.name: far, **quality}) == []


# -- the constants other modules derive from the registry --------------------------------------


def test_derived_constants_follow_the_registry() -> None:
    assert items.HASH_KEYS == ("md5", "sha1", "sha256", "phash", "pdq", "pdq_quality")
    assert items.MIRROR_KEYS == {"pdq_mirror": "pdq"}
    assert notice_content.HASH_KEYS == tuple(HASH_TYPES)
    assert hashlist_format.HASH_HEX_LENGTH == {n: t.hex_length for n, t in HASH_TYPES.items()}
    assert hash_index.HASH_BITS == {"md5": 128, "sha1": 160, "sha256": 256, "phash": 64,
                                    "pdq": 256}
    assert hash_index.DEFAULT_RADIUS == default_radii()


def test_every_perceptual_kind_has_its_radius_options() -> None:
    from plugins import match
    from plugins.recheck.checking import SCHEMA, RecheckSettings

    options = match.ntd_config_schema()["match"]
    for kind in PERCEPTUAL_TYPES:
        assert options[f"{kind.name}_radius"].default == kind.default_radius
        assert SCHEMA["recheck"][f"{kind.name}_radius"].default == kind.default_radius
        if kind.quality_key:
            assert options[f"min_{kind.name}_quality"].default == kind.default_min_quality
    assert RecheckSettings().radii == default_radii()


def test_the_docs_table_lists_every_kind_as_registered() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "hash-types.md").read_text("utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (\d+) \| (\d+) \| (\d+)", text, re.M)
    assert rows == [(t.name, "perceptual" if t.perceptual else "cryptographic", str(t.bits),
                     str(t.hex_length), str(t.default_radius)) for t in TYPES]
