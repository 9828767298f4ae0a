"""A throwaway Dovecot IMAP server (Debian's ``dovecot-imapd``) for tests and benchmarks:
started in the foreground (``dovecot -F``, not a daemon) on a free loopback port with a
passwd-file user and a maildir in a temporary folder of its own; ``stop()`` ends it and removes
the folder. ``DovecotUnavailable`` says why it cannot run (not installed, failed to start)."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot"
                                      if os.path.exists("/usr/sbin/dovecot") else None)
USER = "hotline"
PASSWORD = "imap-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _login_user() -> str:
    for name in ("dovenull", "dovecot", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return pwd.getpwuid(os.getuid()).pw_name


class DovecotUnavailable(RuntimeError):
    """Dovecot is not installed here or did not start (the message says which)."""


class Dovecot:
    """One running server; ``port``, ``user``, ``password``; ``append(raw)`` delivers mail."""

    def __init__(self) -> None:
        if DOVECOT is None:
            raise DovecotUnavailable("Dovecot is not installed (Debian: apt-get install "
                                     "dovecot-imapd)")
        # Its own folder, readable by the mail user (pytest's tmp_path is private to us).
        root = self.root = Path(tempfile.mkdtemp(prefix="ntd-dovecot-"))
        os.chmod(root, 0o755)
        self.port = _free_port()
        self.user, self.password = USER, PASSWORD
        me_uid, me_gid = os.getuid(), os.getgid()
        me = pwd.getpwuid(me_uid).pw_name
        group = grp.getgrgid(me_gid).gr_name
        login = _login_user()
        uid, gid = me_uid, me_gid
        if uid == 0:  # Dovecot refuses mail access as root: the mail user is an unprivileged one
            entry = pwd.getpwnam(_login_user())
            uid, gid = entry.pw_uid, entry.pw_gid
        for sub in ("run", "state", "mail", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(root / sub, 0o755)
        for sub in ("mail", "home"):
            os.chown(root / sub, uid, gid)
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        self.log = root / "dovecot.log"
        (root / "dovecot.conf").write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {me}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{root}/mail/%u
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
""")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                shutil.rmtree(self.root, ignore_errors=True)
                raise DovecotUnavailable(f"Dovecot did not start: {err.strip()} {log[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise DovecotUnavailable("Dovecot did not listen within 20 s")

    def client(self) -> imaplib.IMAP4:
        """A logged-in IMAP client (the test's own, for delivering and checking)."""
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver a message into ``folder``."""
        imap = self.client()
        try:
            imap.create(folder)
            typ, _ = imap.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            if typ != "OK":
                raise RuntimeError(f"IMAP APPEND refused: {typ}")
        finally:
            imap.logout()

    def count(self, folder: str = "INBOX") -> int:
        """Messages in ``folder``."""
        imap = self.client()
        try:
            typ, data = imap.select(folder)
            return int(data[0] or 0) if typ == "OK" else 0
        finally:
            imap.logout()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)
