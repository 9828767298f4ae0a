"""Media hashing on synthetic images only: formats, safety limits, determinism."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import pickle
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from PIL import Image

from engine.lab import images
from engine.media import hashing as mh
from engine.media.hash_index import hamming_hex

FORMATS = {
    "JPEG": {"quality": 90},
    "PNG": {},
    "GIF": {},
    "WEBP": {"quality": 90},
    "BMP": {},
}


def _png_claiming(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims ``width``×``height`` (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    return images.make_image(7, (320, 240))


def test_crypto_hashes_match_hashlib() -> None:
    data = b"ntd synthetic bytes"
    assert mh.crypto_hashes(data) == {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_hash_media_each_format(scene: Image.Image, fmt: str) -> None:
    data = images.encode(scene, fmt, **FORMATS[fmt])
    h = mh.hash_media(data)
    assert h["format"] == fmt
    assert (h["width"], h["height"]) == (320, 240)
    assert h["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(h["phash"]) == 16 and int(h["phash"], 16) >= 0
    if mh.PDQ_AVAILABLE:
        assert len(h["pdq"]) == 64 and int(h["pdq"], 16) >= 0
        assert 0 <= h["pdq_quality"] <= 100
    # Every format of the same scene is a near-duplicate of the lossless PNG.
    ref = mh.hash_media(images.png_bytes(scene))
    limit = 10 if fmt == "GIF" else 4  # GIF quantises to 256 colours
    assert hamming_hex(h["phash"], ref["phash"]) <= limit
    if mh.PDQ_AVAILABLE:
        assert hamming_hex(h["pdq"], ref["pdq"]) <= 31


def test_hash_media_without_pdq(scene: Image.Image) -> None:
    h = mh.hash_media(images.jpeg_bytes(scene), with_pdq=False)
    assert h["pdq"] is None and h["pdq_quality"] is None
    assert h["phash"] == mh.hash_media(images.jpeg_bytes(scene))["phash"]


def test_reduced_jpeg_decode_close_to_full_decode() -> None:
    data = images.jpeg_bytes(images.make_image(3, (1024, 768)), 85)
    fast = mh.hash_media(data)
    full, *_ = mh.decode_luma(data, min_side=None)
    assert full.size == (1024, 768)
    assert hamming_hex(fast["phash"], mh.phash_hex(full)) <= 4
    if mh.PDQ_AVAILABLE:
        pdq_full = mh.pdq_hex(full)
        assert pdq_full is not None
        assert hamming_hex(fast["pdq"], pdq_full[0]) <= 16


def test_palette_with_transparency_does_not_warn() -> None:
    # filterwarnings=error: Pillow's "Palette images with Transparency" warning would fail this.
    img = images.make_image(2, (64, 64)).convert("P", palette=Image.Palette.ADAPTIVE)
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=bytes(range(256)))
    assert mh.hash_media(buf.getvalue())["format"] == "PNG"
    gif = io.BytesIO()
    img.save(gif, "GIF", transparency=0)
    assert mh.hash_media(gif.getvalue())["format"] == "GIF"


def test_mode_variants(scene: Image.Image) -> None:
    for mode in ("L", "RGBA", "LA", "1"):
        h = mh.hash_media(images.png_bytes(scene.convert(mode)))
        assert len(h["phash"]) == 16


@pytest.mark.parametrize(
    "size",
    [
        (8000, 8000),  # 64 Mpx: below Pillow's limit, above ours
        (10_000, 10_000),  # 100 Mpx: Pillow's DecompressionBombWarning (an error under pytest)
        (100_000, 100_000),  # 10 Gpx: Pillow's DecompressionBombError
    ],
)
def test_decompression_bomb_rejected(size: tuple[int, int]) -> None:
    data = _png_claiming(*size)
    assert len(data) < 100
    with pytest.raises(mh.MediaError) as err:
        mh.hash_media(data)
    assert err.value.reason == "bomb"


def test_pixel_limit_is_local() -> None:
    data = images.png_bytes(images.make_image(1, (100, 100)))
    with pytest.raises(mh.MediaError) as err:
        mh.hash_media(data, max_pixels=9_999)
    assert err.value.reason == "bomb"
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 10_000_000
    assert mh.hash_media(data, max_pixels=10_000)["width"] == 100


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not an image", b"%PDF-1.7\n" + b"0" * 100, b"\x89PNG\r\n\x1a\n"],
)
def test_non_image_rejected(data: bytes) -> None:
    with pytest.raises(mh.MediaError) as err:
        mh.hash_media(data)
    assert err.value.reason in ("not_image", "decode_error")
    assert mh.crypto_hashes(data)["md5"] == hashlib.md5(data).hexdigest()


def test_disallowed_format_is_not_image(scene: Image.Image) -> None:
    buf = io.BytesIO()
    scene.save(buf, "TIFF")
    with pytest.raises(mh.MediaError) as err:
        mh.hash_media(buf.getvalue())
    assert err.value.reason == "not_image"


def test_truncated_jpeg_is_decode_error(scene: Image.Image) -> None:
    data = images.jpeg_bytes(scene)
    with pytest.raises(mh.MediaError) as err:
        mh.hash_media(data[: len(data) // 2])
    assert err.value.reason == "decode_error"


def test_media_error_is_stage_error() -> None:
    from engine.errors import StageError

    assert issubclass(mh.MediaError, StageError)


def test_images_are_deterministic() -> None:
    a = np.asarray(images.make_image(11, (96, 64)))
    b = np.asarray(images.make_image(11, (96, 64)))
    c = np.asarray(images.make_image(12, (96, 64)))
    assert a.shape == (64, 96, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert images.demo_image_bytes(5) == images.demo_image_bytes(5)


def test_unrelated_images_are_far_apart() -> None:
    hashes = [mh.hash_media(images.demo_image_bytes(s)) for s in range(6)]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert hamming_hex(hashes[i]["phash"], hashes[j]["phash"]) > 8
            if mh.PDQ_AVAILABLE:
                assert hamming_hex(hashes[i]["pdq"], hashes[j]["pdq"]) > 31


@pytest.mark.parametrize("name", sorted(images.TRANSFORMS))
def test_transforms_produce_images(name: str) -> None:
    img = images.make_image(4, (128, 128))
    data = images.TRANSFORMS[name](img)
    h = mh.hash_media(data)
    assert h["width"] > 0
    if name in ("jpeg_q40", "resize_50", "jpeg_to_png", "png_to_jpeg"):
        ref = mh.hash_media(images.jpeg_bytes(img))
        assert hamming_hex(h["phash"], ref["phash"]) <= 8


def test_hash_media_in_process_pool() -> None:
    data = images.jpeg_bytes(images.make_image(9, (64, 64)))
    pickle.dumps(mh.hash_media)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        remote = pool.submit(mh.hash_media, data).result(timeout=60)
    assert remote == mh.hash_media(data)


def test_demo_hashlist_builder(tmp_path) -> None:
    from engine.media.hashlist_format import parse_hashlist

    path = tmp_path / "demo.csv"
    rows = images.build_demo_hashlist(path, n=2)
    entries = list(parse_hashlist(path))
    assert len(entries) == rows == (10 if mh.PDQ_AVAILABLE else 8)
    assert {e.category for e in entries} == {"baseline"}
    h = mh.hash_media(images.demo_image_bytes(1))
    assert {(e.hash_type, e.hash) for e in entries if e.label == "synthetic-0001"} >= {
        ("md5", h["md5"]),
        ("phash", h["phash"]),
    }


def test_bench_hash_smoke() -> None:
    from engine.bench.matching import bench_hash

    r = bench_hash(3, size=(256, 192))
    assert r["images"] == 3 and r["phash_crypto_per_s"]["per_cpu_s"] > 0


def test_phash_hex_is_imagehash_phash() -> None:
    import imagehash

    for seed in range(12):
        img = images.make_image(seed, (200, 150))
        for candidate in (img, img.convert("L"), img.resize((33, 31))):
            assert mh.phash_hex(candidate) == str(imagehash.phash(candidate))
