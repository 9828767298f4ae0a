"""The loopback lab web server: virtual hosts, behaviours, counters, thread mode."""

from __future__ import annotations

import http.client
import time

import aiohttp

from engine.lab.webserver import LabWebServer, Route


def _get(port: int, host: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def test_start_in_thread_serves_virtual_hosts_from_sync_code() -> None:
    srv = LabWebServer({("a.test", "/x"): (b"from a", "text/plain"), ("*", "/x"): b"fallback"})
    srv.start_in_thread()
    try:
        assert srv.url("/x", host="a.test") == f"http://a.test:{srv.port}/x"
        assert _get(srv.port, f"a.test:{srv.port}", "/x")[:2] == (200, b"from a")
        assert _get(srv.port, "b.test", "/x")[:2] == (200, b"fallback")
        assert _get(srv.port, "a.test", "/missing")[0] == 404
        srv.set_content("a.test", "/new", b"added at runtime", "text/plain", status=201)
        assert _get(srv.port, "a.test", "/new")[:2] == (201, b"added at runtime")
        srv.remove("a.test", "/new")
        assert _get(srv.port, "a.test", "/new")[0] == 404
        assert srv.hits("a.test", "/x") == 1
        assert srv.hits("a.test", "/new") == 2
        assert srv.connections == 5  # http.client opens one connection per request here
        assert srv.total_requests == 5
        srv.reset_counters()
        assert srv.connections == 0 and srv.total_requests == 0
    finally:
        srv.stop()


def test_stop_is_quick_even_with_a_dripping_client() -> None:
    srv = LabWebServer({("*", "/drip"): Route.slow_drip(1, 0.01)})
    srv.start_in_thread()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request("GET", "/drip")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read1(1) == b"A"
        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < 3
    finally:
        conn.close()


async def test_behaviours_redirect_oversized_and_latency() -> None:
    async with LabWebServer(latency_ms=20) as srv:
        srv.set("h.test", "/r", Route.redirect("/target", status=308))
        srv.set("h.test", "/big", Route.oversized(300_000))
        srv.set("h.test", "/sized", Route.oversized(1000, declare_length=True))
        base = f"http://127.0.0.1:{srv.port}"
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{base}/r", headers={"Host": "h.test"},
                                  allow_redirects=False) as resp:
                assert resp.status == 308 and resp.headers["Location"] == "/target"
            async with client.get(f"{base}/big", headers={"Host": "h.test"}) as resp:
                assert len(await resp.read()) == 300_000
                assert resp.headers.get("Transfer-Encoding") == "chunked"
            start = time.monotonic()
            async with client.get(f"{base}/sized", headers={"Host": "h.test"}) as resp:
                assert resp.content_length == 1000 and len(await resp.read()) == 1000
            assert time.monotonic() - start >= 0.02
        assert srv.last_headers[("h.test", "/big")]["Host"] == "h.test"
        assert srv.max_concurrent["h.test"] == 1
