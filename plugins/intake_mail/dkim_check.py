"""Is this mail really from its ``From:``? DKIM (dkimpy), with the DNS lookup injectable.

A sender is *verified* when a DKIM signature of the message verifies and its signing domain
(``d=``) is the ``From:`` address's domain or a parent of it (relaxed alignment, as DMARC
asks). ``dnsfunc`` is dkimpy's hook: ``dnsfunc(name: bytes, timeout=...) -> bytes`` returning
the TXT record (tests give the public key of a generated signing key; production uses
dnspython, dkimpy's default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim

DnsFunc = Callable[..., bytes]

# dkimpy logs each signature's tags at DEBUG — ``d=`` and ``i=`` name the sender, which must
# never reach a log: its logger here is a silent one.
_QUIET = logging.getLogger("ntd.intake.mail.dkimpy")
_QUIET.propagate = False
_QUIET.addHandler(logging.NullHandler())
_QUIET.setLevel(logging.CRITICAL + 1)


@dataclass(frozen=True)
class DkimVerdict:
    """``ok``: verified and aligned; ``reason`` says why not (never holds the address)."""

    ok: bool
    reason: str


def _domains(message: bytes) -> list[str]:
    out = []
    for header in dkim.DKIM(message, logger=_QUIET).headers:
        name, value = header
        if name.lower() == b"dkim-signature":
            tags = dkim.util.parse_tag_value(value.replace(b"\r\n", b"").replace(b"\n", b""))
            out.append(tags.get(b"d", b"").decode("ascii", "replace").strip().lower())
    return out


def verify_sender(message: bytes, from_domain: str, *,
                  dnsfunc: DnsFunc | None = None) -> DkimVerdict:
    """Check the message's DKIM signatures against ``from_domain`` (lower case)."""
    try:
        domains = _domains(message)
    except (dkim.DKIMException, ValueError, IndexError) as exc:
        return DkimVerdict(False, f"dkim unreadable: {type(exc).__name__}")
    if not domains:
        return DkimVerdict(False, "no dkim signature")
    kwargs: dict[str, Any] = {} if dnsfunc is None else {"dnsfunc": dnsfunc}
    for index, domain in enumerate(domains):
        aligned = from_domain == domain or from_domain.endswith("." + domain)
        if not aligned:
            continue
        try:
            if dkim.DKIM(message, logger=_QUIET).verify(idx=index, **kwargs):
                return DkimVerdict(True, "dkim pass")
        except (dkim.DKIMException, ValueError, IndexError) as exc:
            return DkimVerdict(False, f"dkim error: {type(exc).__name__}")
        return DkimVerdict(False, "dkim fail")
    return DkimVerdict(False, "dkim domain does not match From:")
