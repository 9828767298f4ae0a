"""SMTP delivery with aiosmtplib: reused connections to the relay, per-domain limits like an MTA.

Connections to the configured relay (``[smtp] host``/``port``, implicit TLS or STARTTLS, login
from the environment) are kept in a small pool and reused across notices. Per recipient domain at
most ``per_domain_concurrency`` messages are in flight, with ``per_domain_delay_seconds`` between
two of them (destination rate limits). Replies map to outcomes: 2xx sent; 4xx and network errors
retry; 5xx permanent (a refused recipient or rejected message blames the recipient; a refused
sender or failed login is our configuration and does not).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiosmtplib

from engine.config import secret_from_env
from plugins.notify.channels import Outcome
from plugins.notify.message import Prepared
from plugins.notify.settings import SMTPSettings


class _DomainGate:
    """Concurrency and pacing for one recipient domain."""

    def __init__(self, concurrency: int, delay: float) -> None:
        self.sem = asyncio.Semaphore(concurrency)
        self.delay = delay
        self.lock = asyncio.Lock()
        self.next_at = 0.0

    async def pace(self) -> None:
        if self.delay <= 0:
            return
        async with self.lock:
            wait = self.next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.next_at = time.monotonic() + self.delay


class SMTPChannel:
    """The ``email`` channel."""

    name = "email"

    def __init__(self, smtp: SMTPSettings, build: Callable[[Prepared], bytes]) -> None:
        self.smtp = smtp
        self.build = build
        self.username = secret_from_env("smtp", "username_env", smtp.username_env)
        self.password = secret_from_env("smtp", "password_env", smtp.password_env)
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(smtp.connections)
        self._gates: dict[str, _DomainGate] = {}
        self._all: list[aiosmtplib.SMTP] = []

    def _client(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.smtp.host, port=self.smtp.port, timeout=self.smtp.timeout,
            use_tls=self.smtp.tls, start_tls=self.smtp.starttls,
            validate_certs=self.smtp.validate_certs,
            username=self.username, password=self.password)
        self._all.append(client)
        return client

    def _gate(self, domain: str) -> _DomainGate:
        gate = self._gates.get(domain)
        if gate is None:
            gate = self._gates[domain] = _DomainGate(self.smtp.per_domain_concurrency,
                                                     self.smtp.per_domain_delay_seconds)
        return gate

    async def send(self, prepared: Prepared) -> Outcome:
        """Send one notice over a pooled connection."""
        recipient = prepared.notice["recipient"]
        domain = recipient.rpartition("@")[2].lower()
        data = self.build(prepared)
        gate = self._gate(domain)
        async with gate.sem:
            await gate.pace()
            async with self._slots:
                client = self._idle.get_nowait() if not self._idle.empty() else self._client()
                healthy = False
                try:
                    if not client.is_connected:
                        await client.connect()
                    _, reply = await client.sendmail(self.smtp.from_address, [recipient], data)
                    healthy = True
                    return Outcome(status="sent", detail=f"smtp {reply}".strip()[:500])
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    codes = [r.code for r in exc.recipients]
                    text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                    if all(500 <= c < 600 for c in codes):
                        return Outcome(status="failed", detail=f"smtp {text}"[:500],
                                       blame_recipient=True)
                    return Outcome(status="retry", detail=f"smtp {text}"[:500])
                except aiosmtplib.SMTPResponseException as exc:
                    detail = f"smtp {exc.code} {exc.message}"[:500]
                    if 400 <= exc.code < 500:
                        return Outcome(status="retry", detail=detail)
                    if isinstance(exc, aiosmtplib.SMTPAuthenticationError | aiosmtplib.
                                  SMTPSenderRefused):
                        return Outcome(status="retry", detail=f"{detail} (check [smtp])")
                    return Outcome(status="failed", detail=detail, blame_recipient=True)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    return Outcome(status="retry", detail=f"smtp {type(exc).__name__}: {exc}"
                                   [:500])
                finally:
                    if healthy:
                        self._idle.put_nowait(client)
                    else:
                        client.close()  # a connection in an unknown state is not reused

    async def aclose(self) -> None:
        """QUIT every open connection."""
        for client in self._all:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
        self._all.clear()
