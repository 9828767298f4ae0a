"""URLs in what reporters write: plain text, HTML, attached CSV/TXT files, defanged forms.

Reporters (and police and partner hotlines especially) *defang* URLs so that no mail client
turns them into live links: ``hxxp://``, ``hxxps[:]//``, ``example[.]com``, ``example(dot)com``,
``example[dot]com``, ``[://]``. :func:`refang` undoes those forms; :func:`urls_in_text` finds
every URL-looking token of a text (refanged first), in order, each with the line it starts on;
:func:`urls_in_html` reads ``href``/``src`` attributes and the visible text of an HTML body
(lxml, no network, no scripts); :func:`lines_of_attachment` gives the rows of a CSV or TXT
attachment (a ``url`` column, or the first column / whole line) for per-line errors.
Used by intake sources (``plugins/intake_mail``, ``plugins/intake_telegram``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import lxml.html

_DEFANG = [
    (re.compile(r"\bhxxp(s?)", re.IGNORECASE), r"http\1"),
    (re.compile(r"\bh\[tt\]p(s?)", re.IGNORECASE), r"http\1"),
    (re.compile(r"\[:\]//|\[://\]|\(://\)"), "://"),
    (re.compile(r"\[:\]|\(:\)"), ":"),
    (re.compile(r"\s?(?:\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\})\s?", re.IGNORECASE), "."),
    (re.compile(r"\[/\]"), "/"),
]
# A URL with a scheme, or a bare host with a path (``example.test/x``) after refanging.
_URL = re.compile(r"""(?:https?://|www\.)[^\s<>"'`{}|\\^]+""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}>'\""
_HTTP = re.compile(r"(?i)https?://\S")
MAX_URLS = 500  # per message part: a reporter's list, not a crawl


def refang(text: str) -> str:
    """Undo the usual defanging forms (``hxxp``, ``[.]``, ``(dot)``, ``[:]``)."""
    for pattern, repl in _DEFANG:
        text = pattern.sub(repl, text)
    return text


def _clean(token: str) -> str:
    while token and token[-1] in _TRAILING:
        # keep a closing bracket that has its opening one inside the URL
        if token[-1] == ")" and token.count("(") >= token.count(")"):
            break
        token = token[:-1]
    if token.lower().startswith("www."):
        token = "http://" + token
    return token


def urls_in_text(text: str) -> list[tuple[int, str]]:
    """``(line, url)`` for every URL in ``text`` (refanged), in order, at most ``MAX_URLS``."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _URL.finditer(refang(line)):
            url = _clean(match.group(0))
            if url:
                out.append((number, url))
                if len(out) >= MAX_URLS:
                    return out
    return out


def urls_in_html(html: str) -> list[tuple[int, str]]:
    """URLs of an HTML body: link targets first, then those in its text (refanged)."""
    try:
        doc = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return []
    found: list[tuple[int, str]] = []
    for element in doc.iter():
        for attr in ("href", "src"):
            value = element.get(attr) if isinstance(element.tag, str) else None
            url = _clean(refang(value.strip())) if value else ""
            if _HTTP.match(url):
                found.append((element.sourceline or 1, url))
    for script in doc.xpath("//script|//style"):
        script.drop_tree()
    found += urls_in_text(doc.text_content())
    seen: set[str] = set()
    unique = []
    for line, url in found:
        if url not in seen:
            seen.add(url)
            unique.append((line, url))
    return unique[:MAX_URLS]


def lines_of_attachment(data: bytes, name: str) -> Iterator[tuple[int, str]]:
    """``(line, value)`` of a CSV or TXT attachment: the ``url`` column (or the first one) of
    a CSV, every non-blank, non-``#`` line of a text file; values are refanged."""
    text = data.decode("utf-8-sig", errors="replace")
    if name.lower().endswith(".csv"):
        reader = csv.reader(io.StringIO(text))
        header: list[str] | None = None
        column = 0
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [c.strip().lower() for c in row]
                if "url" in header:
                    column = header.index("url")
                    continue
            value = row[column].strip() if column < len(row) else ""
            yield reader.line_num, refang(value)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if value and not value.startswith("#"):
            yield number, refang(value)
