"""``[intake.mail]`` and ``[intake.mail.channels]``: the mailbox the hotline reads.

Secrets come from the environment: ``password_env`` names the variable holding the IMAP
password. ``allowed_senders`` are ``fnmatch`` patterns of sender addresses
(``"*@politie.nl"``); ``[intake.mail.channels]`` maps a pattern to the channel its reports get
(``"*@politie.nl" = "police"``; default ``mail``). ``after``: what happens to a handled
message — ``"delete"`` or ``"move:FOLDER"``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from engine.api import Config, ConfigError, Option, one_of, positive, secret_from_env
from engine.models import CHANNELS

SECTION = "intake.mail"


def _after(value: Any) -> str | None:
    if value == "delete" or (isinstance(value, str) and value.startswith("move:")
                             and len(value) > 5):
        return None
    return 'must be "delete" or "move:FOLDER"'


def _patterns(value: Any) -> str | None:
    if not all(isinstance(v, str) and "@" in v for v in value):
        return "a list of sender address patterns such as \"*@politie.nl\""
    return None


SCHEMA: dict[str, dict[str, Option]] = {
    SECTION: {
        "enabled": Option(type=bool, default=False, help="read the mailbox during `ntd run`"),
        "host": Option(type=str, default="127.0.0.1", help="IMAP server"),
        "port": Option(type=int, default=993, check=positive),
        "tls": Option(type=bool, default=True, help="implicit TLS (port 993)"),
        "starttls": Option(type=bool, default=False, help="upgrade with STARTTLS"),
        "validate_certs": Option(type=bool, default=True),
        "user": Option(type=str, default="", help="IMAP login"),
        "password_env": Option(type=str, default="NTD_IMAP_PASSWORD",
                               help="env var holding the IMAP password"),
        "folder": Option(type=str, default="INBOX"),
        "after": Option(type=str, default="move:Processed", check=_after,
                        help='"delete" or "move:FOLDER"'),
        "allowed_senders": Option(type=list, default=[], check=_patterns,
                                  help="sender address patterns whose reports are accepted"),
        "require_dkim": Option(type=bool, default=True,
                               help="accept only mail whose DKIM signature matches From:"),
        "poll_seconds": Option(type=float, default=60.0, check=positive),
        "receipt": Option(type=bool, default=True, help="mail a receipt back to the sender"),
        "receipt_from": Option(type=str, default=None,
                               help="From: of receipts (default: [smtp] from_address)"),
        "default_language": Option(type=str, default="en", check=one_of("en", "nl")),
        "timeout": Option(type=float, default=30.0, check=positive),
        "max_message_mb": Option(type=float, default=50.0, check=positive,
                                 help="larger messages are refused unread"),
    },
    f"{SECTION}.channels": {
        "*": Option(type=str, check=one_of(*CHANNELS),
                    help="sender pattern = channel of its reports"),
    },
}


@dataclass(frozen=True, kw_only=True)
class MailSettings:
    """The mailbox settings as one record (the password read from the environment)."""

    host: str
    port: int
    tls: bool
    starttls: bool
    validate_certs: bool
    user: str
    password: str
    folder: str
    after: str
    allowed_senders: tuple[str, ...]
    channels: tuple[tuple[str, str], ...]
    require_dkim: bool
    poll_seconds: float
    receipt: bool
    receipt_from: str | None
    default_language: str
    timeout: float
    max_message_mb: float

    def allowed(self, address: str) -> bool:
        """Whether ``address`` matches an allowed sender pattern."""
        addr = address.lower()
        return any(fnmatch.fnmatchcase(addr, p.lower()) for p in self.allowed_senders)

    def channel_for(self, address: str) -> str:
        """The channel of a sender's reports: the first matching pattern's, else ``mail``."""
        addr = address.lower()
        for pattern, channel in self.channels:
            if fnmatch.fnmatchcase(addr, pattern.lower()):
                return channel
        return "mail"


def mail_settings(config: Config) -> MailSettings:
    """Read ``[intake.mail]``; the password from the variable ``password_env`` names."""
    sect = config.section(SECTION)
    if sect["tls"] and sect["starttls"]:
        raise ConfigError(f"[{SECTION}] tls and starttls: choose one")
    password = secret_from_env(SECTION, "password_env", sect["password_env"]) or ""
    channels = tuple((k, v) for k, v in config.section(f"{SECTION}.channels").items())
    return MailSettings(
        host=sect["host"], port=sect["port"], tls=sect["tls"], starttls=sect["starttls"],
        validate_certs=sect["validate_certs"], user=sect["user"], password=password,
        folder=sect["folder"], after=sect["after"],
        allowed_senders=tuple(sect["allowed_senders"]), channels=channels,
        require_dkim=sect["require_dkim"], poll_seconds=sect["poll_seconds"],
        receipt=sect["receipt"], receipt_from=sect["receipt_from"],
        default_language=sect["default_language"], timeout=sect["timeout"],
        max_message_mb=sect["max_message_mb"])
