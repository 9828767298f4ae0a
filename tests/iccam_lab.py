"""Shared set-up of the ICCAM tests: certificates made with trustme, the fake over mutual TLS,
and the ``[iccam]`` configuration that points the plugin at it (loopback only)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from engine.lab.iccam_fake import FakeICCAM
from engine.runtime import Runtime

PASSWORD_ENV = "NTD_ICCAM_PASSWORD"
PASSWORD = "lab-password"


@dataclass(frozen=True)
class PKI:
    """A test CA, the fake's server context and the hotline's client files."""

    server: ssl.SSLContext
    ca_file: Path
    cert_file: Path
    key_file: Path
    ca: trustme.CA


def make_pki(folder: Path) -> PKI:
    """A CA that signs the fake's certificate (127.0.0.1) and the hotline's client one."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="ntd test CA")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client = ca.issue_cert("hotline-nl.example.test")
    pki = PKI(server=server_ctx, ca_file=folder / "ca.pem", cert_file=folder / "client.pem",
              key_file=folder / "client.key", ca=ca)
    ca.cert_pem.write_to_path(str(pki.ca_file))
    client.cert_chain_pems[0].write_to_path(str(pki.cert_file))
    client.private_key_pem.write_to_path(str(pki.key_file))
    return pki


@contextlib.asynccontextmanager
async def running(pki: PKI, **kwargs: Any) -> AsyncIterator[FakeICCAM]:
    """The fake on this test's loop, closed afterwards."""
    fake = await FakeICCAM(pki.server, **kwargs).start()
    try:
        yield fake
    finally:
        await fake.close()


@contextlib.contextmanager
def runtime(tmp_path: Path, fake: FakeICCAM, pki: PKI, *,
            extra_plugins: Iterable[tuple[str, object]] = (), **extra: Any
            ) -> Any:
    """A runtime on ``tmp_path/ntd.db`` with ``[iccam]`` pointing at ``fake``."""
    rt = Runtime.open(db=str(tmp_path / "ntd.db"), extra_plugins=extra_plugins,
                      overrides={"iccam": iccam_section(fake, pki, **extra),
                                 "notices": {"aggregate_minutes": 0.0}})
    try:
        yield rt
    finally:
        rt.close()


def iccam_section(fake: FakeICCAM, pki: PKI, **extra: Any) -> dict[str, Any]:
    """``[iccam]`` for the plugin against ``fake`` (fast retries: no real waiting)."""
    return {"base_url": fake.base_url, "client_cert": str(pki.cert_file),
            "client_key": str(pki.key_file), "ca_bundle": str(pki.ca_file),
            "username": "ntd-api", "hotline_country": "NL", "retry_base_seconds": 0.01,
            "retry_max_seconds": 0.05, "step_retry_minutes": 0.001,
            # no re-resolution of hosting (it would ask DNS) unless a test asks for it
            "hosting_recheck_hours": 0.0, **extra}


# -- cases in the states the exporter reads -----------------------------------------------------
def page_report(host: str = "site.example.test", *, n_media: int = 3,
                page_class: int | None = 2, media_class: int | None = 1,
                country: str = "NL") -> list[dict[str, Any]]:
    """A partner report's URLs: a gallery page and its media (all synthetic hosts)."""
    urls: list[dict[str, Any]] = [{"url": f"http://{host}/gallery/1", "source": True,
                                   "country": country, "classification": page_class}]
    urls += [{"url": f"http://{host}/media/{n}.jpg", "country": country,
              "classification": media_class} for n in range(n_media)]
    return urls


def set_case(store: Any, case_id: str, *, state: str, now: str, **data: Any) -> None:
    """Put a case into ``state`` with the given case data (what the stages would record)."""
    store.transition(case_id, state=state, stage="test", actor="test", action=state, now=now,
                     data=data or None)


def send_notice(store: Any, case_id: str, *, kind: str, now: str,
                recipient: str | None = None) -> None:
    """A notice of ``kind`` (hosting, police, ...) for the case, sent at ``now``."""
    recipient = recipient or f"{kind}@notices.example.test"
    store.queue_notice_actions([{"kind": "notice", "case_id": case_id, "channel": "email",
                                 "recipient": recipient, "recipient_kind": kind,
                                 "language": "en", "entries": [], "url_count": 1}], now=now)
    store.aggregate_notices(now=now, window_seconds=0, max_urls=100, sendable=["email"])
    for notice in store.claim_notices(owner="test", limit=100, now=now, lease_seconds=60):
        store.notice_sent(notice["id"], owner="test", now=now, receipt="250 ok")


def our_case(store: Any, url: str, *, now: str, items: list[Any] | None = None,
             **data: Any) -> str:
    """A case of our own (intake, then one committed stage result with items and data)."""
    from engine.models import StageResult
    from engine.store import Commit, IntakeRow
    from engine.urls import canonicalize

    canonical = canonicalize(url)
    batch = store.create_batch(channel="analyst", source="test", at=now)
    [case_id] = store.add_reports(batch, "analyst", now, [IntakeRow(
        raw_url=url, canonical_url=canonical.url, host=canonical.host,
        domain=canonical.domain, line=1)]).case_ids
    assert store.claim(["new"], limit=10, owner="test", lease_seconds=60, now=now) == [case_id]
    store.apply([Commit(case_id=case_id, owner="test", stage="test", actor="test",
                        result=StageResult(state="routed", action="routed",
                                           items=items or [], data=data))], now)
    return case_id
