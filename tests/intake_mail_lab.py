"""What the mailbox tests share: the runtime overrides that point ``[intake.mail]`` at a
Dovecot and ``[smtp]`` at a sink (keys and mails: ``engine.lab.mail``)."""

from __future__ import annotations

from typing import Any

from engine.lab.mail import SigningKey, compose

__all__ = ["SigningKey", "compose", "overrides"]


def overrides(imap: Any, smtp_port: int, **mail: Any) -> dict[str, dict[str, Any]]:
    """Runtime overrides: the mailbox on ``imap`` (a ``tests.dovecot.Dovecot``), receipts to
    the sink on ``smtp_port``."""
    return {
        "intake.mail": {"enabled": True, "host": "127.0.0.1", "port": imap.port, "tls": False,
                        "user": imap.user, "password_env": "NTD_TEST_IMAP_PASSWORD",
                        "after": "move:Processed",
                        "allowed_senders": ["*@politie.test", "*@partner.test"], **mail},
        "intake.mail.channels": {"*@politie.test": "police"},
        "smtp": {"host": "127.0.0.1", "port": smtp_port,
                 "from_address": "meldpunt@hotline.test"},
        "pipeline": {"poll_seconds": 0.05, "cpu_workers": 1},
    }
