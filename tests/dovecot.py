"""The throwaway Dovecot of ``engine.lab.dovecot`` for tests: skipped, with the reason, where it
cannot run (not installed: ``apt-get install dovecot-imapd``; ``.ci/run`` installs it)."""

from __future__ import annotations

import pytest

from engine.lab.dovecot import Dovecot as LabDovecot
from engine.lab.dovecot import DovecotUnavailable


def Dovecot() -> LabDovecot:  # noqa: N802 - reads like the class it returns
    """A running server, or the test is skipped with the reason."""
    try:
        return LabDovecot()
    except DovecotUnavailable as exc:
        pytest.skip(str(exc))
