"""The Bot API calls the bot makes (httpx), with ``retry_after`` honoured.

A 429 answer carries ``parameters.retry_after`` (seconds): the call waits that long and tries
again, at most ``max_retries`` times. The token is part of every URL: it is never logged (the
errors raised name the method, not the URL).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from engine.api import PluginError
from plugins.intake_telegram.settings import TelegramSettings

MAX_FILE_BYTES = 20 * 1024 * 1024  # the Bot API's own getFile limit


class BotApiError(PluginError):
    """A Bot API call failed (``description`` from the server, never the token)."""


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code != 429:
        return None
    try:
        return float(response.json().get("parameters", {}).get("retry_after", 1))
    except (ValueError, AttributeError):
        return 1.0


def _result(method: str, response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError as exc:
        raise BotApiError(f"telegram {method}: answer is not JSON "
                          f"(HTTP {response.status_code})") from exc
    if not body.get("ok"):
        raise BotApiError(f"telegram {method}: {body.get('description', 'error')}")
    return body.get("result")


class BotApi:
    """Asynchronous calls (the source)."""

    def __init__(self, settings: TelegramSettings) -> None:
        self.settings = settings
        self.base = f"{settings.api_url}/bot{settings.token}"
        self.client = httpx.AsyncClient(timeout=settings.request_timeout,
                                        follow_redirects=False)
        self.waited = 0.0  # seconds spent obeying retry_after

    async def call(self, method: str, **params: Any) -> Any:
        """Call ``method``; waits out 429 answers."""
        for _ in range(self.settings.max_retries):
            response = await self.client.post(f"{self.base}/{method}", json=params)
            wait = _retry_after(response)
            if wait is None:
                return _result(method, response)
            self.waited += wait
            await asyncio.sleep(wait)
        raise BotApiError(f"telegram {method}: still rate-limited after "
                          f"{self.settings.max_retries} attempts")

    async def download(self, file_id: str) -> bytes:
        """``getFile`` then the file's bytes, in memory only."""
        info = await self.call("getFile", file_id=file_id)
        if int(info.get("file_size") or 0) > MAX_FILE_BYTES or not info.get("file_path"):
            raise BotApiError("telegram getFile: file too large or not downloadable")
        url = f"{self.settings.api_url}/file/bot{self.settings.token}/{info['file_path']}"
        for _ in range(self.settings.max_retries):
            response = await self.client.get(url)
            wait = _retry_after(response)
            if wait is None:
                if response.status_code != 200:
                    raise BotApiError(f"telegram file download: HTTP {response.status_code}")
                if len(response.content) > MAX_FILE_BYTES:
                    raise BotApiError("telegram file download: too large")
                return response.content
            self.waited += wait
            await asyncio.sleep(wait)
        raise BotApiError("telegram file download: still rate-limited")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def send_message_sync(settings: TelegramSettings, chat_id: str, text: str) -> bool:
    """``sendMessage`` from synchronous code (``ntd_send_feedback``); True when sent."""
    with httpx.Client(timeout=settings.request_timeout, follow_redirects=False) as client:
        for _ in range(settings.max_retries):
            response = client.post(f"{settings.api_url}/bot{settings.token}/sendMessage",
                                   json={"chat_id": chat_id, "text": text})
            wait = _retry_after(response)
            if wait is None:
                _result("sendMessage", response)
                return True
            time.sleep(wait)
    return False
