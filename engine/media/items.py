"""What an item's hashes are, and how fetched bytes become them (in the CPU pool).

Shared by the stages that fetch (fetch, re-check): this module is light on purpose — the
imaging stack (``engine.media.hashing``) is imported inside :func:`hash_bytes`, which runs in
the process pool, so the engine process never loads it.
"""

from __future__ import annotations

from typing import Any

from engine.media.decode_budget import VideoLimits
from engine.media.digests import crypto_hashes
from engine.media.signals import HASH_TYPES, VIDEO_TYPES

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"})
# What the fetcher sniffs as video (engine.safe_fetch.VIDEO_TYPES; not imported: aiohttp).
VIDEO_MEDIA_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-matroska"})
# An item's hashes of a video: the digests and each video kind's value.
VIDEO_KEYS = ("md5", "sha1", "sha256", *VIDEO_TYPES)


# An item's ``hashes``: every hash type's value, each followed by its quality score if it has one.
HASH_KEYS = tuple(key for t in HASH_TYPES.values()
                  for key in (t.name, t.quality_key) if key is not None)
# Hashes of the left-right mirror image, for matching only (a mirrored copy of a listed image
# is the cheapest evasion): kept in the case's data under "mirror_hashes", keyed by the item's
# SHA-256 (no URLs: case data outlives the anonymisation of items), not in the item.
# ``{key in what hash_media returns: hash type name}``.
MIRROR_KEYS = {t.mirror_key: t.name for t in HASH_TYPES.values() if t.mirror_key is not None}


def hash_bytes(data: bytes, content_type: str, mirror: bool = False,
               video: VideoLimits | None = None) -> dict[str, Any]:
    """Hashes of fetched bytes (runs in the process pool; nothing is written anywhere).

    Images get cryptographic and perceptual hashes (``mirror``: also ``MIRROR_KEYS``); videos
    their digests and vPDQ (``VIDEO_KEYS``, within the ``video`` limits); anything else, or an
    image or video that fails to decode safely, gets cryptographic hashes and an ``error``
    naming why.
    """
    # here, not at module level: only the pool processes load the imaging stack
    # deferred: pulls in numpy, PIL, pdqhash, loaded on first use
    from engine.media.hashing import MediaError, hash_media

    if content_type in VIDEO_MEDIA_TYPES:
        # deferred: pulls in av (FFmpeg), loaded on first use in the pool
        from engine.media.video import hash_video

        try:
            h = hash_video(data, video)
            return {k: h[k] for k in VIDEO_KEYS}
        except MediaError as exc:
            return {**crypto_hashes(data), "error": exc.reason}
    if content_type in IMAGE_TYPES:
        try:
            h = hash_media(data)
            return {k: h[k] for k in (HASH_KEYS + tuple(MIRROR_KEYS) if mirror else HASH_KEYS)}
        except MediaError as exc:
            return {**crypto_hashes(data), "error": exc.reason}
    return crypto_hashes(data)
