"""A synthetic "internet" on loopback for the demo and benchmarks.

Many virtual hosters (``hoster-N.example.test``) served by one ``LabWebServer`` on 127.0.0.1, each
with generated images and HTML pages. Some images are *planted*: their seeds are on the synthetic
hash list, so the engine must find exactly those. Everything is generated from seeds; nothing is
real material and nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from engine.lab.hostile import giant_attribute_page, huge_png, tag_soup_page
from engine.lab.images import demo_image_bytes, realistic_image
from engine.lab.webserver import LabWebServer, Route


@dataclass
class PlannedURL:
    """One URL of the world and what the engine should conclude about it."""

    url: str
    kind: str  # "image", "page", "missing", "slow", "oversized", or "hostile_<what>"
    planted: bool  # a known (listed) image is served there or on the page


@dataclass
class LabWorld:
    """The loopback world: web server, host map and the URLs to report."""

    server: LabWebServer
    hosts: list[str]
    urls: list[PlannedURL] = field(default_factory=list)
    planted_seeds: range = range(0)
    external_port: int | None = None  # set when a WorldServerProcess serves the world

    @property
    def port(self) -> int:
        """The port the world is served on."""
        return self.external_port or self.server.port

    def host_map(self) -> dict[str, str]:
        """``[resolve.hosts]`` for every virtual host: all point at loopback."""
        return {h: "127.0.0.1" for h in self.hosts}

    def config_overrides(self) -> dict[str, dict[str, Any]]:
        """Configuration that lets the engine reach this world (lab mode only)."""
        return {"lab": {"allow_private_networks": True},
                "resolve.hosts": self.host_map(),
                "fetch": {"allowed_ports": [self.port], "total_timeout": 5.0,
                          "max_bytes": 2 * 1024 * 1024}}


HOSTILE_KINDS = ("hostile_tags", "hostile_attribute", "hostile_image", "hostile_gallery")
GALLERY_BOMBS = 8


def build_world(*, urls: int, hosters: int = 20, planted: int = 20, image_share: float = 0.7,
                latency_ms: float = 0, seed: int = 7, faulty_share: float = 0.03,
                image_pool: int = 200, plan_only: bool = False,
                hostile_share: float = 0.0, distinct_share: float | None = None) -> LabWorld:
    """Plan a world of ``urls`` report URLs over ``hosters`` hosts (server not yet started).

    A ``planted_share`` of images are from the synthetic list (seeds ``0..planted-1``); the rest
    are unrelated seeds. ``faulty_share`` of URLs are missing, slow or oversized.
    ``hostile_share`` of URLs are replaced by hostile ones (``HOSTILE_KINDS``: a ``'<a' * 65536``
    page, a page with a 1.5 MB ``<img src>``, a 194 KB PNG of 7071x7071 RGBA, a page with
    eight of those), each file distinct; the others are the same as in a world without them.

    ``distinct_share`` (None: the demo's 512 px JPEGs) makes a realistic world: the unlisted
    images are ``realistic_image`` files (JPEG 640-1600 px, some PNG and WebP) and that share
    of image URLs serves a file no other URL serves (``engine.lab.distinct``: same pixels,
    other bytes, so a listed image served that way is found by its perceptual hashes only).
    """
    rng = random.Random(seed)
    hostile_rng = random.Random(seed + 1)  # its own: the clean URLs do not change
    distinct_rng = random.Random(seed + 2)  # likewise
    hosts = [f"hoster-{i}.example.test" for i in range(hosters)]
    server = LabWebServer(latency_ms=latency_ms, default_host=hosts[0])
    world = LabWorld(server=server, hosts=hosts, planted_seeds=range(planted))
    cache: dict[int, tuple[bytes, str]] = {}
    realistic = distinct_share is not None

    def file(seed_: int) -> tuple[bytes, str]:
        # A bounded pool of images keeps generation cheap for large worlds.
        if plan_only:
            return b"", "image/jpeg"  # the URLs and their meaning only: another process serves
        if seed_ not in cache:
            cache[seed_] = (realistic_image(seed_) if realistic and seed_ >= planted
                            else (demo_image_bytes(seed_), "image/jpeg"))
        return cache[seed_]

    def image(seed_: int) -> bytes:
        return file(seed_)[0]

    def serve_image(host: str, path: str, seed_: int, i: int) -> None:
        """Serve image ``seed_`` at ``path``: its own file for ``distinct_share`` of them."""
        own = realistic and distinct_rng.random() < (distinct_share or 0.0)
        if plan_only:
            return
        body, ctype = file(seed_)
        server.set(host, path, Route(body=body, content_type=ctype,
                                     tag=f"ntd-lab {i} {path}".encode() if own else None))

    def hostile(i: int, host: str, kind: str) -> PlannedURL:
        after = f'<img src="/h/{i}-ok.jpg">'  # a real (unlisted) image after the soup
        if not plan_only:
            server.set_content(host, f"/h/{i}-ok.jpg", image(planted + i % image_pool),
                               "image/jpeg")
        if kind == "hostile_image":
            if not plan_only:
                server.set_content(host, f"/h/{i}.png", huge_png(7071, 7071, tag=str(i)),
                                   "image/png")
            return PlannedURL(f"http://{host}:PORT/h/{i}.png", kind, False)
        if plan_only:
            body = b""
        elif kind == "hostile_tags":
            body = tag_soup_page(after)
        elif kind == "hostile_attribute":
            body = giant_attribute_page(host, after)
        else:  # a gallery of bombs (sixteen on a page took the workers to 3.3 GB)
            imgs = "".join(f'<img src="/h/{i}-{k}.png">' for k in range(GALLERY_BOMBS))
            body = f"<html><body>{imgs}{after}</body></html>".encode()
            for k in range(GALLERY_BOMBS):
                server.set_content(host, f"/h/{i}-{k}.png",
                                   huge_png(7071, 7071, tag=f"{i}-{k}"), "image/png")
        server.set_content(host, f"/h/{i}.html", body, "text/html")
        return PlannedURL(f"http://{host}:PORT/h/{i}.html", kind, False)

    def clean(i: int, host: str) -> PlannedURL:
        roll = rng.random()
        if roll < faulty_share:
            fault = rng.choice(["missing", "slow", "oversized"])
            path = f"/f/{i}.jpg"
            if fault == "slow":
                server.set(host, path, Route(body=image(planted + i % image_pool),
                                             content_type="image/jpeg", delay=0.2))
            elif fault == "oversized":
                server.set(host, path, Route.oversized(3 * 1024 * 1024))
            return PlannedURL(f"http://{host}:PORT{path}", fault, False)
        is_planted = rng.random() < 0.1
        seed_ = rng.randrange(planted) if is_planted else planted + rng.randrange(image_pool)
        if rng.random() < image_share:
            path = f"/media/{i}.jpg"
            serve_image(host, path, seed_, i)
            return PlannedURL(f"http://{host}:PORT{path}", "image", is_planted)
        img_path = f"/media/{i}-a.jpg"
        other = planted + rng.randrange(image_pool)
        serve_image(host, img_path, seed_, i)
        serve_image(host, f"/media/{i}-b.jpg", other, i)
        page = (f'<html><body><h1>gallery {i}</h1><img src="{img_path}">'
                f'<img src="/media/{i}-b.jpg"></body></html>').encode()
        server.set_content(host, f"/page/{i}.html", page, "text/html")
        return PlannedURL(f"http://{host}:PORT/page/{i}.html", "page", is_planted)

    for i in range(urls):
        host = hosts[rng.randrange(hosters)]
        planned = clean(i, host)  # (drawn even when replaced: the other URLs stay the same)
        if hostile_share and hostile_rng.random() < hostile_share:
            planned = hostile(i, host, hostile_rng.choice(HOSTILE_KINDS))
        world.urls.append(planned)
    return world


def bind_urls(world: LabWorld, port: int | None = None) -> list[str]:
    """The planned URLs with the server's real port filled in (after start)."""
    real = str(port or world.port)
    return [u.url.replace("PORT", real) for u in world.urls]


# -- the full chain: RDAP registry, SMTP sink, routing contacts ---------------------------------

COUNTRIES = ("NL", "NL", "NL", "DE", "DE", "FR", "BE", "SC")  # SC: no INHOPE hotline


def _hosters(hosts: list[str]) -> list[tuple[int, str, str]]:
    """(index, host, CIDR) of every hoster: one synthetic /24 each in public-looking space, keys
    for the loopback registry only, never contacted."""
    return [(i, host, f"185.{4 + i // 250}.{i % 250}.0/24") for i, host in enumerate(hosts)]


@dataclass
class FullLab:
    """The world plus a loopback RDAP registry and SMTP sink, started together.

    With ``remote`` (a started ``WorldServerProcess(full=True)``) all three run in that child
    process and this object only knows their addresses: the benchmark's engine then shares its
    event loop with none of the simulated internet.
    """

    world: LabWorld
    rdap: Any = None
    sink: Any = None
    rdap_keys: dict[str, str] = field(default_factory=dict)  # host -> public-looking IP
    remote: WorldServerProcess | None = None

    async def start(self) -> FullLab:
        """Start the web server, RDAP registry and SMTP sink on loopback."""
        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.lab.rdap_server import LabRdapServer

        # deferred: keeps `ntd` start-up fast (loaded when the command runs)
        from engine.lab.smtp_sink import SMTPSink

        for _, host, cidr in _hosters(self.world.hosts):
            self.rdap_keys[host] = cidr.replace(".0/24", ".10")
        if self.remote is not None:
            return self
        if self.world.external_port is None:
            await self.world.server.start()
        self.rdap = LabRdapServer()
        for i, _, cidr in _hosters(self.world.hosts):
            self.rdap.add_hoster(name=f"Hoster{i}", country=COUNTRIES[i % len(COUNTRIES)],
                                 cidr=cidr, asn=64_500 + i,
                                 abuse_email=f"abuse@hoster-{i}.example.test")
        self.rdap.add_registrar_domain(domain="example.test", registrar_name="Lab Registrar",
                                       iana_id="9999", abuse_email="abuse@registrar.example.test")
        await self.rdap.start()
        self.sink = await SMTPSink().start()
        return self

    async def close(self) -> None:
        """Stop everything."""
        if self.sink is not None:
            await self.sink.aclose()
        if self.rdap is not None:
            await self.rdap.close()
        if self.world.external_port is None and self.remote is None:
            await self.world.server.close()

    def received_message_ids(self) -> list[str]:
        """Message-ID of every message the SMTP sink accepted, in arrival order."""
        if self.remote is not None:
            return self.remote.message_ids()
        return [m.message_id for m in self.sink.messages]

    @property
    def rdap_base_url(self) -> str:
        """Where the loopback RDAP registry answers."""
        return self.remote.rdap_base_url if self.remote is not None else self.rdap.base_url

    @property
    def smtp_port(self) -> int:
        """The SMTP sink's port."""
        return self.remote.smtp_port if self.remote is not None else self.sink.port

    def config_overrides(self) -> dict[str, dict[str, Any]]:
        """Configuration for every stage to work against this lab."""
        out = self.world.config_overrides()
        out.update({
            "lab.rdap_addresses": dict(self.rdap_keys),
            "resolve": {"origin_asn": False, "timeout": 2.0},
            "rdap": {"ip_base_url": self.rdap_base_url, "backoff_base": 0.01,
                     "domain_base_urls": {"*": self.rdap_base_url}},
            "smtp": {"host": "127.0.0.1", "port": self.smtp_port,
                     "from_address": "notices@hotline.example.test"},
            "notices": {"aggregate_minutes": 0.0, "hotline_name": "Lab Hotline",
                        "reference_prefix": "LAB", "poll_seconds": 0.05},
            "routing.contacts": {
                "police:NL": "email:tbkk@police.example.test",
                "hotline:DE": "email:reports@hotline-de.example.test",
                "hotline:FR": "email:reports@hotline-fr.example.test",
                "hotline:BE": "email:reports@hotline-be.example.test",
                "interpol": "email:icse@interpol.example.test",
            },
        })
        return out


class WorldServerProcess:
    """The world's web server (``full``: with the RDAP registry and SMTP sink) in a child
    process, so the engine under test has its CPU and its event loop to itself.

    Both processes build the same deterministic world from the same arguments; the child serves
    it and reports its addresses on stdout. It answers ``messages`` on stdin with the Message-IDs
    its SMTP sink accepted (one JSON line); closing stdin stops it.
    """

    def __init__(self, *, full: bool = False, **world_args: Any) -> None:
        self.world_args = world_args
        self.full = full
        self.proc: Any = None
        self.port = 0
        self.rdap_base_url = ""
        self.smtp_port = 0

    def start(self) -> WorldServerProcess:
        """Spawn the child and wait for its addresses."""

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.lab.world",
             json.dumps({**self.world_args, "full": self.full})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ready = json.loads(self.proc.stdout.readline() or "null")
        except ValueError:
            ready = None
        if not isinstance(ready, dict):
            self.stop()
            raise RuntimeError("world server process did not start")
        self.port = int(ready["port"])
        self.rdap_base_url = ready.get("rdap", "")
        self.smtp_port = int(ready.get("smtp", 0))
        return self

    def message_ids(self) -> list[str]:
        """Message-IDs the child's SMTP sink accepted so far."""

        self.proc.stdin.write("messages\n")
        self.proc.stdin.flush()
        return list(json.loads(self.proc.stdout.readline()))

    def stop(self) -> None:
        """End the child (closing its stdin tells it to stop)."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - make sure it is gone whatever happened
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None


def _serve_main(args_json: str) -> None:
    async def serve() -> None:
        args = json.loads(args_json)
        full = args.pop("full", False)
        world = build_world(**args)
        lab = await FullLab(world).start() if full else None
        if lab is None:
            await world.server.start()
        ready: dict[str, Any] = {"port": world.server.port}
        if lab is not None:
            ready.update(rdap=lab.rdap.base_url, smtp=lab.sink.port)
        print(json.dumps(ready), flush=True)
        loop = asyncio.get_running_loop()
        # Serve until the parent closes our stdin; answer its questions meanwhile.
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "messages":
                ids = lab.received_message_ids() if lab is not None else []
                print(json.dumps(ids), flush=True)
        if lab is not None:
            await lab.close()
        await world.server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    import sys as _sys

    _serve_main(_sys.argv[1])
