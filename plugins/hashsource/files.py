"""Hash-sharing files: NCMEC hash-sharing XML and Project VIC / CAID-style (VICS) JSON.

``ntd hashlist import FILE --format ncmec-xml|vic-json`` reads them into one local list (the
list of the section, ``[hashsource.ncmec] list_name`` / ``[hashsource.vic] list_name``, or
``--name``) as a diff keyed by the file's own entry ids: importing the same file again changes
nothing, a newer file changes only what changed. A VIC file is a whole export (ids missing from
it leave the list); an NCMEC document is a window of the exchange and is merged (its
``deleted*`` elements remove ids).

**NCMEC** (the hash-sharing API's ``queryResult`` document, namespace
``https://hashsharing.ncmec.org/hashsharing/v2``): ``images/image`` and ``videos/video`` with
``id``, ``classification`` and ``fingerprints`` (``md5``, ``sha1``, ``pdq``; PhotoDNA and the
video fingerprints ntd cannot compute are skipped and counted), ``deletedImage`` /
``deletedVideo`` remove an id. Classifications map to ntd categories through
``[hashsource.ncmec] categories`` (default A1, A2 → ``baseline``; B1, B2 → ``national``).

**VIC** (the VICS OData JSON Project VIC and CAID exports use): ``{"value": [{"MediaID": 1,
"Category": 1, "MD5": "..", "SHA1": "..", ...}]}``; ``Category`` numbers map through
``[hashsource.vic] categories`` (default ``1`` → ``baseline``, ``2`` → ``national``; others,
e.g. 0 uncategorised or non-pertinent, are not imported). Vendors number differently (CAID's
categories A/B/C are not VIC's): set the table for your files.

XML with a document type declaration is refused (no entity expansion, no external entities);
JSON nesting is bounded (``engine.bounded_json``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from engine.bounded_json import loads as bounded_loads
from engine.config import Config, Option, one_of
from engine.errors import InputError
from engine.hash_sources import HashSource, ListChanges, SourceEntry

NCMEC_NS = "https://hashsharing.ncmec.org/hashsharing/v2"
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HEX = {"md5": re.compile(r"[0-9a-f]{32}"), "sha1": re.compile(r"[0-9a-f]{40}"),
        "sha256": re.compile(r"[0-9a-f]{64}"), "pdq": re.compile(r"[0-9a-f]{64}")}


def _category_table(value: Any) -> str | None:
    for key, category in value.items():
        if not isinstance(category, str) or not _CATEGORY.fullmatch(category):
            return f"{key}: {category!r} is not an ntd category (lower-case, e.g. baseline)"
    return None


def _schema(list_name: str, categories: dict[str, str]) -> dict[str, Option]:
    return {
        "list_name": Option(type=str, default=list_name, help="the local list filled"),
        "trust": Option(type=str, default="review", check=one_of("auto", "review"),
                        help="auto: a match confirms a case; review: an analyst decides"),
        "categories": Option(type=dict, default=categories, check=_category_table,
                             help="the file's categories -> ntd categories (others skipped)"),
    }


NCMEC_SCHEMA = _schema("ncmec", {"A1": "baseline", "A2": "baseline", "B1": "national",
                                 "B2": "national"})
NCMEC_SCHEMA["default_category"] = Option(
    type=str, default="national", help="category of entries without a classification")
VIC_SCHEMA = _schema("vic", {"1": "baseline", "2": "national"})


def _hex(kind: str, value: Any) -> str | None:
    text = str(value or "").strip().lower()
    return text if _HEX[kind].fullmatch(text) else None


def _read(path: str) -> bytes:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        return file.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc


class _FileSource(HashSource):
    section = ""

    def __init__(self, config: Config) -> None:
        self.settings = config.section(self.section)

    @property
    def enabled(self) -> bool:
        return True

    def _changes(self, entries: list[SourceEntry], removed: list[str], skipped: dict[str, int],
                 path: str, *, replace: bool) -> ListChanges:
        notes = tuple(f"{n} skipped: {why}" for why, n in sorted(skipped.items()))
        return ListChanges(list=self.settings["list_name"], source=f"{self.name}:{path}",
                           trust=self.settings["trust"], entries=entries, removed=removed,
                           replace=replace, transferred=len(entries), notes=notes)


class NCMECFile(_FileSource):
    """``--format ncmec-xml``."""

    name = "ncmec"
    section = "hashsource.ncmec"
    formats = ("ncmec-xml",)

    def read_file(self, fmt: str, path: str) -> ListChanges:
        data = _read(path)
        head = data[:65536].lower()
        if b"<!doctype" in head or b"<!entity" in head:
            raise InputError(f"{path}: XML with a document type declaration is refused")
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            raise InputError(f"{path}: not NCMEC hash-sharing XML: {exc}") from exc
        ns = {"n": NCMEC_NS} if root.tag.startswith("{") else {"n": ""}
        q = (lambda tag: f"n:{tag}") if ns["n"] else (lambda tag: tag)
        if root.tag.split("}")[-1] != "queryResult":
            raise InputError(f"{path}: expected a <queryResult> document, got "
                             f"<{root.tag.split('}')[-1]}>")
        table = self.settings["categories"]
        entries: list[SourceEntry] = []
        removed: list[str] = []
        skipped: dict[str, int] = {}
        for kind in ("image", "video"):
            for group in root.findall(q(f"{kind}s"), ns):
                for node in group.findall(q(kind), ns):
                    self._entry(node, kind, q, ns, table, entries, skipped)
                for node in group.findall(q(f"deleted{kind.title()}"), ns):
                    ident = (node.findtext(q("id"), default="", namespaces=ns) or "").strip()
                    if ident:
                        removed.append(f"{kind}:{ident}")
        # An NCMEC document is a window of the exchange (new, changed, deleted entries), not
        # the whole set: it is merged into the list.
        return self._changes(entries, removed, skipped, path, replace=False)

    def _entry(self, node: ET.Element, kind: str, q: Any, ns: dict[str, str],
               table: dict[str, str], entries: list[SourceEntry],
               skipped: dict[str, int]) -> None:
        ident = (node.findtext(q("id"), default="", namespaces=ns) or "").strip()
        if not ident:
            skipped["entry without an id"] = skipped.get("entry without an id", 0) + 1
            return
        classification = (node.findtext(q("classification"), default="", namespaces=ns)
                          or "").strip().upper()
        category = table.get(classification) if classification else \
            self.settings["default_category"]
        if category is None:
            skipped[f"classification {classification}"] = skipped.get(
                f"classification {classification}", 0) + 1
            return
        prints = node.find(q("fingerprints"), ns)
        found = 0
        for child in list(prints) if prints is not None else []:
            tag = child.tag.split("}")[-1].lower()
            value = _hex(tag, child.text) if tag in _HEX else None
            if value is None:
                skipped[f"{tag} fingerprint"] = skipped.get(f"{tag} fingerprint", 0) + 1
                continue
            found += 1
            entries.append(SourceEntry(external_id=f"{kind}:{ident}", hash_type=tag,
                                       hash=value, category=category,
                                       label=f"ncmec {kind} {ident}"))
        if not found:
            skipped["entry without a usable fingerprint"] = skipped.get(
                "entry without a usable fingerprint", 0) + 1


class VICFile(_FileSource):
    """``--format vic-json``."""

    name = "vic"
    section = "hashsource.vic"
    formats = ("vic-json",)

    def read_file(self, fmt: str, path: str) -> ListChanges:
        data = _read(path)
        try:
            doc = bounded_loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{path}: not VICS JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("value"), list):
            raise InputError(f"{path}: expected a VICS OData document "
                             '({"value": [...]})')
        table = {str(k): v for k, v in self.settings["categories"].items()}
        entries: list[SourceEntry] = []
        skipped: dict[str, int] = {}
        for record in doc["value"]:
            if not isinstance(record, dict):
                skipped["not an object"] = skipped.get("not an object", 0) + 1
                continue
            fields = {str(k).lower(): v for k, v in record.items()}
            category = table.get(str(fields.get("category")))
            if category is None:
                why = f"category {fields.get('category')}"
                skipped[why] = skipped.get(why, 0) + 1
                continue
            hashes = {kind: _hex(kind, fields.get(kind)) for kind in ("md5", "sha1", "sha256")}
            ident = str(fields.get("mediaid") or hashes["md5"] or hashes["sha1"] or "")
            usable = {k: v for k, v in hashes.items() if v}
            if not ident or not usable:
                skipped["record without a usable hash"] = skipped.get(
                    "record without a usable hash", 0) + 1
                continue
            entries += [SourceEntry(external_id=ident, hash_type=kind, hash=value,
                                    category=category, label=f"vic media {ident}")
                        for kind, value in usable.items()]
        return self._changes(entries, [], skipped, path, replace=True)  # a whole export
