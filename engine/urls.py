"""Canonical URLs and registrable domains for intake (one case per canonical URL).

``canonicalize`` turns a reported URL into one canonical string so that two reports of the same
resource become one case, and so that later stages (SSRF policy, DNS, RDAP, routing) all see the
same host. The rules, in the order they apply:

* **Length first**: input longer than ``MAX_RAW_CHARS`` characters is rejected before any regex,
  strip or parser sees it (a 8 MiB candidate once cost 1.6 GB in the fast-path regex). Then
  leading/trailing whitespace and C0 controls are trimmed; tabs and newlines inside the URL are
  removed (as browsers do). What remains longer than ``MAX_URL_BYTES`` (UTF-8) is rejected, and
  so is a canonical result that grows past it through percent-encoding.
* Only ``http`` and ``https`` are accepted; the scheme is lower-cased and must be followed by
  ``//``. Any other scheme (``javascript:``, ``data:``, ``file:``...) is rejected.
* **Scheme-less input** such as ``example.com/path``, ``www.example.com``, ``host:8080/x`` or
  ``//example.com/`` is accepted as ``http://`` because analysts paste such lines.
* The fragment is dropped. Userinfo (``user@host``) is rejected, and so is any backslash or
  ``@`` in the authority, because parsers disagree on where such a host begins
  (``http://evil.com\\@good.com`` is ``evil.com`` to a browser and ``good.com`` to urllib).
* Host: percent-decoded, mapped with IDNA/UTS #46 to lower-case punycode, one trailing dot
  removed. A host that ends in a number is an IPv4 address in any encoding browsers accept
  (``2130706433``, ``0x7f000001``, ``127.1``, ``0177.0.0.1``) and becomes a dotted quad, so SSRF
  checks see the real address. Bracketed IPv6 is written in compressed lower-case form
  (``ipaddress``' ``compressed``; zone ids are rejected). ASCII hosts may hold letters,
  digits, ``-`` and ``_``; other characters browsers tolerate (``$``, ``!``...) are rejected,
  as are labels the ``idna`` package refuses (IDNA 2008, so emoji hosts are refused too).
* The port is dropped when it is the scheme's default; an empty, non-numeric or out-of-range port
  is rejected.
* Path and query: percent-escapes of unreserved characters are decoded, other escapes get
  upper-case hex, a ``%`` not starting an escape becomes ``%25``, and every character RFC 3986
  does not allow there (space, ``"``, ``<``, ``|``, non-ASCII...) is UTF-8 percent-encoded. A
  backslash in the path is a ``/`` (as browsers treat it); in the query it is ``%5C``. Dot
  segments are resolved, an empty path becomes ``/``. The query keeps its order and is never
  sorted; an empty query (``?``) is kept.

Registrable domains come from tldextract's bundled Public Suffix List snapshot: the extractor is
built with ``suffix_list_urls=()`` and ``cache_dir=None`` so it never touches the network or the
disk. A host under no known suffix follows the PSL default rule ``*`` (its last two labels).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import NamedTuple

import idna
import tldextract

from engine.errors import InputError

__all__ = [
    "MAX_RAW_CHARS",
    "MAX_URL_BYTES",
    "CanonicalURL",
    "canonicalize",
    "too_long",
    "platform_suffix",
    "registrable_domain",
]

MAX_URL_BYTES = 8192
# Room for whitespace padding around a URL that fits ``MAX_URL_BYTES``; anything longer is
# refused by its length alone, before any other work (see "Length first" above).
MAX_RAW_CHARS = 4 * MAX_URL_BYTES

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Schemes recognised by name so that e.g. "javascript:1" is not mistaken for host "javascript"
# with port 1 by the scheme-less "host:port" rule below.
_KNOWN_SCHEMES = frozenset(
    "about blob chrome data file filesystem ftp ftps gopher intent irc javascript ldap magnet "
    "mailto news sftp sms ssh tel telnet vbscript view-source ws wss".split()
)

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# What follows "host:" when a scheme-less line carries a port ("localhost:8080/x").
_PORT_AFTER_RE = re.compile(r"\d+(?:[/?]|\Z)")
_AUTHORITY_END_RE = re.compile(r"[/?]")
# An http(s) URL that is already canonical but for its host, and maybe a missing "/" path.
_FAST_RE = re.compile(
    r"(https?)://([a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*)"
    r"(/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*)?"
    r"(?:\?((?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-F]{2})*))?"
)
# An escape of an unreserved character: not canonical (it must be decoded).
_UNRESERVED_ESCAPE_RE = re.compile(r"%(?:2[DE]|3[0-9]|[46][1-9A-F]|[57][0-9A]|5F|7E)")
_ASCII_HOST_RE = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*")
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]+")
_HEX_NUMBER_RE = re.compile(r"0[xX][0-9A-Fa-f]*")
_DEC_PART_RE = re.compile(r"[0-9]+")
_OCT_PART_RE = re.compile(r"0[0-7]+")

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters that need no escaping (RFC 3986 pchar minus "%", plus "/" and for queries "?").
_PATH_FIX_RE = re.compile(r"%[0-9A-Fa-f]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]")
_QUERY_FIX_RE = re.compile(r"%[0-9A-Fa-f]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?]")

# Leading/trailing characters trimmed from input: C0 controls, space, and Unicode whitespace.
_TRIM = (
    "".join(chr(c) for c in range(0x21))
    + "\x7f\x85\xa0\u1680\u2000\u2001\u2002\u2003"
    + ("\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
)
_DROP_INSIDE = str.maketrans("", "", "\t\n\r")


class CanonicalURL(NamedTuple):  # immutable; builds 5x faster than a frozen dataclass
    """A reported URL in canonical form, with the host facts later stages need."""

    url: str  # the canonical URL string
    scheme: str  # "http" | "https"
    host: str  # punycode, lower-case; IPv6 without brackets
    port: int | None  # None when default for scheme
    domain: str  # registrable domain (eTLD+1); the IP for IP hosts; a bare suffix itself
    is_ip: bool


def canonicalize(raw: str) -> CanonicalURL:
    """Return the canonical form of a reported http(s) URL.

    Raises ``InputError`` with a short human reason (e.g. ``unsupported scheme 'javascript'``)
    when the input is not an acceptable http(s) URL. See the module docstring for the rules.
    """
    if not isinstance(raw, str):
        raise InputError(f"URL must be text, not {type(raw).__name__}")
    if len(raw) > MAX_URL_BYTES:  # length first: no regex sees an over-long candidate
        return _canonicalize_general(raw)
    fast = _FAST_RE.fullmatch(raw)
    if fast is not None:
        # Already-clean ASCII URL (the common case): only the host needs work, and it is cached.
        # Anything unusual (port, odd escapes, dot segments, upper case...) takes the general path,
        # which gives the same answer (tests compare the two).
        scheme, host_text, path, query = fast.groups()
        if (path is None or "/." not in path) and (
            "%" not in raw or _UNRESERVED_ESCAPE_RE.search(raw) is None
        ):
            host, is_ip, domain = _host_record(host_text)
            if path and host == host_text:
                url = raw
            else:
                url = f"{scheme}://{host}{path or '/'}"
                if query is not None:
                    url = f"{url}?{query}"
            return CanonicalURL(url, scheme, host, None, domain, is_ip)
    return _canonicalize_general(raw)


def _canonicalize_general(raw: str) -> CanonicalURL:
    """The full rule set; ``canonicalize`` only skips it for URLs that are already clean."""
    if too_long(raw):
        raise InputError(f"URL longer than {MAX_URL_BYTES} bytes")
    text = raw.strip(_TRIM)
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.translate(_DROP_INSIDE)
    if _utf8_len(text) > MAX_URL_BYTES:
        raise InputError(f"URL longer than {MAX_URL_BYTES} bytes")
    if not text:
        raise InputError("empty URL")
    text = text.partition("#")[0]  # the fragment never reaches the server

    scheme, rest = _split_scheme(text)

    match = _AUTHORITY_END_RE.search(rest)
    if match is None:
        authority, tail = rest, ""
    else:
        authority, tail = rest[: match.start()], rest[match.start() :]
    if "\\" in authority:
        raise InputError("backslash in the host part makes the host ambiguous")
    if "@" in authority:
        raise InputError("userinfo ('user@host') is not allowed")

    host_text, port = _split_port(authority)
    host, is_ip, domain = _host_record(host_text)
    if port == _DEFAULT_PORTS[scheme]:
        port = None

    path, sep, query = tail.partition("?")
    path = _normalize_path(path)
    if sep:
        query = _QUERY_FIX_RE.sub(_fix_escape, query) if _QUERY_FIX_RE.search(query) else query

    url_host = f"[{host}]" if ":" in host else host
    url = (
        f"{scheme}://{url_host}:{port}{path}"
        if port is not None
        else f"{scheme}://{url_host}{path}"
    )
    if sep:
        url = f"{url}?{query}"
    if len(url) > MAX_URL_BYTES:  # the canonical URL is pure ASCII
        raise InputError(f"URL longer than {MAX_URL_BYTES} bytes once percent-encoded")
    return CanonicalURL(url, scheme, host, port, domain, is_ip)


def too_long(raw: str | bytes) -> bool:
    """Whether ``raw`` is refused as a URL by its length alone (O(1): call it first).

    Every place that takes a URL candidate from outside (intake, page extraction, redirects,
    the API) asks this before any regex, ``urljoin`` or parser touches the text.
    """
    return len(raw) > MAX_RAW_CHARS


def registrable_domain(host: str) -> str:
    """Return the registrable domain (eTLD+1, ICANN section of the PSL) of ``host``.

    ``host`` may be in any form ``canonicalize`` accepts (Unicode, upper case, trailing dot,
    encoded IPv4, IPv6 with or without brackets). IP hosts are returned as the canonical IP;
    a host that is itself a public suffix (``co.uk``) is returned unchanged; a host under no
    known suffix follows the PSL default rule (its last two labels). Raises ``InputError`` for
    an invalid host.
    """
    return _host_record(_bracket_bare_ipv6(host.strip(_TRIM)))[2]


def platform_suffix(host: str) -> str | None:
    """Return the private-PSL suffix (e.g. ``blogspot.com``) ``host`` sits on, else ``None``.

    Private suffixes are platforms where users get their own subdomains; routing sends notices
    for them to the platform. The suffix host itself (``blogspot.com``) also counts. IP hosts
    return ``None``. Raises ``InputError`` for an invalid host.
    """
    canonical, is_ip, _ = _host_record(_bracket_bare_ipv6(host.strip(_TRIM)))
    return None if is_ip else _platform_cached(canonical)


# --- scheme and authority --------------------------------------------------------------------


def _split_scheme(text: str) -> tuple[str, str]:
    """Return (scheme, text after "scheme://") for ``text`` without fragment."""
    match = _SCHEME_RE.match(text)
    if match is not None:
        candidate = match.group(1).lower()
        after = text[match.end() :]
        if candidate in _DEFAULT_PORTS:
            if after.startswith("//"):
                return candidate, after[2:]
            if "\\" in after[:2]:
                raise InputError("backslash after the scheme makes the host ambiguous")
            raise InputError(f"expected '//' after '{candidate}:'")
        # "example.com:8080/x" and "localhost:8080" are scheme-less hosts with a port.
        is_host = "." in candidate or (
            candidate not in _KNOWN_SCHEMES and _PORT_AFTER_RE.match(after) is not None
        )
        if not is_host:
            raise InputError(f"unsupported scheme '{candidate}'")
    # Scheme-less: analysts paste "example.com/path"; treat it as http.
    return "http", text[2:] if text.startswith("//") else text


def _split_port(authority: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets) and validate the port."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise InputError("unclosed '[' in IPv6 host")
        host, after = authority[: end + 1], authority[end + 1 :]
        if not after:
            return host, None
        if after[0] != ":":
            raise InputError("unexpected characters after IPv6 host")
        port_text = after[1:]
    else:
        host, colon, port_text = authority.partition(":")
        if not colon:
            return host, None
    if not port_text:
        raise InputError("empty port")
    if not (port_text.isascii() and port_text.isdigit()):
        raise InputError(f"invalid port {port_text[:20]!r}")
    digits = port_text.lstrip("0") or "0"
    if len(digits) > 5 or int(digits) > 65535:
        raise InputError(f"port {port_text[:20]} out of range")
    return host, int(digits)


# --- host ------------------------------------------------------------------------------------


def _bracket_bare_ipv6(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@functools.lru_cache(maxsize=65536)
def _host_record(text: str) -> tuple[str, bool, str]:
    """Return (canonical host, is_ip, registrable domain) for the host part of an authority.

    Cached: intake sees a few thousand hosts many times over, and this is the costly part.
    """
    host, is_ip = _parse_host(text)
    return host, is_ip, host if is_ip else _registrable_cached(host)


def _parse_host(text: str) -> tuple[str, bool]:
    """Return (canonical host, is_ip) for the host part of an authority."""
    if not text:
        raise InputError("missing host")
    if text.startswith("["):
        return _parse_ipv6(text), True
    if "%" in text:
        text = _percent_decode_host(text)
    if not text.isascii():
        text = _idna_to_ascii(text)
    host = text.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise InputError("missing host")
    if _ends_in_number(host):
        return _parse_ipv4(host), True
    if _ASCII_HOST_RE.fullmatch(host) is None:
        bad = [c for c in host if not (c.isalnum() or c in "._-")]
        if bad:
            raise InputError(f"invalid character {bad[0]!r} in host")
        raise InputError(f"empty label in host {_clip(host)!r}")
    if len(host) > 253:
        raise InputError("host longer than 253 characters")
    for label in host.split("."):
        if len(label) > 63:
            raise InputError(f"host label longer than 63 characters: {_clip(label)!r}")
        if label.startswith("xn--"):
            _check_alabel(label)
    return host, False


def _percent_decode_host(text: str) -> str:
    """Percent-decode a host as UTF-8 (browsers do this before IDNA processing)."""
    try:
        raw = text.encode("utf-8")
        decoded = bytearray()
        i = 0
        while i < len(raw):
            if raw[i] == 0x25 and _is_hex2(raw[i + 1 : i + 3]):
                decoded.append(int(raw[i + 1 : i + 3], 16))
                i += 3
            else:
                decoded.append(raw[i])
                i += 1
        return decoded.decode("utf-8")
    except UnicodeError as exc:
        raise InputError("host is not valid UTF-8 once percent-decoded") from exc


def _is_hex2(pair: bytes) -> bool:
    return len(pair) == 2 and all(b in b"0123456789ABCDEFabcdef" for b in pair)


def _idna_to_ascii(text: str) -> str:
    """UTS #46 mapping, then IDNA 2008 A-labels for the non-ASCII labels."""
    try:
        mapped = idna.uts46_remap(text, std3_rules=False)
    except idna.IDNAError as exc:
        raise InputError(f"invalid IDNA host {_clip(text)!r}: {exc}") from exc
    labels = []
    for label in mapped.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(idna.alabel(label).decode("ascii"))
        except (idna.IDNAError, UnicodeError) as exc:
            raise InputError(f"invalid IDNA label {_clip(label)!r}: {exc}") from exc
    return ".".join(labels)


@functools.lru_cache(maxsize=4096)
def _check_alabel(label: str) -> None:
    """Reject an ``xn--`` label that is not valid, canonical punycode of an IDNA 2008 label."""
    try:
        ok = idna.alabel(idna.ulabel(label)).decode("ascii") == label
    except (idna.IDNAError, UnicodeError) as exc:
        raise InputError(f"invalid IDNA label {label!r}: {exc}") from exc
    if not ok:
        raise InputError(f"invalid IDNA label {label!r}: not in canonical form")


def _ends_in_number(host: str) -> bool:
    """WHATWG "ends in a number": the last label is decimal digits or 0x-prefixed hex."""
    last = host.rpartition(".")[2]
    return last.isdigit() or _HEX_NUMBER_RE.fullmatch(last) is not None


def _parse_ipv4(host: str) -> str:
    """WHATWG IPv4 parser: 1–4 parts, each decimal, 0x-hex or 0-octal; returns a dotted quad."""
    parts = host.split(".")
    if len(parts) > 4:
        raise InputError(f"invalid IPv4 address {_clip(host)!r}: more than four parts")
    numbers = []
    for part in parts:
        # Strict part grammar: int() alone would also take "1_0", "+1" or "-1".
        if len(part) > 40:  # far beyond 2**32 in any base; also keeps int() cheap
            raise InputError(f"invalid IPv4 address {_clip(host)!r}: number out of range")
        if _DEC_PART_RE.fullmatch(part):
            if len(part) > 1 and part[0] == "0":
                if not _OCT_PART_RE.fullmatch(part):
                    raise InputError(f"invalid IPv4 address {_clip(host)!r}: bad octal part")
                value = int(part, 8)
            else:
                value = int(part, 10)
        elif _HEX_NUMBER_RE.fullmatch(part):
            value = int(part[2:], 16) if len(part) > 2 else 0
        else:
            raise InputError(f"invalid IPv4 address {_clip(host)!r}")
        numbers.append(value)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise InputError(f"invalid IPv4 address {_clip(host)!r}: number out of range")
    address = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        address += n << (8 * (3 - i))
    return str(ipaddress.IPv4Address(address))


def _parse_ipv6(text: str) -> str:
    inner = text[1:-1] if text.endswith("]") else text[1:]
    if _IPV6_CHARS_RE.fullmatch(inner) is None:  # also refuses zone ids ("%25eth0")
        raise InputError(f"invalid IPv6 address {_clip(text)!r}")
    try:
        return ipaddress.IPv6Address(inner).compressed
    except ValueError as exc:
        raise InputError(f"invalid IPv6 address {_clip(text)!r}") from exc


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# --- path and query --------------------------------------------------------------------------


def _normalize_path(path: str) -> str:
    if not path:
        return "/"
    if "\\" in path:
        path = path.replace("\\", "/")  # browsers treat "\" as "/" in http(s) paths
    if _PATH_FIX_RE.search(path) is not None:
        path = _PATH_FIX_RE.sub(_fix_escape, path)
    if "/." in path:
        path = _remove_dot_segments(path)
    return path


class _EscapeTable(dict[str, str]):
    """Replacement for each token ``_PATH_FIX_RE``/``_QUERY_FIX_RE`` match, computed once.

    A dict lookup per match keeps escaping cheap; tokens are "%XX" or a single character.
    """

    def __missing__(self, token: str) -> str:
        if len(token) == 3:
            value = int(token[1:], 16)
            replacement = chr(value) if value in _UNRESERVED else token.upper()
        else:
            try:
                data = token.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate cannot be sent by anyone
                raise InputError("URL contains an unpaired surrogate character") from exc
            replacement = "".join(f"%{b:02X}" for b in data)
        if len(self) < 100_000:  # bounded: single characters are the only open-ended keys
            self[token] = replacement
        return replacement


_ESCAPES = _EscapeTable()


def _fix_escape(match: re.Match[str]) -> str:
    """Normalise one percent-escape or encode one character that may not appear literally."""
    return _ESCAPES[match.group()]


def _remove_dot_segments(path: str) -> str:
    """Resolve "." and ".." segments (RFC 3986 §5.2.4 / WHATWG path state)."""
    segments = path.split("/")
    last = len(segments) - 1
    out: list[str] = []
    for i in range(1, last + 1):
        segment = segments[i]
        if segment == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        elif segment == ".":
            if i == last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


# --- public suffix list ----------------------------------------------------------------------


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    """The one offline extractor: bundled PSL snapshot, no download, no disk cache."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@functools.lru_cache(maxsize=65536)
def _registrable_cached(host: str) -> str:
    result = _extractor().extract_str(host, include_psl_private_domains=False)
    if not result.suffix:
        # Not under any listed suffix: the PSL default rule "*" makes the last label the suffix.
        return ".".join(host.rsplit(".", 2)[-2:])
    if not result.domain:
        return host  # the host is itself a public suffix
    return f"{result.domain}.{result.suffix}"


# Platforms where users get their own sub-domains but that the bundled Public Suffix List
# snapshot (tldextract's, 2025-04-07) does not list in its private section. They are the
# wildcard patterns of plugins/resolve/data/platforms.json the PSL lacks (a test keeps the two
# in step). Not added to the extractor itself: that would also change registrable domains
# (someone.wordpress.com must stay under wordpress.com for the registrar lookup).
EXTRA_PLATFORM_SUFFIXES = frozenset({
    "wordpress.com", "netlify.com", "000webhostapp.com", "tumblr.com", "weebly.com",
})


@functools.lru_cache(maxsize=65536)
def _platform_cached(host: str) -> str | None:
    result = _extractor().extract_str(host, include_psl_private_domains=True)
    if result.is_private and result.suffix:
        return result.suffix
    labels = host.split(".")
    for i in range(len(labels) - 1):
        suffix = ".".join(labels[i:])
        if suffix in EXTRA_PLATFORM_SUFFIXES:
            return suffix
    return None


def _clear_caches() -> None:
    """Forget every cached host and the extractor itself (tests use this)."""
    for cached in (_host_record, _check_alabel, _registrable_cached, _platform_cached, _extractor):
        cached.cache_clear()
