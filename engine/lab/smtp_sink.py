"""A loopback SMTP sink (aiosmtpd) that records what it receives: tests, demo and benchmarks.

aiosmtpd's threaded ``Controller`` probes readiness on a fixed port and fails with port 0, so the
sink runs ``aiosmtpd.smtp.SMTP`` directly on an event loop via ``loop.create_server`` bound to
``127.0.0.1`` port 0 (the OS picks a free port). Use it on the caller's loop
(``async with SMTPSink() as sink``) or on its own loop in a thread (``sink.start_in_thread()`` /
``sink.stop()``) when the caller is synchronous or the sender runs in a subprocess.

``reply`` lets a test script answers: a callable ``(message_id, attempt) -> str | None`` returns
an SMTP reply such as ``"451 4.3.0 try later"`` to refuse that DATA, or ``None`` to accept.
``delay`` slows every DATA (a crash can then be injected mid-batch).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import signal
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP

from engine.lab.threaded import LoopThread

__all__ = ["ReceivedMessage", "SMTPSink"]


@dataclass(frozen=True, kw_only=True)
class ReceivedMessage:
    """One accepted message as the sink saw it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None

    def parsed(self) -> email.message.EmailMessage:
        """The message parsed with the modern email policy."""
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


@dataclass
class _Handler:
    sink: SMTPSink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sink = self.sink
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        header = email.message_from_bytes(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        message_id = header.get("Message-ID")
        key = message_id or ""
        sink.attempts[key] += 1
        if sink.delay:
            await asyncio.sleep(sink.delay)
        if sink.reply is not None:
            answer = sink.reply(message_id, sink.attempts[key])
            if answer:
                sink.refused.append((message_id, answer))
                return answer
        received = ReceivedMessage(mail_from=envelope.mail_from,
                                   rcpt_tos=tuple(envelope.rcpt_tos), data=data,
                                   message_id=message_id)
        sink.messages.append(received)
        if sink.on_message is not None:
            sink.on_message(received)
        return "250 2.0.0 OK queued"


@dataclass
class SMTPSink:
    """Records accepted messages in ``messages``; ``port`` is set once started."""

    delay: float = 0.0
    reply: Callable[[str | None, int], str | None] | None = None
    on_message: Callable[[ReceivedMessage], None] | None = None  # e.g. the lab's mail spool
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[ReceivedMessage] = field(default_factory=list)
    refused: list[tuple[str | None, str]] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    _server: asyncio.AbstractServer | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: LoopThread | None = None

    # -- on the caller's loop ------------------------------------------------------------------
    async def start(self) -> SMTPSink:
        """Listen on 127.0.0.1 (a free port) on the running loop."""
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.test", data_size_limit=None),
            self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Stop listening and close open sessions."""
        if self._server is not None:
            self._server.close()
            if hasattr(self._server, "close_clients"):
                self._server.close_clients()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SMTPSink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- on its own loop in a thread ----------------------------------------------------------
    def start_in_thread(self) -> SMTPSink:
        """Run the sink on a private loop in a daemon thread; returns once it listens."""
        self._runner = LoopThread(self.start, self.aclose, name="smtp-sink")
        self._runner.start()
        self._loop = self._runner.loop
        return self

    def stop(self) -> None:
        """Stop a sink started with ``start_in_thread``."""
        if self._runner is not None:
            self._runner.stop()
            self._runner = None
            self._loop = None

    # -- reading -------------------------------------------------------------------------------
    def by_message_id(self) -> Counter[str]:
        """How many accepted copies of each Message-ID."""
        return Counter(m.message_id or "" for m in list(self.messages))


def main() -> None:
    """``python -m engine.lab.smtp_sink``: a sink in its own process (benchmarks).

    Prints ``PORT <n>`` once listening; on SIGTERM/SIGINT prints a JSON line with the number of
    messages and distinct Message-IDs received, then exits.
    """

    async def serve() -> None:
        sink = SMTPSink()
        await sink.start()
        print(f"PORT {sink.port}", flush=True)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        await sink.aclose()
        print(json.dumps({"messages": len(sink.messages),
                          "distinct": len(sink.by_message_id())}), flush=True)
        sys.stdout.flush()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
