"""Console sessions that end when they should: on sign-out and on a password change, at once.

The session cookie is signed (``engine.web.auth.Signer``), which proves who issued it but not
that it still stands: until now a signed-out cookie stayed valid for its whole 8 hours. Two
server-side checks run on every console request, on what the store already has (no schema
change):

- **sign-out** records the digest of the session's nonce in the store's expiring key-value cache
  (namespace ``web-session-revoked``, kept until the cookie would have expired anyway), so every
  server process on the database refuses that cookie from the next request on;
- **password change**: the cookie carries an HMAC of the account's password hash; ``ntd users
  passwd`` replaces the hash, and every session issued before no longer matches.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

from engine.clock import Clock, fmt
from engine.web.auth import Session, Signer

REVOKED_NAMESPACE = "web-session-revoked"


def _nonce_key(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8", "replace")).hexdigest()


class Sessions:
    """Checks and ends console sessions against the store (blocking: call off the loop)."""

    def __init__(self, *, store: Any, accounts: Any, signer: Signer, clock: Clock,
                 lifetime_seconds: float) -> None:
        self.store = store
        self.accounts = accounts
        self.signer = signer
        self.clock = clock
        self.lifetime_seconds = lifetime_seconds

    def account(self, session: Session) -> dict[str, Any] | None:
        """The account row of a signed session that still stands, else None."""
        row = self.accounts.get_user_by_id(session.user_id)
        if row is None:
            return None  # the account was removed
        current = self.accounts.get_user(row["name"], with_hash=True)
        if current is None or current["id"] != row["id"]:
            return None
        tag = self.signer.password_tag(current["password_hash"])
        if not hmac.compare_digest(tag, session.password_tag):
            return None  # the password changed since this session began
        if self.store.cache_get(REVOKED_NAMESPACE, _nonce_key(session.nonce),
                                self.clock.now_text()) is not None:
            return None  # signed out
        return dict(row)

    def revoke(self, session: Session) -> None:
        """End ``session`` for every server process on this store."""
        # Kept a day past the cookie's own lifetime: a cookie is never valid longer.
        until = fmt(self.clock.now() + timedelta(seconds=self.lifetime_seconds + 86_400))
        self.store.cache_put(REVOKED_NAMESPACE, _nonce_key(session.nonce), True, until)
