"""Synthetic hash-sharing files for tests and demos: NCMEC hash-sharing XML and VICS JSON.

Every hash is random hex from a seeded generator: these files describe no real material. The
shapes follow the published formats ntd reads (``plugins/hashsource/files.py``): NCMEC's
``queryResult`` document (namespace ``https://hashsharing.ncmec.org/hashsharing/v2``) and the
VICS OData JSON of Project VIC / CAID exports (``{"value": [{"MediaID", "Category", "MD5",
"SHA1"}]}``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from xml.sax.saxutils import escape

NCMEC_NS = "https://hashsharing.ncmec.org/hashsharing/v2"


def random_hex(rng: random.Random, chars: int) -> str:
    """``chars`` random lower-case hex digits."""
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def ncmec_xml(images: Sequence[dict[str, str]], *, deleted: Sequence[str] = (),
              videos: Sequence[dict[str, str]] = ()) -> str:
    """A ``queryResult`` document. Each image/video is ``{"id", "classification"?, "md5"?,
    "sha1"?, "pdq"?, "pdna"?}``; ``deleted`` are image ids marked ``deletedImage``."""

    def entry(kind: str, spec: dict[str, str]) -> str:
        prints = "".join(f"<{k}>{escape(spec[k])}</{k}>" for k in ("md5", "sha1", "pdq", "pdna")
                         if k in spec)
        label = (f"<classification>{escape(spec['classification'])}</classification>"
                 if spec.get("classification") else "")
        return (f"<{kind}><member id=\"42\">Lab Member</member>"
                f"<timestamp>2026-11-01T10:00:00Z</timestamp><id>{escape(spec['id'])}</id>"
                f"{label}<fingerprints>{prints}</fingerprints></{kind}>")

    gone = "".join(f"<deletedImage><id>{escape(i)}</id>"
                   f"<timestamp>2026-11-01T11:00:00Z</timestamp></deletedImage>"
                   for i in deleted)
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<queryResult xmlns="{NCMEC_NS}">'
            f'<images count="{len(images)}">{"".join(entry("image", s) for s in images)}'
            f'{gone}</images>'
            f'<videos count="{len(videos)}">{"".join(entry("video", s) for s in videos)}'
            f'</videos></queryResult>')


def vic_json(records: Sequence[dict[str, object]]) -> str:
    """A VICS OData document of ``records`` (``{"MediaID", "Category", "MD5", "SHA1"}``)."""
    return json.dumps({"@odata.context": "http://github.com/VICSDATAMODEL/ProjectVic/"
                                         "DataModels/2.0.xml/Default/$metadata#Media",
                       "value": list(records)}, indent=1)


def synthetic_vic(n: int, *, seed: int = 7, category: int = 1) -> list[dict[str, object]]:
    """``n`` VICS records with random upper-case MD5/SHA-1 (as VIC exports write them)."""
    rng = random.Random(seed)
    return [{"MediaID": i + 1, "Category": category, "MD5": random_hex(rng, 32).upper(),
             "SHA1": random_hex(rng, 40).upper(), "MediaSize": 1000 + i,
             "IsPrecategorized": "false"} for i in range(n)]
