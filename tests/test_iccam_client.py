"""The ICCAM client against the fake over real mutual TLS (certificates made in the test)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import iccam_v3 as v3
from engine.lab.iccam_fake import FakeICCAM
from plugins.iccam.client import (
    ClientConfig,
    ICCAMClient,
    ICCAMError,
    ICCAMUnavailable,
    utc_text,
)
from tests.iccam_lab import PASSWORD, PKI


def _config(fake: FakeICCAM, pki: PKI, **kw: object) -> ClientConfig:
    values: dict[str, object] = {
        "base_url": fake.base_url, "client_cert": str(pki.cert_file),
        "client_key": str(pki.key_file), "key_password": None, "ca_bundle": str(pki.ca_file),
        "username": "ntd-api", "password": PASSWORD, "retry_base_seconds": 0.001,
        "retry_max_seconds": 0.01}
    values.update(kw)
    return ClientConfig(**values)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_login_over_mutual_tls_then_an_authenticated_call(pki: PKI) -> None:
    fake = await FakeICCAM(pki.server).start()
    try:
        async with ICCAMClient(_config(fake, pki)) as client:
            assert await client.no_reference(since=None) == []
        login, listing = fake.requests
        assert (login.method, login.path) == ("POST", "Authentication")
        assert login.headers["authorization"] == "Bearer"  # no token yet, as SCART sends
        assert login.body == {"username": "ntd-api", "password": PASSWORD}
        assert login.client_cert and listing.client_cert
        assert listing.path == "rest/Content/no-reference"  # case-exact
        assert listing.headers["authorization"].startswith("Bearer ") and \
            len(listing.headers["authorization"]) > 20
        assert listing.headers["accept"] == "application/json"
        assert fake.logins == 1
    finally:
        await fake.close()


async def test_without_a_client_certificate_the_handshake_fails(pki: PKI,
                                                                tmp_path: Path) -> None:
    fake = await FakeICCAM(pki.server).start()
    try:
        config = _config(fake, pki, retries=0)
        client = ICCAMClient(config)
        # The same client, its certificate taken away: ICCAM's TLS refuses it.
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        import httpx

        client._http = httpx.AsyncClient(base_url=config.base_url, verify=ctx)
        with pytest.raises(ICCAMUnavailable):
            await client.login()
        await client.aclose()
        assert fake.requests == []  # never got past TLS
    finally:
        await fake.close()


async def test_an_expired_token_is_replaced_by_a_fresh_login(pki: PKI) -> None:
    fake = await FakeICCAM(pki.server).start()
    try:
        async with ICCAMClient(_config(fake, pki)) as client:
            await client.no_reference(since=None)
            fake.expire_tokens()  # ICCAM considers our token expired before we do
            await client.no_reference(since=None)
            assert client.logins == 2
        statuses = [(r.path, r.status) for r in fake.requests]
        assert statuses == [("Authentication", 200), ("rest/Content/no-reference", 200),
                            ("rest/Content/no-reference", 401), ("Authentication", 200),
                            ("rest/Content/no-reference", 200)]
        assert fake.requests[2].status == 401
    finally:
        await fake.close()


async def test_the_token_is_refreshed_before_it_expires(pki: PKI) -> None:
    fake = await FakeICCAM(pki.server, token_seconds=600).start()
    clock = Clock()
    try:
        async with ICCAMClient(_config(fake, pki), monotonic=clock) as client:
            await client.no_reference(since=None)
            clock.now += 590  # 10 s left: less than a tenth of its life
            await client.no_reference(since=None)
            assert (client.logins, client.refreshes) == (1, 1)
        paths = [r.path for r in fake.requests]
        assert paths == ["Authentication", "rest/Content/no-reference",
                         "Authentication/refresh", "rest/Content/no-reference"]
        assert all(r.status == 200 for r in fake.requests)
    finally:
        await fake.close()


async def test_429_and_503_are_retried_with_backoff(pki: PKI) -> None:
    fake = await FakeICCAM(pki.server).start()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    try:
        fake.fail("GET", "rest/content/no-reference", 429, retry_after="0.004")
        fake.fail("GET", "rest/content/no-reference", 503)
        async with ICCAMClient(_config(fake, pki), sleep=sleep) as client:
            assert await client.no_reference(since=None) == []
            assert client.retries == 2
        assert [r.status for r in fake.requests[1:]] == [429, 503, 200]
        assert waits[0] >= 0.004  # Retry-After respected
        assert len(waits) == 2
    finally:
        await fake.close()


async def test_retries_give_up_as_unavailable(pki: PKI) -> None:
    fake = await FakeICCAM(pki.server).start()
    try:
        fake.fail("GET", "rest/content/no-reference", 502, times=10)
        async with ICCAMClient(_config(fake, pki, retries=2)) as client:
            with pytest.raises(ICCAMUnavailable, match="http 502"):
                await client.no_reference(since=None)
        assert [r.status for r in fake.requests[1:]] == [502, 502, 502]
    finally:
        await fake.close()


async def test_a_400_is_permanent_and_carries_iccams_text(pki: PKI) -> None:
    fake = await FakeICCAM(pki.server).start()
    try:
        _, (content_id,) = fake.add_partner_report(urls=[
            {"url": "http://site.example.test/a", "source": True, "classification": 1}])
        now = utc_text(datetime.now(UTC))
        async with ICCAMClient(_config(fake, pki)) as client:
            await client.action(content_id, {"actionType": v3.REMOVED,
                                             "actioningAnalystName": "ntd-api",
                                             "actionDate": now})
            with pytest.raises(ICCAMError) as info:
                await client.action(content_id, {"actionType": v3.REPORTED_TO_ISP,
                                                 "actioningAnalystName": "ntd-api",
                                                 "actionDate": now})
        assert info.value.status == 400
        assert info.value.text == f"[ICCAM action] {v3.ERR_FINAL}"
        assert fake.received_actions() == [(content_id, v3.REMOVED)]
    finally:
        await fake.close()


async def test_a_wrong_password_is_a_permanent_login_error(pki: PKI) -> None:
    fake = await FakeICCAM(pki.server).start()
    try:
        async with ICCAMClient(_config(fake, pki, password="wrong")) as client:
            with pytest.raises(ICCAMError, match="Invalid username or password"):
                await client.no_reference(since=None)
    finally:
        await fake.close()


async def test_work_list_window_is_form_encoded_utc(pki: PKI) -> None:
    fake = await FakeICCAM(pki.server).start()
    try:
        async with ICCAMClient(_config(fake, pki)) as client:
            await client.no_reference(since=datetime(2024, 4, 5, 12, 0, tzinfo=UTC)
                                      .astimezone(), max_results=500)
        listing = fake.requests[-1]
        assert listing.query == {"maxResults": "200",
                                 "countryAssignmentStartDate": "2024-04-05 12:00:00"}
        assert listing.raw_query == ("maxResults=200&countryAssignmentStartDate="
                                     "2024-04-05+12%3A00%3A00")  # PHP-style, as SCART sends
    finally:
        await fake.close()


def test_utc_text_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        utc_text(datetime(2024, 1, 1))  # noqa: DTZ001 - the point of the test
    assert utc_text(datetime(2024, 1, 1, 12, tzinfo=UTC)) == "2024-01-01T12:00:00Z"
