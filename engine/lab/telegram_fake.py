"""A loopback fake of the Telegram Bot API, built from its published documentation
(https://core.telegram.org/bots/api): the parts an intake bot uses.

- ``POST /bot<token>/getUpdates`` (``offset``, ``limit``, ``timeout``): updates whose
  ``update_id`` is at least ``offset``; asking with an ``offset`` *confirms* every earlier
  update, which is then forgotten (as the real server does). With ``timeout`` and nothing
  waiting it holds the request (long polling) until an update arrives or the time is up.
- ``POST /bot<token>/getFile`` (``file_id``) → a ``File`` with ``file_path``; the bytes are at
  ``GET /file/bot<token>/<file_path>``.
- ``POST /bot<token>/sendMessage`` (``chat_id``, ``text``, ``reply_to_message_id``) → the sent
  ``Message``; recorded in ``sent``.
- Any method answers ``{"ok": false, "error_code": 429, "description": "Too Many Requests:
  retry after N", "parameters": {"retry_after": N}}`` while ``throttle(count, retry_after)``
  has calls left; a wrong token answers 401 ``Unauthorized``.

Parameters are read from a JSON body, a form or the query string, like the real API.
Tests add updates with ``add_message(...)``/``add_photo(...)``; the fake runs on its own loop in
a thread (``start_in_thread``) so synchronous callers (``ntd_send_feedback``) can reach it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from aiohttp import web

from engine.lab.threaded import LoopThread, serve_on_loopback

__all__ = ["TelegramFake"]


class TelegramFake:
    """The fake server; ``url`` is the base to configure as ``[intake.telegram] api_url``."""

    def __init__(self, token: str = "123456:TEST-token") -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.sent: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.throttled: list[str] = []
        self._throttle = 0
        self._retry_after = 1
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._runner: web.AppRunner | None = None
        self._thread: LoopThread | None = None
        self._arrived: asyncio.Event | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    # -- scripting -----------------------------------------------------------------------------
    def throttle(self, count: int, retry_after: int = 1) -> None:
        """Answer the next ``count`` calls with 429 and ``retry_after``."""
        self._throttle = count
        self._retry_after = retry_after

    def _add(self, update: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._ids), **update}
        self.updates.append(update)
        loop = self._thread.loop if self._thread is not None else None
        if self._arrived is not None and loop is not None:
            loop.call_soon_threadsafe(self._arrived.set)
        return update

    @staticmethod
    def user(user_id: int = 4242, username: str | None = "reporter_nl",
             first_name: str = "Anna", last_name: str | None = "Jansen") -> dict[str, Any]:
        """A ``User`` object."""
        out: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            out["username"] = username
        if last_name:
            out["last_name"] = last_name
        return out

    def add_message(self, text: str, *, sender: dict[str, Any] | None = None,
                    entities: list[dict[str, Any]] | None = None,
                    forward_origin: dict[str, Any] | None = None,
                    photo: bytes | None = None) -> dict[str, Any]:
        """Queue an update with a private ``Message`` (text, or a photo with ``text`` as its
        caption)."""
        sender = sender or self.user()
        message: dict[str, Any] = {"message_id": next(self._message_ids), "date": 1764806400,
                                   "from": sender,
                                   "chat": {"id": sender["id"], "type": "private"}}
        key = "text" if photo is None else "caption"
        if text:
            message[key] = text
        if entities:
            message["entities" if photo is None else "caption_entities"] = entities
        if forward_origin:
            message["forward_origin"] = forward_origin
        if photo is not None:
            file_id = f"photo-{len(self.files) + 1}"
            self.files[file_id] = photo
            message["photo"] = [
                {"file_id": file_id + "-small", "file_unique_id": file_id + "s", "width": 90,
                 "height": 90, "file_size": 1000},
                {"file_id": file_id, "file_unique_id": file_id + "u", "width": 512,
                 "height": 512, "file_size": len(photo)}]
            self.files[file_id + "-small"] = photo
        return self._add({"message": message})

    # -- server --------------------------------------------------------------------------------
    async def start(self) -> TelegramFake:
        """Listen on 127.0.0.1 (a free port) on the running loop."""
        self._arrived = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def aclose(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> TelegramFake:
        """Run on a private loop in a daemon thread; returns once it listens."""
        self._thread = LoopThread(self.start, self.aclose, name="telegram-fake")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop a fake started with ``start_in_thread``."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    @staticmethod
    def _error(code: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(json.loads(await request.read() or b"{}"))
            else:
                params.update(dict(await request.post()))
        return params

    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        if self._throttle > 0:
            self._throttle -= 1
            self.throttled.append(method)
            return self._error(429, f"Too Many Requests: retry after {self._retry_after}",
                               retry_after=self._retry_after)
        params = await self._params(request)
        if method == "getUpdates":
            return await self._get_updates(params)
        if method == "getFile":
            file_id = str(params.get("file_id", ""))
            if file_id not in self.files:
                return self._error(400, "Bad Request: invalid file_id")
            return web.json_response({"ok": True, "result": {
                "file_id": file_id, "file_unique_id": file_id + "u",
                "file_size": len(self.files[file_id]), "file_path": f"photos/{file_id}.jpg"}})
        if method == "sendMessage":
            if "chat_id" not in params or not params.get("text"):
                return self._error(400, "Bad Request: message text is empty")
            self.sent.append(params)
            return web.json_response({"ok": True, "result": {
                "message_id": next(self._message_ids), "date": 1764806400,
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "text": params["text"]}})
        if method == "getMe":
            return web.json_response({"ok": True, "result": {
                "id": 1, "is_bot": True, "first_name": "ntd", "username": "ntd_test_bot"}})
        return self._error(404, "Not Found")

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset", 0) or 0)
        limit = min(100, int(params.get("limit", 100) or 100))
        timeout = min(5.0, float(params.get("timeout", 0) or 0))
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout > 0 and self._arrived is not None:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                pass
        return web.json_response({"ok": True, "result": self.updates[:limit]})

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        file_id = path.rsplit("/", 1)[-1].removesuffix(".jpg")
        data = self.files.get(file_id)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/jpeg")
