"""A loopback fake of HMA's (OpenMediaMatch 2.x) curation and matching API, for ntd's HMA source.

Built from HMA's API description (``website/content/hma/api.md`` of facebook/ThreatExchange)
and the shapes its blueprints answer with; no HMA code is used. What it serves:

- ``GET /status`` → ``I-AM-ALIVE``; ``GET /c/banks``; ``GET /c/bank/<bank>``;
- ``GET /c/bank/<bank>/content/<id>?include_signals=true`` → one content with its signals;
- ``GET /c/bank/<bank>/content?page_size=N[&page_token=T]`` → **Get Bank/List Contents**
  ("ordered by modification time", page size and pagination token in, contents and the next
  token out: ``{"contents": [...], "next_page_token": "..."}``). HMA's page lists this
  endpoint; OpenMediaMatch's blueprints do not implement it yet, so the token's form (an
  opaque text encoding the modification sequence) is this fake's choice. Deleted contents
  stay in the feed as ``{"id": 7, "deleted": true}`` so an incremental reader sees them;
  disabled ones carry ``disable_until_ts`` in the future, as in HMA;
- ``GET /m/lookup?signal_type=pdq&signal=<hash>[&banks=A,B]`` → ``{"BANK": [{"bank_content_id":
  1, "distance": "0"}]}`` (PDQ within 31 bits, MD5 exact; disabled content never matches).

Test controls: ``add``, ``update``, ``delete``, ``disable``; ``requests`` (the log).
"""

from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine.lab.api_fake import JSONAPIFake

PDQ_THRESHOLD = 31


@dataclass
class _Content:
    id: int
    bank: str
    signals: dict[str, str]
    seq: int
    disable_until_ts: int = 0
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        if self.deleted:
            return {"id": self.id, "deleted": True}
        return {"id": self.id, "disable_until_ts": self.disable_until_ts,
                "bank": {"name": self.bank, "matching_enabled_ratio": 1.0},
                "signals": dict(self.signals)}


def _token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def _untoken(token: str) -> int | None:
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(value) if kind == "seq" else None
    except (ValueError, UnicodeDecodeError):
        return None


class FakeHMA(JSONAPIFake):
    """The fake HMA. ``credential``: the full ``Authorization`` value a proxy in front of HMA
    would demand (``"Bearer lab-token"``), or ``None`` for an open instance."""

    name = "hma-fake"

    def __init__(self, *, banks: tuple[str, ...] = ("TEST_BANK",),
                 credential: str | None = None) -> None:
        super().__init__(credential_header="Authorization", credential=credential)
        self.banks = {b: {"name": b, "matching_enabled_ratio": 1.0} for b in banks}
        self.contents: dict[int, _Content] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)

    # -- test controls -------------------------------------------------------------------------
    def add(self, bank: str, signals: dict[str, str]) -> int:
        """Add a content with its signals (``{"pdq": .., "video_md5": ..}``); its id."""
        with self.lock:
            content_id = next(self._ids)
            self.contents[content_id] = _Content(content_id, bank, dict(signals),
                                                 next(self._seq))
            return content_id

    def update(self, content_id: int, signals: dict[str, str]) -> None:
        """Replace a content's signals (it moves to the end of the modification order)."""
        with self.lock:
            content = self.contents[content_id]
            content.signals, content.seq = dict(signals), next(self._seq)

    def delete(self, content_id: int) -> None:
        """Delete a content (a tombstone stays in the feed)."""
        with self.lock:
            content = self.contents[content_id]
            content.deleted, content.seq = True, next(self._seq)

    def disable(self, content_id: int, seconds: int = 10 * 365 * 86400) -> None:
        """Disable a content for ``seconds`` (HMA's ``disable_until_ts``)."""
        with self.lock:
            content = self.contents[content_id]
            content.disable_until_ts, content.seq = int(time.time()) + seconds, next(self._seq)

    # -- the API -------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/status", self._status)
        app.router.add_get("/c/banks", self._banks)
        app.router.add_get("/c/bank/{bank}", self._bank)
        app.router.add_get("/c/bank/{bank}/content", self._contents)
        app.router.add_get("/c/bank/{bank}/content/{content_id:\\d+}", self._content)
        app.router.add_get("/m/lookup", self._lookup)

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(text="I-AM-ALIVE")

    async def _banks(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.banks.values()))

    def _known_bank(self, request: web.Request) -> str:
        bank = request.match_info["bank"]
        if bank not in self.banks:
            raise web.HTTPNotFound(text=f"bank '{bank}' not found")
        return bank

    async def _bank(self, request: web.Request) -> web.Response:
        return web.json_response(self.banks[self._known_bank(request)])

    async def _content(self, request: web.Request) -> web.Response:
        bank = self._known_bank(request)
        content = self.contents.get(int(request.match_info["content_id"]))
        if content is None or content.bank != bank or content.deleted:
            raise web.HTTPNotFound(text="content not found")
        body = content.payload()
        if request.query.get("include_signals", "false").lower() != "true":
            body.pop("signals", None)
        return web.json_response(body)

    async def _contents(self, request: web.Request) -> web.Response:
        bank = self._known_bank(request)
        try:
            size = max(1, min(int(request.query.get("page_size", "100")), 10_000))
        except ValueError:
            raise web.HTTPBadRequest(text="page_size must be an integer") from None
        after = 0
        if request.query.get("page_token"):
            parsed = _untoken(request.query["page_token"])
            if parsed is None:
                raise web.HTTPBadRequest(text="invalid page_token")
            after = parsed
        with self.lock:
            changed = sorted((c for c in self.contents.values()
                              if c.bank == bank and c.seq > after), key=lambda c: c.seq)
            page = changed[:size]
            last = page[-1].seq if page else after
            body = {"contents": [c.payload() for c in page], "next_page_token": _token(last)}
        return web.json_response(body)

    async def _lookup(self, request: web.Request) -> web.Response:
        signal_type = request.query.get("signal_type", "")
        signal = request.query.get("signal", "").lower()
        if not signal_type or not signal:
            raise web.HTTPBadRequest(text="Either url or both signal and signal_type are "
                                          "required")
        wanted = set(request.query["banks"].split(",")) if request.query.get("banks") else None
        now = time.time()
        out: dict[str, list[dict[str, Any]]] = {}
        with self.lock:
            for content in self.contents.values():
                if content.deleted or content.disable_until_ts > now:
                    continue
                if wanted is not None and content.bank not in wanted:
                    continue
                distance = _distance(signal_type, signal, content.signals)
                if distance is not None:
                    out.setdefault(content.bank, []).append(
                        {"bank_content_id": content.id, "distance": str(distance)})
        return web.json_response(out)


def _distance(signal_type: str, signal: str, signals: dict[str, str]) -> int | None:
    if signal_type == "pdq" and "pdq" in signals:
        try:
            bits = bin(int(signal, 16) ^ int(signals["pdq"], 16)).count("1")
        except ValueError:
            return None
        return bits if bits <= PDQ_THRESHOLD else None
    names = {"md5": ("md5", "video_md5"), "video_md5": ("video_md5", "md5")}.get(
        signal_type, (signal_type,))
    return 0 if any(signals.get(n, "").lower() == signal for n in names) else None
