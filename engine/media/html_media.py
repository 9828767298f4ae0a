"""Find the media an HTML page shows: img src/srcset, og:image, video poster, links to images.

Parsing uses the standard library's tolerant ``html.parser`` (hostile pages are the norm). URLs are
resolved against the page URL (and ``<base href>``), canonicalised, deduplicated in page order and
capped. Only http(s) URLs survive canonicalisation, so ``data:`` and ``javascript:`` are dropped.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

from engine.errors import InputError
from engine.urls import canonicalize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
DEFAULT_MAX_MEDIA = 50


class _MediaParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v for k, v in attrs if v}
        if tag == "base" and "href" in a and self.base is None:
            self.base = a["href"]
        elif tag in ("img", "source"):
            if "src" in a:
                self.found.append(a["src"])
            for key in ("srcset", "data-srcset"):
                if key in a:
                    self.found += [part.strip().split(" ")[0]
                                   for part in a[key].split(",") if part.strip()]
            if "data-src" in a:
                self.found.append(a["data-src"])
        elif tag == "meta":
            prop = (a.get("property") or a.get("name") or "").lower()
            if prop in ("og:image", "og:image:url", "og:image:secure_url", "twitter:image"):
                if "content" in a:
                    self.found.append(a["content"])
        elif tag == "video" and "poster" in a:
            self.found.append(a["poster"])
        elif tag == "a" and "href" in a:
            path = a["href"].split("?", 1)[0].split("#", 1)[0].lower()
            if path.endswith(IMAGE_EXTENSIONS):
                self.found.append(a["href"])


def extract_media_urls(html: str, page_url: str, *, limit: int = DEFAULT_MAX_MEDIA) -> list[str]:
    """Canonical media URLs referenced by ``html`` (at most ``limit``, page order, no repeats)."""
    parser = _MediaParser()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        pass  # keep what was found before the parser gave up on broken markup
    base = urljoin(page_url, parser.base) if parser.base else page_url
    out: list[str] = []
    seen: set[str] = set()
    for raw in parser.found:
        if len(out) >= limit:
            break
        try:
            url = canonicalize(urljoin(base, raw.strip())).url
        except (InputError, ValueError):
            continue
        if url not in seen and url != page_url:
            seen.add(url)
            out.append(url)
    return out
