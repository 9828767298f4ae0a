"""An EOKM HashDB-style MD5 check at match time, with a local answer cache.

The Dutch EOKM HashDB answers whether an MD5 is known; its API is not published, so this source
is **modelled** and every part of it is configurable (``[hashsource.eokm]``):
``POST <base_url><check_path>`` with the key in a header (``X-API-Key`` by default, the value
from the environment variable ``api_key_env``) and the body ``{"md5": ["<32 hex>", ...]}``;
the answer is ``{"results": [{"md5": "<32 hex>", "known": true, "category": "baseline"}]}``
(``category`` optional; unknown values become ``category`` of the section). 401/403 is a
credential problem, anything else not 2xx an error the match stage logs and moves past.

Answers — known or not — are kept in the store's lookup cache (namespace ``eokm``) for
``cache_hours``: the same MD5 is asked again only after that. Only the MD5 and the answer are
kept, never the bytes (ntd never holds media bytes anyway).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from engine import clock
from engine.config import Option, non_negative, one_of, positive, secret_from_env
from engine.hash_sources import RemoteMatch
from plugins.hashsource.client import ApiSource
from plugins.hashsource.hma import _url, ports

SECTION = "hashsource.eokm"
CACHE_NAMESPACE = "eokm"
_MD5 = re.compile(r"[0-9a-f]{32}")
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,63}")  # an ntd category; anything else: the default

SCHEMA: dict[str, Option] = {
    "base_url": Option(type=str, default="", check=_url,
                       help="the HashDB API root (empty: off)"),
    "check_path": Option(type=str, default="/v1/check", help="path of the MD5 check"),
    "api_key_env": Option(type=str, default="NTD_EOKM_API_KEY",
                          help="environment variable with the API key"),
    "api_key_header": Option(type=str, default="X-API-Key", help="header carrying the key"),
    "list_name": Option(type=str, default="eokm",
                        help="list name matches are recorded under"),
    "trust": Option(type=str, default="review", check=one_of("auto", "review"),
                    help="auto: a known MD5 confirms a case; review: an analyst decides"),
    "category": Option(type=str, default="baseline",
                       help="ntd category of a known MD5 the answer gives none for"),
    "cache_hours": Option(type=float, default=24.0, check=non_negative,
                          help="answers are reused this long (0: always ask)"),
    "allowed_ports": Option(type=list, default=[], check=ports,
                            help="ports the API may use (empty: the [fetch] allowed_ports)"),
    "timeout": Option(type=float, default=10.0, check=positive,
                      help="seconds for one request"),
}


class EOKMSource(ApiSource):
    """``[hashsource.eokm]``: is this MD5 known?"""

    name = "eokm"

    section = SECTION

    @property
    def can_lookup(self) -> bool:
        return self.enabled

    def auth_headers(self) -> dict[str, str]:
        s = self.settings
        return {s["api_key_header"]: str(secret_from_env(SECTION, "api_key_env",
                                                         s["api_key_env"]))}

    async def lookup(self, ctx: Any, hashes: Mapping[str, Any]) -> list[RemoteMatch]:
        md5 = str(hashes.get("md5") or "").lower()
        if not _MD5.fullmatch(md5):
            return []
        s = self.settings
        now = ctx.clock.now_text()
        answer = await ctx.store.cache_get(CACHE_NAMESPACE, md5, now) if s["cache_hours"] \
            else None
        if answer is None:
            reply = await self.client().post(s["check_path"], {"md5": [md5]})
            results = reply.get("results") if isinstance(reply, dict) else None
            found = next((r for r in results or [] if isinstance(r, dict)
                          and str(r.get("md5", "")).lower() == md5), {})
            category = found.get("category")
            answer = {"known": bool(found.get("known")),
                      "category": category if isinstance(category, str)
                      and _CATEGORY.fullmatch(category) else None}
            if s["cache_hours"]:
                until = clock.fmt(clock.parse(now) + timedelta(hours=s["cache_hours"]))
                await ctx.store.cache_put(CACHE_NAMESPACE, md5, answer, until)
        if not answer.get("known"):
            return []
        return [RemoteMatch(list=s["list_name"], hash_type="md5", distance=0,
                            category=answer.get("category") or s["category"],
                            trust=s["trust"])]

