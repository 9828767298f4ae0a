"""A synthetic "internet" on loopback for the demo and benchmarks.

Many virtual hosters (``hoster-N.example.test``) served by one ``LabWebServer`` on 127.0.0.1, each
with generated images and HTML pages. Some images are *planted*: their seeds are on the synthetic
hash list, so the engine must find exactly those. Everything is generated from seeds; nothing is
real material and nothing leaves the machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from engine.lab.images import demo_image_bytes
from engine.lab.webserver import LabWebServer, Route


@dataclass
class PlannedURL:
    """One URL of the world and what the engine should conclude about it."""

    url: str
    kind: str  # "image", "page", "missing", "slow", "oversized"
    planted: bool  # a known (listed) image is served there or on the page


@dataclass
class LabWorld:
    """The loopback world: web server, host map and the URLs to report."""

    server: LabWebServer
    hosts: list[str]
    urls: list[PlannedURL] = field(default_factory=list)
    planted_seeds: range = range(0)

    def host_map(self) -> dict[str, str]:
        """``[resolve.hosts]`` for every virtual host: all point at loopback."""
        return {h: "127.0.0.1" for h in self.hosts}

    def config_overrides(self) -> dict[str, dict[str, Any]]:
        """Configuration that lets the engine reach this world (lab mode only)."""
        return {"lab": {"allow_private_networks": True},
                "resolve.hosts": self.host_map(),
                "fetch": {"allowed_ports": [self.server.port], "total_timeout": 5.0,
                          "max_bytes": 2 * 1024 * 1024}}


def build_world(*, urls: int, hosters: int = 20, planted: int = 20, image_share: float = 0.7,
                latency_ms: float = 0, seed: int = 7, faulty_share: float = 0.03,
                image_pool: int = 200) -> LabWorld:
    """Plan a world of ``urls`` report URLs over ``hosters`` hosts (server not yet started).

    A ``planted_share`` of images are from the synthetic list (seeds ``0..planted-1``); the rest
    are unrelated seeds. ``faulty_share`` of URLs are missing, slow or oversized.
    """
    rng = random.Random(seed)
    hosts = [f"hoster-{i}.example.test" for i in range(hosters)]
    server = LabWebServer(latency_ms=latency_ms, default_host=hosts[0])
    world = LabWorld(server=server, hosts=hosts, planted_seeds=range(planted))
    cache: dict[int, bytes] = {}

    def image(seed_: int) -> bytes:
        # A bounded pool of distinct images keeps generation cheap for large worlds.
        if seed_ not in cache:
            cache[seed_] = demo_image_bytes(seed_)
        return cache[seed_]

    for i in range(urls):
        host = hosts[rng.randrange(hosters)]
        roll = rng.random()
        if roll < faulty_share:
            fault = rng.choice(["missing", "slow", "oversized"])
            path = f"/f/{i}.jpg"
            if fault == "slow":
                server.set(host, path, Route(body=image(planted + i % image_pool),
                                             content_type="image/jpeg", delay=0.2))
            elif fault == "oversized":
                server.set(host, path, Route.oversized(3 * 1024 * 1024))
            world.urls.append(PlannedURL(f"http://{host}:PORT{path}", fault, False))
            continue
        is_planted = rng.random() < 0.1
        seed_ = rng.randrange(planted) if is_planted else planted + rng.randrange(image_pool)
        if rng.random() < image_share:
            path = f"/media/{i}.jpg"
            server.set_content(host, path, image(seed_), "image/jpeg")
            world.urls.append(PlannedURL(f"http://{host}:PORT{path}", "image", is_planted))
        else:
            img_path = f"/media/{i}-a.jpg"
            other = planted + rng.randrange(image_pool)
            server.set_content(host, img_path, image(seed_), "image/jpeg")
            server.set_content(host, f"/media/{i}-b.jpg", image(other), "image/jpeg")
            page = (f'<html><body><h1>gallery {i}</h1><img src="{img_path}">'
                    f'<img src="/media/{i}-b.jpg"></body></html>').encode()
            server.set_content(host, f"/page/{i}.html", page, "text/html")
            world.urls.append(PlannedURL(f"http://{host}:PORT/page/{i}.html", "page",
                                         is_planted))
    return world


def bind_urls(world: LabWorld) -> list[str]:
    """The planned URLs with the server's real port filled in (after start)."""
    return [u.url.replace("PORT", str(world.server.port)) for u in world.urls]
