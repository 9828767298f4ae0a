"""A gallery built by scripts, for the browser fetch mode's tests and ``ntd bench browser``.

The HTML the server sends names no image at all (a static parser finds nothing); in a browser:

* ``js``: a script inserts an ``<img>``;
* ``lazy``: an image is inserted only when a sentinel far below the first screen scrolls into
  view (IntersectionObserver), as lazy galleries do;
* ``background``: an element styled by an external stylesheet has a CSS background image;
* ``frame``: a script adds an iframe whose own script inserts an ``<img>``.

Images are synthetic (``engine.lab.images``); :func:`add_script_gallery` puts one gallery on a
:class:`~engine.lab.webserver.LabWebServer` host and returns its images by role.
"""

from __future__ import annotations

from engine.lab.images import jpeg_bytes, make_image, png_bytes
from engine.lab.webserver import LabWebServer

ROLES = ("js", "lazy", "background", "frame")

_PAGE = """<!doctype html>
<html><head><title>gallery</title><link rel="stylesheet" href="{p}/style.css"></head>
<body>
<h1>Gallery</h1>
<div id="grid"></div>
<div class="hero"></div>
<div style="height: 4000px"></div>
<div id="sentinel">more</div>
<script>
  const grid = document.getElementById("grid");
  const img = document.createElement("img");
  img.src = "{p}/img/js.png";
  grid.appendChild(img);
  const frame = document.createElement("iframe");
  frame.src = "{p}/frame.html";
  grid.appendChild(frame);
  new IntersectionObserver((entries, obs) => {{
    for (const e of entries) if (e.isIntersecting) {{
      const lazy = document.createElement("img");
      lazy.src = "{p}/img/lazy.jpg";
      document.getElementById("sentinel").appendChild(lazy);
      obs.disconnect();
    }}
  }}).observe(document.getElementById("sentinel"));
</script>
</body></html>
"""
_FRAME = """<!doctype html><html><body><script>
  const i = document.createElement("img"); i.src = "{p}/img/frame.png";
  document.body.appendChild(i);
</script></body></html>
"""
_CSS = ".hero {{ width: 200px; height: 100px; background-image: url('{p}/img/bg.png'); }}\n"


def gallery_images(seed: int) -> dict[str, bytes]:
    """The four synthetic images of a gallery (``seed`` .. ``seed + 3``), by role."""
    return {"js": png_bytes(make_image(seed, (160, 120))),
            "lazy": jpeg_bytes(make_image(seed + 1, (160, 120))),
            "background": png_bytes(make_image(seed + 2, (160, 120))),
            "frame": png_bytes(make_image(seed + 3, (160, 120)))}


def add_script_gallery(server: LabWebServer, host: str, prefix: str = "/gallery",
                       *, seed: int = 700, images: dict[str, bytes] | None = None,
                       ) -> dict[str, bytes]:
    """Serve a script-built gallery at ``http://host/{prefix}/`` (its page is
    ``{prefix}/index.html``); returns its images by role (:data:`ROLES`)."""
    images = images or gallery_images(seed)
    p = prefix.rstrip("/")
    server.set(host, f"{p}/index.html", (_PAGE.format(p=p).encode(), "text/html"))
    server.set(host, f"{p}/frame.html", (_FRAME.format(p=p).encode(), "text/html"))
    server.set(host, f"{p}/style.css", (_CSS.format(p=p).encode(), "text/css"))
    server.set(host, f"{p}/img/js.png", (images["js"], "image/png"))
    server.set(host, f"{p}/img/lazy.jpg", (images["lazy"], "image/jpeg"))
    server.set(host, f"{p}/img/bg.png", (images["background"], "image/png"))
    server.set(host, f"{p}/img/frame.png", (images["frame"], "image/png"))
    return images


def gallery_paths(prefix: str = "/gallery") -> dict[str, str]:
    """The path of each role's image in a gallery at ``prefix``."""
    p = prefix.rstrip("/")
    return {"js": f"{p}/img/js.png", "lazy": f"{p}/img/lazy.jpg",
            "background": f"{p}/img/bg.png", "frame": f"{p}/img/frame.png"}
