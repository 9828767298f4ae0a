"""A loopback fake of an EOKM HashDB-style MD5 check API (the API ntd's ``eokm`` source is
modelled on; ``docs/hash-sources.md``): ``POST /v1/check`` with the key in ``X-API-Key`` and
``{"md5": ["<32 hex>", ...]}``, answering ``{"results": [{"md5": "..", "known": true,
"category": "baseline"}]}`` (``known`` false and no category for an unknown MD5).

Test controls: ``known`` (MD5 → category), ``requests`` (the log).
"""

from __future__ import annotations

import json

from aiohttp import web

from engine.lab.api_fake import JSONAPIFake

MAX_BATCH = 1000


class FakeEOKM(JSONAPIFake):
    """The fake HashDB. ``api_key``: the key it accepts."""

    name = "eokm-fake"

    def __init__(self, *, api_key: str = "lab-eokm-key") -> None:
        super().__init__(credential_header="X-API-Key", credential=api_key)
        self.known: dict[str, str] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/check", self._check)

    async def _check(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise web.HTTPBadRequest(text="body must be JSON") from None
        md5s = body.get("md5") if isinstance(body, dict) else None
        if not isinstance(md5s, list) or not 0 < len(md5s) <= MAX_BATCH:
            raise web.HTTPBadRequest(text=f"md5 must be a list of 1..{MAX_BATCH} hashes")
        results = []
        with self.lock:
            for md5 in md5s:
                key = str(md5).lower()
                if key in self.known:
                    results.append({"md5": key, "known": True, "category": self.known[key]})
                else:
                    results.append({"md5": key, "known": False})
        return web.json_response({"results": results})
