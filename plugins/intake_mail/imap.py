"""The IMAP side of the mailbox: Python's ``imaplib`` in a worker thread.

Why the standard library: the asyncio client ``aioimaplib`` (2.0.3) has no STARTTLS, which
``[intake.mail] starttls`` needs; ``imaplib`` is maintained with CPython, speaks implicit TLS
and STARTTLS, and UID commands (``UID SEARCH/FETCH/STORE/MOVE``). The mailbox is polled every
``poll_seconds`` (SCART reads its mailbox every minute); each poll runs in a thread, so the
event loop never blocks on the server.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator

from engine.api import PluginError
from plugins.intake_mail.settings import MailSettings

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


class Mailbox:
    """A synchronous connection to one folder (use from one thread at a time)."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self._imap: imaplib.IMAP4 | None = None
        self.uidvalidity = 0

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.settings.validate_certs:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def open(self) -> None:
        """Connect, log in and select the folder (reading UIDVALIDITY)."""
        s = self.settings
        try:
            if s.tls:
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=self._context(),
                                                        timeout=s.timeout)
            else:
                imap = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
                if s.starttls:
                    imap.starttls(ssl_context=self._context())
            imap.login(s.user, s.password)
            typ, _ = imap.select(_quote(s.folder))
            if typ != "OK":
                raise PluginError(f"[intake.mail] folder: cannot select {s.folder!r}")
        except imaplib.IMAP4.error as exc:
            raise PluginError(f"[intake.mail]: IMAP refused: {exc}") from exc
        self._imap = imap
        response = imap.response("UIDVALIDITY")[1]
        value = response[0] if response and response[0] else b"0"
        self.uidvalidity = int(value if isinstance(value, bytes) else str(value).encode())

    @property
    def imap(self) -> imaplib.IMAP4:
        """The open connection (``open`` first)."""
        if self._imap is None:
            self.open()
        assert self._imap is not None
        return self._imap

    def uids(self) -> list[int]:
        """Every message's UID in the folder (handled ones are gone: deleted or moved)."""
        typ, data = self.imap.uid("SEARCH", "UNDELETED")
        if typ != "OK" or not data or not data[0]:
            return []
        return [int(u) for u in data[0].split()]

    def oversized(self, limit: int) -> set[int]:
        """UIDs of messages larger than ``limit`` bytes (one ``SEARCH LARGER`` a poll: they
        are never fetched)."""
        typ, data = self.imap.uid("SEARCH", "UNDELETED", "LARGER", str(limit))
        if typ != "OK" or not data or not data[0]:
            return set()
        return {int(u) for u in data[0].split()}

    def fetch(self, uid: int) -> bytes | None:
        """The raw message (``BODY.PEEK[]``: fetching does not mark it seen)."""
        typ, data = self.imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
        if typ != "OK":
            return None
        for entry in data:
            if isinstance(entry, tuple) and len(entry) == 2:
                return bytes(entry[1])
        return None

    def done(self, uid: int) -> None:
        """Apply ``after``: delete (flag and expunge) or move the message."""
        after = self.settings.after
        if after.startswith("move:"):
            target = _quote(after[5:])
            typ, _ = self.imap.uid("MOVE", str(uid), target)
            if typ == "OK":
                return
            self.imap.create(target)  # a missing folder: create it once, then retry
            typ, _ = self.imap.uid("MOVE", str(uid), target)
            if typ == "OK":
                return
            self.imap.uid("COPY", str(uid), target)
        self.imap.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        self.imap.expunge()

    def messages(self) -> Iterator[tuple[int, bytes]]:
        """``(uid, raw bytes)`` of every message waiting now."""
        for uid in self.uids():
            data = self.fetch(uid)
            if data is not None:
                yield uid, data

    def close(self) -> None:
        """Log out (errors of a dead connection ignored)."""
        if self._imap is not None:
            try:
                self._imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
            self._imap = None


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
