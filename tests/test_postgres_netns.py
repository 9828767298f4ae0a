"""PostgreSQL workers on two other hosts: their traffic crosses a real network stack.

Where ``ip netns`` works (root, as in CI), two network namespaces stand for two worker hosts,
joined by veth pairs to a bridge that carries the database server's address. The server itself
listens on 127.0.0.1 only, so a forwarder in this process takes connections on the bridge
address and hands them to it; each connection it sees comes from a namespace's own address, so
every query of a worker went through that host's network stack, the veth pair and the bridge.

Four ``ntd run`` workers, two per namespace, run the stub pipeline; one is SIGKILLed mid-run and
restarted under the same id: every case reaches its final state exactly once per stage, and no
lease is left. Then a notice sender in each namespace drains one outbox: every notice is claimed
exactly once. Elsewhere (not root, no iproute2) the tests skip with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ntd_env
from tests.pg import pg_url  # noqa: F401  (fixture)
from tests.test_postgres_scale import NOW, kill_9_run, queue_notices

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERVER = "127.0.0.1:5432"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Forwarder:
    """TCP forwarder on ``host``: each connection is spliced to the database server. Records
    the peer address of every connection (which host the worker ran on)."""

    def __init__(self, host: str, target: str) -> None:
        self.host = host
        self.target_host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.peers: Counter[str] = Counter()
        self.bytes = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="pg-forwarder")

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.bytes += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        self.peers[writer.get_extra_info("peername")[0]] += 1
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._client, self.host, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, server.wait_closed(),
                                                   return_exceptions=True))
            loop.close()

    def __enter__(self) -> Forwarder:
        self._thread.start()
        assert self._ready.wait(10), "forwarder did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A bridge with the server's address and two namespaces on it: (bridge address,
    [(namespace, its address)])."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (`ip netns`), as in CI")
    tag = f"{os.getpid() % 10000:04d}"
    net = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    bridge, hosts = f"ntdbr{tag}", [(f"ntd{tag}h{k}", f"{net}.{k + 1}") for k in (1, 2)]
    try:
        _ip("link", "add", bridge, "type", "bridge")
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot create network devices here: {getattr(exc, 'stderr', exc)}")
    try:
        _ip("addr", "add", f"{net}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for k, (ns, address) in enumerate(hosts, 1):
            _ip("netns", "add", ns)
            _ip("link", "add", f"ntdv{tag}{k}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            _ip("link", "set", f"ntdv{tag}{k}", "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield f"{net}.1", hosts
    finally:
        for k, (ns, _) in enumerate(hosts, 1):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", f"ntdv{tag}{k}"], capture_output=True,
                           check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def test_workers_on_two_hosts_survive_a_kill_9_every_case_once_per_stage(
        pg_url: str, two_hosts: tuple[str, list[tuple[str, str]]],  # noqa: F811
        tmp_path: Path) -> None:
    server_address, hosts = two_hosts
    with Forwarder(server_address, SERVER) as forwarder:
        remote = pg_url.replace(SERVER, f"{server_address}:{forwarder.port}")
        assert remote != pg_url
        held = kill_9_run(pg_url, tmp_path, workers_url=remote, prefixes={
            f"w{k}": ("ip", "netns", "exec", hosts[(k - 1) % 2][0]) for k in range(1, 5)})
        peers = dict(forwarder.peers)
    # Every worker's connections came from its namespace's own address, none from loopback.
    assert set(peers) == {address for _, address in hosts}, peers
    print(f"w2 held {held} leases when killed; connections per host {peers}")


SENDER = """
import sys
from engine.store.postgres import PostgresStore
store = PostgresStore(sys.argv[1], max_connections=1)
got = []
while batch := store.claim_notices(owner=sys.argv[2], limit=3, now=sys.argv[3],
                                   lease_seconds=600):
    got += [n["id"] for n in batch]
store.close()
print("\\n".join(got))
"""


def test_senders_on_two_hosts_claim_every_notice_once(
        pg_url: str, two_hosts: tuple[str, list[tuple[str, str]]]) -> None:  # noqa: F811
    server_address, hosts = two_hosts
    queue_notices(pg_url, 600)
    with Forwarder(server_address, SERVER) as forwarder:
        remote = pg_url.replace(SERVER, f"{server_address}:{forwarder.port}")
        senders = [subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, remote, f"s{k}", NOW],
            env=ntd_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for k, (ns, _) in enumerate(hosts * 2)]
        outputs = [p.communicate(timeout=120) for p in senders]
        peers = dict(forwarder.peers)
    for proc, (_, err) in zip(senders, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    claimed = [out.split() for out, _ in outputs]
    every = [n for c in claimed for n in c]
    assert len(every) == len(set(every)) == 600
    assert sum(1 for c in claimed if c) >= 2
    assert set(peers) == {address for _, address in hosts}, peers
