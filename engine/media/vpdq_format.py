"""vPDQ values as text: a video's frame features in one string (light: no imports to speak of).

A vPDQ hash is a list of *features*, one per hashed frame: the frame's 256-bit PDQ (64 hex
characters, reference bit order), its PDQ quality (0-100), the frame number and the timestamp in
seconds. ntd stores, lists and compares it in one canonical text form (the ``vpdq`` value of an
item's hashes, of a hash-list entry and of the database column)::

    <pdq hex>:<quality>:<frame>:<seconds>;<pdq hex>:<quality>:<frame>:<seconds>;...

lower-case hex, features in frame order, seconds with at most three decimals (the reference's
precision). Semicolons keep it one CSV field without quoting. Hash lists may also give the
features as a JSON array (NDJSON ``"vpdq": [{"pdq": .., "quality": .., "frame": .., "ts": ..}]``,
or HMA's ``pdq_hex``/``frame_number``/``timestamp`` keys), which :func:`parse_features` accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

#: Most features one value may hold (a 4-hour video at one feature a second, unpruned).
MAX_FEATURES = 14_400
_FEATURE = re.compile(r"([0-9a-f]{64}):(\d{1,3}):(\d{1,9}):(\d{1,9}(?:\.\d{1,3})?)")


class Feature(NamedTuple):
    """One hashed frame."""

    pdq: str
    quality: int
    frame: int
    ts: float


def format_features(features: Iterable[Feature]) -> str:
    """The canonical text of ``features``."""
    return ";".join(f"{f.pdq}:{f.quality}:{f.frame}:{_seconds(f.ts)}" for f in features)


def _seconds(ts: float) -> str:
    text = f"{ts:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _from_mapping(item: Mapping[str, object]) -> Feature:
    pdq = item.get("pdq", item.get("pdq_hex", item.get("hash")))
    quality = item.get("quality")
    frame = item.get("frame", item.get("frame_number", 0))
    ts = item.get("ts", item.get("timestamp", 0))
    if not isinstance(pdq, str) or isinstance(quality, bool) or not isinstance(quality, int):
        raise ValueError("each vpdq feature needs a pdq hex string and an integer quality")
    if isinstance(frame, bool) or not isinstance(frame, int) or isinstance(ts, bool) \
            or not isinstance(ts, int | float):
        raise ValueError("a vpdq feature's frame is an integer and its ts a number")
    return Feature(pdq.strip().lower(), quality, frame, float(ts))


def parse_features(value: object) -> list[Feature]:
    """Features from the canonical text or a JSON-style list of mappings; ``ValueError``
    (never quoting the value: hashes can be confidential) for anything else."""
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            raise ValueError("a vpdq hash needs at least one frame feature")
        parts = text.split(";")
        if len(parts) > MAX_FEATURES:
            raise ValueError(f"a vpdq hash holds at most {MAX_FEATURES} frame features")
        out = []
        for part in parts:
            m = _FEATURE.fullmatch(part.strip())
            if m is None:
                raise ValueError("expected vpdq features <64 hex>:<quality>:<frame>:<seconds>"
                                 " separated by ';'")
            out.append(Feature(m[1], int(m[2]), int(m[3]), float(m[4])))
    elif isinstance(value, list):
        if not value or len(value) > MAX_FEATURES:
            raise ValueError(f"a vpdq hash holds 1 to {MAX_FEATURES} frame features")
        if not all(isinstance(v, Mapping) for v in value):
            raise ValueError("each vpdq feature must be an object")
        out = [_from_mapping(v) for v in value]
    else:
        raise ValueError("a vpdq hash must be a string or a list of frame features")
    for f in out:
        if len(f.pdq) != 64 or not re.fullmatch(r"[0-9a-f]{64}", f.pdq):
            raise ValueError("expected 64 hex characters for each vpdq frame's pdq")
        if not 0 <= f.quality <= 100 or f.frame < 0 or not 0 <= f.ts < 10**9:
            raise ValueError("a vpdq feature's quality is 0-100, its frame and ts not negative")
    return out


def normalise(value: object) -> str:
    """The canonical text of a vPDQ value in any accepted form (``ValueError`` if invalid)."""
    return format_features(sorted(parse_features(value), key=lambda f: f.frame))


def frame_matches(query: list[Feature], listed: list[Feature], *, distance: int,
                  quality: int) -> tuple[float, float]:
    """The vPDQ comparison (vPDQ README, "Comparison (Matching) Algorithm"): the percentages
    of the unique query frames of at least ``quality`` that are within ``distance`` bits of a
    listed frame, and of the listed frames that are within it of a query frame (brute force:
    for two videos; the matcher does the same through its Hamming index)."""
    q = {int(f.pdq, 16) for f in query if f.quality >= quality}
    c = {int(f.pdq, 16) for f in listed if f.quality >= quality}
    if not q or not c:
        return 0.0, 0.0
    q_hit = sum(1 for a in q if any((a ^ b).bit_count() <= distance for b in c))
    c_hit = sum(1 for b in c if any((a ^ b).bit_count() <= distance for a in q))
    return q_hit * 100 / len(q), c_hit * 100 / len(c)
