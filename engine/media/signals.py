"""Hash types as small classes: one class per kind of hash ntd computes, stores and matches.

Each class says everything the rest of ntd needs to know about its kind — the ``name`` stored in
the database, in hash-list files and as a key of an item's ``hashes``; its length in ``bits``;
whether it is ``perceptual`` (matched within a Hamming radius) or cryptographic (matched
exactly); its ``default_radius``; how it is computed from fetched bytes, validated and compared;
and ``examples()``, synthetic sample values from which ``tests/test_signals.py`` generates its
tests. The registry :data:`HASH_TYPES` is the one place that lists the kinds; modules that used
to spell out ``("md5", "sha1", "sha256", "phash", "pdq")`` derive their constants from it.

The shape follows python-threatexchange's ``SignalType``. Adding a kind (a video hash such as
vPDQ, say) is one class here plus its entry in :data:`HASH_TYPES`; ``docs/hash-types.md`` lists
what else a new kind needs (its computation in the fetch path, a radius option).

This module is light on purpose (``hashlib`` and ``re`` only): the imaging stack is imported
inside :meth:`PerceptualHashType.compute`, so importing a hash type never loads Pillow or numpy.
Validation messages never contain the value: hashes can be confidential (hash lists).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import ClassVar

from engine.media.vpdq_format import Feature, format_features, normalise, parse_features

_HEX = re.compile(r"[0-9a-f]+")


class HashType:
    """A kind of hash. Used as a class (every method is a classmethod); not instantiated.

    A concrete kind is declared with class keywords, which set the attributes below::

        class PHash(PerceptualHashType, name="phash", label="pHash", bits=64, default_radius=8):
            ...

    A subclass without ``name`` (``CryptoHashType``, ``PerceptualHashType``) is a base for
    kinds, not a kind.
    """

    #: The identifier: stored in the database and hash-list files, the key in item hashes.
    name: ClassVar[str]
    #: How people write it (help texts, docs).
    label: ClassVar[str]
    bits: ClassVar[int]
    #: Number of hexadecimal characters of a hash (``bits // 4``), set from ``bits``.
    hex_length: ClassVar[int]
    #: Matched within a Hamming radius (True) or exactly (False).
    perceptual: ClassVar[bool] = False
    #: The Hamming radius a match may have unless configured otherwise (0: exact only).
    default_radius: ClassVar[int] = 0
    #: Key of the hash's quality score in an item's hashes, if the kind has one.
    quality_key: ClassVar[str | None] = None
    #: With a quality score: hashes of lower quality are not looked up, unless configured
    #: otherwise (``[match] min_<name>_quality``).
    default_min_quality: ClassVar[int] = 0
    #: Key, in what hashing returns, of the hash of the left-right mirror image (kept apart
    #: from the item, for matching only), if the kind computes one.
    mirror_key: ClassVar[str | None] = None

    def __init_subclass__(cls, *, name: str | None = None, label: str | None = None,
                          bits: int = 0, default_radius: int | None = None,
                          quality_key: str | None = None, default_min_quality: int | None = None,
                          mirror_key: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:
            return  # a base for kinds
        if bits <= 0 or bits % 4:
            raise TypeError(f"{cls.__name__}: bits must be a positive multiple of 4")
        given = {"name": name, "label": label or name, "bits": bits, "hex_length": bits // 4,
                 "default_radius": default_radius, "quality_key": quality_key,
                 "default_min_quality": default_min_quality, "mirror_key": mirror_key}
        for key, value in given.items():
            if value is not None:
                setattr(cls, key, value)

    @classmethod
    def compute(cls, data: bytes) -> str | None:
        """This kind's hash of fetched ``data`` (lower-case hex), or None where it cannot be
        computed in this installation (an optional library missing)."""
        raise NotImplementedError

    @classmethod
    def validate(cls, value: str) -> str:
        """``value`` normalised (surrounding white space stripped, lower case); raises
        ``ValueError`` naming the kind and the expected length (never the value) if it is not
        exactly ``hex_length`` hexadecimal characters."""
        if not isinstance(value, str):
            raise ValueError(f"a {cls.name} hash must be a string")
        normal = value.strip().lower()
        if len(normal) != cls.hex_length or not _HEX.fullmatch(normal):
            raise ValueError(f"expected {cls.hex_length} hex characters for {cls.name}")
        return normal

    @classmethod
    def distance(cls, a: str, b: str) -> int:
        """Hamming distance in bits between two hashes of this kind (both validated first, so
        ``ValueError`` for either being malformed). For cryptographic kinds only 0 — the same
        hash — means a match."""
        return (int(cls.validate(a), 16) ^ int(cls.validate(b), 16)).bit_count()

    @classmethod
    def matches(cls, a: str, b: str, radius: int | None = None) -> bool:
        """Whether ``a`` and ``b`` are within ``radius`` (default :attr:`default_radius`)."""
        return cls.distance(a, b) <= (cls.default_radius if radius is None else radius)

    @classmethod
    def examples(cls) -> list[str]:
        """Valid, normalised sample hashes of this kind, all synthetic (for generated tests)."""
        raise NotImplementedError


class CryptoHashType(HashType):
    """A cryptographic digest of the fetched bytes, matched exactly (radius 0); the kind's
    ``name`` is its ``hashlib`` algorithm."""

    @classmethod
    def compute(cls, data: bytes) -> str:
        """The hex digest of ``data`` (not used for security: identification only)."""
        return hashlib.new(cls.name, data, usedforsecurity=False).hexdigest()

    @classmethod
    def examples(cls) -> list[str]:
        """Digests of empty input and of a short synthetic byte string."""
        return [cls.compute(b""), cls.compute(b"ntd synthetic example")]


class PerceptualHashType(HashType):
    """A hash of the decoded picture, matched within a Hamming radius.

    :meth:`compute` decodes through ``engine.media.hashing.hash_media`` — the defensive decoder
    the fetch stage uses — so the value is the one an item gets; it raises that module's
    ``MediaError`` for bytes that are not a safely decodable image.
    """

    perceptual = True

    @classmethod
    def compute(cls, data: bytes) -> str | None:
        # here, not at module level: only the processes that hash load the imaging stack
        # deferred: pulls in numpy, PIL, pdqhash, loaded on first use
        from engine.media.hashing import hash_media

        value = hash_media(data)[cls.name]
        return None if value is None else str(value)


class MD5(CryptoHashType, name="md5", label="MD5", bits=128):
    """MD5 of the file bytes: the most common entry of older hash lists."""


class SHA1(CryptoHashType, name="sha1", label="SHA-1", bits=160):
    """SHA-1 of the file bytes."""


class SHA256(CryptoHashType, name="sha256", label="SHA-256", bits=256):
    """SHA-256 of the file bytes: also how ntd keys an item's mirror hashes."""


class PHash(PerceptualHashType, name="phash", label="pHash", bits=64, default_radius=8):
    """imagehash's 64-bit DCT pHash (bit-identical to ``str(imagehash.phash(img))``)."""

    @classmethod
    def examples(cls) -> list[str]:
        # the synthetic demo images of seeds 0 and 1, and the two extremes
        return ["ee009ff8b30f15e0", "e263699496696cb6", "0" * 16, "f" * 16]


class PDQ(PerceptualHashType, name="pdq", label="PDQ", bits=256, default_radius=31,
          quality_key="pdq_quality", mirror_key="pdq_mirror", default_min_quality=50):
    """Meta's 256-bit PDQ (reference bit order), with a quality score (0-100) and the PDQ of
    the left-right mirror image; None where the optional ``pdqhash`` is not installed. The
    radius is PDQ's documented threshold for a confident match. Like ThreatExchange, hashes of
    quality below 50 (flat or nearly featureless images, whose PDQ is mostly noise) are kept on
    the item but not matched (``[match] min_pdq_quality``, default 50)."""

    @classmethod
    def examples(cls) -> list[str]:
        # the synthetic demo image of seed 0, and the two extremes
        return ["3f43a3ad23e84764283dac55bc0195f8d39f5a836a5ce8781f66070fe17cfe00",
                "0" * 64, "f" * 64]


class VideoHashType(HashType):
    """A hash of a video: a list of frame hashes (not one fixed-length hex string), matched
    when enough frames match in both directions. Kept out of :data:`HASH_TYPES` (whose kinds
    are each one hex string with one index): video kinds are listed in :data:`VIDEO_TYPES`,
    and :func:`hash_type` knows both."""

    video: ClassVar[bool] = True

    @classmethod
    def compute(cls, data: bytes) -> str | None:
        # here, not at module level: only the processes that hash load PyAV
        # deferred: pulls in av, numpy, pdqhash, loaded on first use
        from engine.media.video import hash_video

        return str(hash_video(data)[cls.name])


class VPDQ(VideoHashType, name="vpdq", label="vPDQ", bits=256, default_radius=31,
           default_min_quality=50):
    """Meta's vPDQ: the PDQ of one frame a second, with quality, frame number and timestamp
    (``engine.media.vpdq_format`` defines the text form). ``bits`` and ``default_radius`` are
    those of each frame's PDQ; frames below ``default_min_quality`` are not compared (HMA's
    ``VPDQ_QUALITY_THRESHOLD``). ``distance`` is that of the closest pair of frames."""

    @classmethod
    def validate(cls, value: str) -> str:
        """The canonical text of a vPDQ value (``ValueError`` naming the expected form)."""
        return normalise(value)

    @classmethod
    def distance(cls, a: str, b: str) -> int:
        """The smallest Hamming distance between a frame of ``a`` and a frame of ``b``."""
        fa, fb = parse_features(a), parse_features(b)
        return min((int(x.pdq, 16) ^ int(y.pdq, 16)).bit_count() for x in fa for y in fb)

    @classmethod
    def examples(cls) -> list[str]:
        # synthetic features (not hashes of any video)
        return [format_features([Feature("0" * 64, 100, 0, 0.0)]),
                format_features([Feature("f" * 64, 90, 0, 0.0), Feature("0f" * 32, 80, 30, 1.0)])]


#: Every kind, by name, in the order ntd lists them (cryptographic first).
HASH_TYPES: dict[str, type[HashType]] = {t.name: t for t in (MD5, SHA1, SHA256, PHash, PDQ)}
#: The exactly-matched kinds, in registry order.
CRYPTO_TYPES: tuple[type[HashType], ...] = tuple(
    t for t in HASH_TYPES.values() if not t.perceptual)
#: The kinds matched within a Hamming radius, in registry order.
PERCEPTUAL_TYPES: tuple[type[HashType], ...] = tuple(
    t for t in HASH_TYPES.values() if t.perceptual)
#: Their names (the keys an item's ``hashes`` may have for hashes proper).
HASH_TYPE_NAMES: tuple[str, ...] = tuple(HASH_TYPES)
CRYPTO_NAMES: tuple[str, ...] = tuple(t.name for t in CRYPTO_TYPES)
PERCEPTUAL_NAMES: tuple[str, ...] = tuple(t.name for t in PERCEPTUAL_TYPES)


#: The kinds for videos (a list of frame hashes each), by name.
VIDEO_TYPES: dict[str, type[HashType]] = {t.name: t for t in (VPDQ,)}
#: Every kind of either registry: what a hash list may hold.
SIGNAL_TYPES: dict[str, type[HashType]] = {**HASH_TYPES, **VIDEO_TYPES}


def hash_type(name: str) -> type[HashType]:
    """The hash type called ``name`` (case-insensitive), still-image or video; ``ValueError``
    listing the known names for anything else."""
    found = SIGNAL_TYPES.get(name.strip().lower()) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"unknown hash type {name!r} (known: {', '.join(SIGNAL_TYPES)})")
    return found


def perceptually_hashed(hashes: Mapping[str, object]) -> bool:
    """Whether an item's ``hashes`` hold a perceptual hash (its bytes decoded as an image or
    a video)."""
    return any(hashes.get(name) for name in (*PERCEPTUAL_NAMES, *VIDEO_TYPES))


def default_radii() -> dict[str, int]:
    """``{name: default_radius}`` of every perceptual kind (a fresh dict, safe to update)."""
    return {t.name: t.default_radius for t in PERCEPTUAL_TYPES}
