"""HMA (Meta's Hasher-Matcher-Actioner, OpenMediaMatch 2.x): a bank's signals as local lists,
and HMA's lookup endpoint as a remote matcher.

The sync reads **Get Bank/List Contents** as HMA's API page describes it (ordered by
modification time, a page size and a pagination token in, contents with their signals and the
next token out): ``GET /c/bank/<bank>/content?page_size=N[&page_token=T]`` answering
``{"contents": [{"id": 7, "signals": {"pdq": "..", "video_md5": ".."},
"disable_until_ts": 0}], "next_page_token": "T2"}``. The token of the last page is kept as the
list's cursor, so the next sync asks only for what changed since. A content whose
``disable_until_ts`` lies in the future, or marked ``"deleted": true``, leaves the local list;
``ntd hashlist sync hma --full`` reads the whole bank again and drops what is gone. Signals are
stored as they come: ``pdq``, ``md5`` (HMA's ``video_md5`` and ``md5``) and ``vpdq``, matched by
whichever hash types ntd has.

The remote matcher asks ``GET /m/lookup?signal_type=pdq&signal=<hash>&banks=<banks>``, which
answers ``{"BANK": [{"bank_content_id": 1, "distance": "0"}]}`` (HMA applies its own distance
thresholds). ``docs/hash-sources.md``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from engine.config import Option, one_of, port_list, positive, secret_from_env
from engine.errors import HashlistError
from engine.hash_sources import ListChanges, RemoteMatch, SourceEntry
from plugins.hashsource.client import ApiSource

SECTION = "hashsource.hma"
# HMA signal type name -> ntd hash type (anything else is skipped with a note)
SIGNAL_TYPES = {"pdq": "pdq", "video_md5": "md5", "md5": "md5", "photo_md5": "md5",
                "vpdq": "vpdq"}
_HEX = {"pdq": re.compile(r"[0-9a-f]{64}"), "md5": re.compile(r"[0-9a-f]{32}")}
_BANK = re.compile(r"[A-Z0-9_]{1,64}")


def _url(value: Any) -> str | None:
    return None if not value or re.match(r"https?://[^/?#]+", value) else \
        "must be an http:// or https:// URL (empty: off)"


def ports(value: Any) -> str | None:
    """Option check: empty, or a list of TCP ports."""
    return port_list(value) if value else None


def _banks(value: Any) -> str | None:
    bad = [b for b in value if not isinstance(b, str) or not _BANK.fullmatch(b)]
    return f"bank names are CAPS_AND_UNDERSCORE, not {bad[0]!r}" if bad else None


SCHEMA: dict[str, Option] = {
    "base_url": Option(type=str, default="", check=_url,
                       help="HMA's root, e.g. http://hma.internal:5100 (empty: off)"),
    "banks": Option(type=list, default=[], check=_banks,
                    help="the banks to pull; each becomes the local list <list_prefix><BANK>"),
    "list_prefix": Option(type=str, default="hma-", help="prefix of the local lists' names"),
    "token_env": Option(type=str, default="",
                        help="environment variable with the bearer token of the proxy in "
                             "front of HMA (empty: no credential)"),
    "auth_header": Option(type=str, default="Authorization",
                          help="header that carries the token"),
    "auth_scheme": Option(type=str, default="Bearer", help="scheme before the token"),
    "trust": Option(type=str, default="review", check=one_of("auto", "review"),
                    help="auto: a match confirms a case; review: an analyst decides"),
    "category": Option(type=str, default="baseline",
                       help="ntd category of the bank's entries"),
    "page_size": Option(type=int, default=500, check=positive),
    "max_pages": Option(type=int, default=1000, check=positive,
                        help="pages per bank and sync (the rest waits for the next one)"),
    "sync_minutes": Option(type=float, default=60.0,
                           help="`ntd run --daemon` syncs this often (0: manual only)"),
    "remote_lookup": Option(type=bool, default=False,
                            help="also ask HMA's /m/lookup at match time"),
    "lookup_types": Option(type=list, default=["pdq", "video_md5"],
                           help="HMA signal types asked at /m/lookup (video_md5 sends the MD5)"),
    "allowed_ports": Option(type=list, default=[], check=ports,
                            help="ports the API may use (empty: the [fetch] allowed_ports)"),
    "timeout": Option(type=float, default=30.0, check=positive,
                      help="seconds for one request"),
}


class HMASource(ApiSource):
    """``[hashsource.hma]``: pull banks, and optionally look hashes up in HMA."""

    name = "hma"

    section = SECTION

    @property
    def can_sync(self) -> bool:
        return self.enabled and bool(self.settings.get("banks"))

    @property
    def can_lookup(self) -> bool:
        return self.enabled and bool(self.settings.get("remote_lookup"))

    @property
    def sync_minutes(self) -> float:
        return float(self.settings.get("sync_minutes") or 0.0)

    def auth_headers(self) -> dict[str, str]:
        s = self.settings
        if not s["token_env"]:
            return {}
        token = secret_from_env(SECTION, "token_env", s["token_env"])
        return {s["auth_header"]: f"{s['auth_scheme']} {token}" if s["auth_scheme"]
                else str(token)}

    def list_name(self, bank: str) -> str:
        """The local list a bank syncs into."""
        return f"{self.settings['list_prefix']}{bank}"

    async def sync(self, ctx: Any, cursors: Mapping[str, str | None]) -> list[ListChanges]:
        return [await self._sync_bank(bank, cursors.get(self.list_name(bank)))
                for bank in self.settings["banks"]]

    async def _sync_bank(self, bank: str, cursor: str | None) -> ListChanges:
        s = self.settings
        client = self.client()
        entries: list[SourceEntry] = []
        removed: list[str] = []
        skipped: dict[str, int] = {}
        transferred = 0
        token = cursor
        now = time.time()
        complete = False
        for _ in range(s["max_pages"]):
            params: dict[str, Any] = {"page_size": s["page_size"], "include_signals": "true"}
            if token:
                params["page_token"] = token
            page = await client.get(f"/c/bank/{bank}/content", params)
            if not isinstance(page, dict) or not isinstance(page.get("contents"), list):
                raise HashlistError(f"hma: bank {bank}: unexpected answer (no contents list)")
            contents = page["contents"]
            transferred += len(contents)
            for content in contents:
                self._content(content, now, entries, removed, skipped)
            token = page.get("next_page_token") or token
            if len(contents) < s["page_size"] or not page.get("next_page_token"):
                complete = True
                break
        notes = tuple(f"{n} {kind} signal(s) skipped (no ntd hash type)"
                      for kind, n in sorted(skipped.items()))
        return ListChanges(list=self.list_name(bank), source=f"hma:{bank}", trust=s["trust"],
                           # a whole bank read to its end replaces the list; a read cut
                           # at max_pages never drops what it did not reach
                           entries=entries, removed=removed,
                           replace=cursor is None and complete,
                           cursor=token, transferred=transferred, notes=notes)

    def _content(self, content: Any, now: float, entries: list[SourceEntry],
                 removed: list[str], skipped: dict[str, int]) -> None:
        if not isinstance(content, dict) or "id" not in content:
            skipped["malformed"] = skipped.get("malformed", 0) + 1
            return
        external_id = str(content["id"])
        disabled_until = content.get("disable_until_ts") or 0
        if content.get("deleted") or (isinstance(disabled_until, (int, float))
                                      and disabled_until > now):
            removed.append(external_id)
            return
        before = len(entries)
        for signal_type, value in (content.get("signals") or {}).items():
            hash_type = SIGNAL_TYPES.get(signal_type)
            if hash_type is None or not isinstance(value, str):
                skipped[str(signal_type)] = skipped.get(str(signal_type), 0) + 1
                continue
            value = value.strip().lower() if hash_type in _HEX else value.strip()
            if hash_type in _HEX and not _HEX[hash_type].fullmatch(value):
                skipped[f"malformed {hash_type}"] = skipped.get(f"malformed {hash_type}", 0) + 1
                continue
            entries.append(SourceEntry(external_id=external_id, hash_type=hash_type,
                                       hash=value, category=self.settings["category"],
                                       label=f"hma content {external_id}"))
        if len(entries) == before:
            removed.append(external_id)  # no usable signal left: drop what we held of it

    async def lookup(self, ctx: Any, hashes: Mapping[str, Any]) -> list[RemoteMatch]:
        s = self.settings
        out: list[RemoteMatch] = []
        for signal_type in s["lookup_types"]:
            hash_type = SIGNAL_TYPES.get(signal_type, signal_type)
            value = hashes.get(hash_type)
            if not value:
                continue
            answer = await self.client().get("/m/lookup", {
                "signal_type": signal_type, "signal": value, "banks": ",".join(s["banks"])})
            if not isinstance(answer, dict):
                continue
            for bank, matches in answer.items():
                if not isinstance(matches, list) or not matches:
                    continue
                distances = [_distance(m) for m in matches if isinstance(m, dict)]
                out.append(RemoteMatch(list=self.list_name(str(bank)), hash_type=hash_type,
                                       distance=min(distances or [0]),
                                       category=s["category"], trust=s["trust"]))
        return out



def _distance(match: dict[str, Any]) -> int:
    try:
        return int(float(match.get("distance", 0)))
    except (TypeError, ValueError):
        return 0
