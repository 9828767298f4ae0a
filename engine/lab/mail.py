"""Report mails for tests and benchmarks of the mailbox source: a generated DKIM signing key
whose ``dnsfunc`` answers its ``_domainkey`` TXT record (no network), and mail composition."""

from __future__ import annotations

import base64
import email.utils
from email.message import EmailMessage

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SELECTOR = b"lab2026"


class SigningKey:
    """A generated RSA key for one domain; ``dnsfunc`` answers its ``_domainkey`` TXT."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        self.lookups: list[bytes] = []

    def dnsfunc(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's DNS hook: only this key's record exists (no network)."""
        self.lookups.append(name)
        if name.rstrip(b".") == SELECTOR + b"._domainkey." + self.domain.encode():
            return self.txt
        return b""

    def sign(self, raw: bytes, domain: str | None = None) -> bytes:
        """``raw`` with a DKIM-Signature header prepended."""
        signature = dkim.sign(raw, SELECTOR, (domain or self.domain).encode(), self.pem,
                              include_headers=[b"from", b"to", b"subject", b"message-id",
                                               b"date"])
        return signature + raw


def compose(*, sender: str, name: str = "Agent Bakker", text: str = "", html: str | None = None,
            attachments: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
            message_id: str | None = None, language: str | None = None) -> bytes:
    """A report mail as bytes (CRLF line ends, as on the wire)."""
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((name, sender))
    msg["To"] = "meldpunt@hotline.test"
    msg["Subject"] = "Melding"
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="mail.test")
    msg.set_content(text or "see attachment")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, data, ctype in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    if language:  # after the content: set_content() replaces Content-* headers
        msg["Content-Language"] = language
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
