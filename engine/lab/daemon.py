"""The operator's lab as a background process (``ntd lab up`` / ``ntd lab down``).

``python -m engine.lab.daemon DIR HOSTERS URLS`` builds the loopback world (``engine.lab.world``:
virtual hosters with generated images and pages), starts its web server, the RDAP registry, the
SMTP sink and the ICCAM fake (mutual TLS, certificates made for the run), each on a free port of
127.0.0.1, and a small control endpoint (take content down, for re-checks). Once everything
listens it writes, into ``DIR``:

- ``lab.toml``: the configuration fragment that points ntd at the lab (``docs/lab.md``),
- ``lab-urls.txt``: the URLs to report, ``lab-hashlist.csv``: the synthetic list that knows the
  planted images,
- ``.ntd-lab/``: ``lab.json`` (endpoints; written last, its presence means "ready"),
  ``lab.pid``, ``lab.log``, ``mail/`` (every message the SMTP sink accepted, one ``.eml``
  each), ``tls/`` and ``iccam-password`` (mode 0600).

SIGTERM or SIGINT stops every server; the files are removed by ``ntd lab down``. Nothing here
reaches beyond loopback, and the images are generated (noise, shapes, gradients).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.lab.files import (
    CONFIG_FILE,
    HASHLIST_FILE,
    INFO_FILE,
    LOG_FILE,
    PASSWORD_ENV,
    PID_FILE,
    URLS_FILE,
    state_dir,
)
from engine.lab.iccam_fake import FakeICCAM, FakeUser
from engine.lab.images import build_demo_hashlist
from engine.lab.smtp_sink import ReceivedMessage
from engine.lab.tls import make_lab_tls
from engine.lab.world import FullLab, PlannedURL, bind_urls, build_world

ICCAM_USER = "ntd-lab"
PLANTED = 12  # seeds of the synthetic list


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(sections: dict[str, dict[str, Any]], header: str = "") -> str:
    """Sections (dotted names allowed: ``lab.rdap_addresses``) as TOML text."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, values in sections.items():
        lines += ["", f"[{name}]"]
        lines += [f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def lab_config(lab: FullLab, iccam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What ``lab.toml`` holds: the world's overrides plus the ICCAM account of the fake."""
    out = lab.config_overrides()
    out["notices"]["mode"] = "send"
    out["iccam"] = iccam
    # Forwards to the German hotline go through ICCAM (the directory's channel), as in the demo.
    out["routing.contacts"].pop("hotline:DE", None)
    order = ("lab", "lab.rdap_addresses", "resolve", "resolve.hosts", "fetch", "rdap", "smtp",
             "notices", "routing.contacts", "iccam")
    return {name: out[name] for name in order if name in out}


def _removal_paths(planned: PlannedURL, port: int) -> tuple[str, list[str]]:
    """(host, paths) a hoster removes when it takes ``planned`` down (a page with its media)."""
    url = planned.url.replace("PORT", str(port))
    host = url.split("://", 1)[1].split(":", 1)[0]
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    if planned.kind == "page":
        i = path.rsplit("/", 1)[1].removesuffix(".html")
        return host, [path, f"/media/{i}-a.jpg", f"/media/{i}-b.jpg"]
    return host, [path]


class LabProcess:
    """Everything the background process runs, and its files."""

    def __init__(self, folder: Path, *, hosters: int, urls: int) -> None:
        self.folder = folder
        self.state = state_dir(folder)
        self.hosters = hosters
        self.urls = urls
        self.lab: FullLab | None = None
        self.iccam: FakeICCAM | None = None
        self.control: web.AppRunner | None = None
        self.token = secrets.token_urlsafe(24)
        self.mail_count = 0
        self.taken_down: set[str] = set()

    def _spool(self, message: ReceivedMessage) -> None:
        self.mail_count += 1
        mail = self.state / "mail"
        tmp = mail / f".{self.mail_count:05d}.tmp"
        tmp.write_bytes(message.data)
        tmp.rename(mail / f"{self.mail_count:05d}.eml")

    async def start(self) -> dict[str, Any]:
        """Start every server and write the lab's files; returns ``lab.json``'s content."""
        (self.state / "mail").mkdir(parents=True, exist_ok=True)
        world = build_world(urls=self.urls, hosters=self.hosters, planted=PLANTED,
                            image_pool=40, planted_share=0.3, faulty_share=0.05)
        self.lab = lab = await FullLab(world).start()
        lab.sink.on_message = self._spool
        tls = make_lab_tls(self.state / "tls")
        password = secrets.token_urlsafe(16)
        self.iccam = await FakeICCAM(
            tls.server_context(), users={ICCAM_USER: FakeUser(password, "NL", 43)}).start()
        secret = self.state / "iccam-password"
        secret.touch(mode=0o600)
        secret.write_text(password + "\n", encoding="utf-8")
        self.control = await self._start_control()
        control_port = int(self.control.addresses[0][1])
        iccam = {"base_url": self.iccam.base_url, "client_cert": str(tls.client_cert),
                 "client_key": str(tls.client_key), "ca_bundle": str(tls.ca_cert),
                 "username": ICCAM_USER, "password_env": PASSWORD_ENV,
                 "hotline_country": "NL"}
        header = (f"ntd lab (pid {os.getpid()}): the configuration that points ntd at the\n"
                  "loopback lab. Use it as it is (NTD_CONFIG=lab.toml) or copy its sections\n"
                  "into your ntd.toml; every key is explained in docs/lab.md.\n"
                  f"The ICCAM password is in ${PASSWORD_ENV} (`eval \"$(ntd lab env)\"`).")
        self._write(self.folder / CONFIG_FILE, to_toml(lab_config(lab, iccam), header))
        self._write(self.folder / URLS_FILE, "\n".join(bind_urls(world)) + "\n")
        build_demo_hashlist(self.folder / HASHLIST_FILE, n=PLANTED)
        info = {
            "pid": os.getpid(), "dir": str(self.folder),
            "web": {"host": "127.0.0.1", "port": world.port, "hosts": world.hosts},
            "rdap": {"base_url": lab.rdap_base_url},
            "smtp": {"host": "127.0.0.1", "port": lab.smtp_port,
                     "spool": str(self.state / "mail")},
            "iccam": {**iccam, "password_file": str(secret)},
            "control": {"url": f"http://127.0.0.1:{control_port}", "token": self.token},
            "files": {"config": str(self.folder / CONFIG_FILE),
                      "urls": str(self.folder / URLS_FILE),
                      "hashlist": str(self.folder / HASHLIST_FILE),
                      "log": str(self.state / LOG_FILE)},
            "urls": len(world.urls), "planted": sum(u.planted for u in world.urls),
        }
        self._write(self.state / PID_FILE, f"{os.getpid()}\n")
        self._write(self.state / INFO_FILE, json.dumps(info, indent=2) + "\n")
        return info

    @staticmethod
    def _write(path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    async def _start_control(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/takedown", self._takedown)
        app.router.add_get("/status", self._status)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    def _authorised(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.headers.get("X-Lab-Token", ""), self.token)

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "token"}, status=403)
        assert self.lab is not None
        return web.json_response({"messages": len(self.lab.sink.messages),
                                  "requests": self.lab.world.server.total_requests,
                                  "taken_down": sorted(self.taken_down)})

    async def _takedown(self, request: web.Request) -> web.Response:
        """Hosters remove a share of the lab's URLs (with the media of pages): they answer 404
        from now on, which the next re-check records as a removal."""
        if not self._authorised(request):
            return web.json_response({"error": "token"}, status=403)
        assert self.lab is not None
        body = await request.json()
        share = float(body.get("share", 0.5))
        world = self.lab.world
        online = [u for u in world.urls if u.url not in self.taken_down
                  and u.kind in ("image", "page")]
        chosen = online[: math.ceil(len(online) * max(0.0, min(1.0, share)))]
        removed = []
        for planned in chosen:
            host, paths = _removal_paths(planned, world.port)
            for path in paths:
                world.server.remove(host, path)
            self.taken_down.add(planned.url)
            removed.append(planned.url.replace("PORT", str(world.port)))
        return web.json_response({"removed": removed})

    async def close(self) -> None:
        """Stop every server."""
        if self.control is not None:
            await self.control.cleanup()
        if self.iccam is not None:
            await self.iccam.close()
        if self.lab is not None:
            await self.lab.close()  # the web server, RDAP registry and SMTP sink


async def serve(folder: Path, hosters: int, urls: int) -> None:
    """Run the lab until SIGTERM/SIGINT."""
    proc = LabProcess(folder, hosters=hosters, urls=urls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        info = await proc.start()
        print(f"lab ready: web {info['web']['port']}, rdap {info['rdap']['base_url']}, "
              f"smtp {info['smtp']['port']}, iccam {info['iccam']['base_url']}", flush=True)
        await stop.wait()
        print("lab stopping", flush=True)
    finally:
        await proc.close()
        (proc.state / INFO_FILE).unlink(missing_ok=True)
        (proc.state / PID_FILE).unlink(missing_ok=True)


def main(argv: list[str]) -> None:
    """``python -m engine.lab.daemon DIR HOSTERS URLS`` (started by ``ntd lab up``)."""
    folder, hosters, urls = Path(argv[0]).resolve(), int(argv[1]), int(argv[2])
    asyncio.run(serve(folder, hosters, urls))


if __name__ == "__main__":
    main(sys.argv[1:])
