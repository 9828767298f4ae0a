"""Accounts, sessions, API tokens, CSRF and roles.

- Passwords: argon2id (``argon2-cffi`` defaults); a failed sign-in still runs one verification so
  a missing account takes as long as a wrong password.
- API tokens (``Authorization: Bearer ntd_...``): 256 random bits, stored as SHA-256 only.
- Console sessions: a signed cookie ``ntd_session`` = ``user.nonce.issued.pwtag.hmac``
  (HMAC-SHA256 with the server secret), path ``/console`` only, HttpOnly, SameSite=Strict, Secure
  under https. ``pwtag`` is an HMAC of the account's password hash, so a password change ends
  every session of the account at its next request; signing out records the session's nonce as
  revoked (``engine.web.sessions``); a removed account ends its sessions at the next request.
- Device cookie ``ntd_device`` = ``user.device.hmac``, path ``/console/login`` only: left by a
  successful sign-in so that strangers' failed attempts never slow this browser
  (``engine.web.signin``).
- CSRF: every console form carries ``csrf`` = HMAC(secret, session nonce); the sign-in form uses a
  short-lived pre-session cookie the same way. Cross-origin ``Origin`` headers are refused too.
- Roles: ``analyst`` (read, assess, upload), ``admin`` (analyst + audit log), ``partner``
  (read-only, only cases whose resolution country is the account's country), ``police`` (the
  police liaison: only the police page, ``engine.web.police``; no API access).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from engine.errors import InputError
from engine.web.accounts import ROLES

SESSION_COOKIE = "ntd_session"
LOGIN_COOKIE = "ntd_login"
DEVICE_COOKIE = "ntd_device"
TOKEN_PREFIX = "ntd_"
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a real password: keeps timing equal for unknown accounts")


@dataclass(frozen=True, kw_only=True)
class Session:
    """What a signed session cookie says: whose it is, its nonce, its password tag."""

    user_id: str
    nonce: str
    password_tag: str


@dataclass(frozen=True, kw_only=True)
class User:
    """The signed-in account of a request."""

    id: str
    name: str
    role: str
    country: str | None = None

    @property
    def actor(self) -> str:
        """Trail and audit name: ``analyst:NAME`` (admins are analysts), ``partner:NAME`` or
        ``police:NAME``."""
        kind = self.role if self.role in ("partner", "police") else "analyst"
        return f"{kind}:{self.name}"

    @property
    def can_assess(self) -> bool:
        """May record verdicts and upload batches."""
        return self.role in ("analyst", "admin")

    def may_see(self, case: dict[str, Any]) -> bool:
        """Whether this account may read ``case`` (partners: their country only; the police
        liaison: cases held for the police)."""
        if self.role == "police":
            return case.get("state") == "held_for_police"
        if self.role != "partner":
            return True
        return bool(self.country) and case_country(case) == self.country

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> User:
        """From an accounts row."""
        return cls(id=row["id"], name=row["name"], role=row["role"], country=row["country"])


def case_country(case: dict[str, Any]) -> str | None:
    """The hosting country of a case's resolution (upper-case ISO code), if resolved."""
    resolution = case.get("resolution")
    if isinstance(resolution, dict) and isinstance(resolution.get("country"), str):
        return resolution["country"].upper()
    return None


def validate_account(name: str, role: str, country: str | None) -> str | None:
    """Check account fields; returns the normalised country."""
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-" for c in name):
        raise InputError(f"user name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise InputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if country is not None:
        country = country.strip().upper()
        if len(country) != 2 or not country.isalpha():
            raise InputError(f"country {country!r}: expected an ISO 3166 alpha-2 code")
    if role == "partner" and not country:
        raise InputError("a partner account needs --country (its cases' hosting country)")
    return country


def hash_password(password: str) -> str:
    """argon2id hash of a password (at least 10 characters)."""
    if len(password) < 10:
        raise InputError("password: use at least 10 characters")
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; constant work when there is no account."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> tuple[str, str]:
    """A fresh API token and the digest to store."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    """SHA-256 hex of a token (tokens are random, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Signer:
    """HMAC signing of sessions and CSRF tokens with the server secret."""

    def __init__(self, secret: bytes, *, session_seconds: float) -> None:
        if len(secret) < 16:
            raise InputError("the web secret must be at least 16 bytes")
        self.secret = secret
        self.session_seconds = session_seconds

    def _mac(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def password_tag(self, password_hash: str) -> str:
        """What a session cookie carries of the account's password hash (an HMAC of it)."""
        return self._mac("password." + password_hash)[:32]

    def session(self, user_id: str, password_hash: str) -> str:
        """A new session cookie value for an account (bound to its current password)."""
        body = (f"{user_id}.{secrets.token_urlsafe(16)}.{int(time.time())}."
                f"{self.password_tag(password_hash)}")
        return f"{body}.{self._mac('session.' + body)}"

    def open_session(self, value: str | None) -> Session | None:
        """The session of a validly signed, unexpired cookie, else None (revocation and the
        password tag are checked against the store by ``engine.web.sessions``)."""
        if not value or value.count(".") != 4:
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("session." + body)):
            return None
        user_id, nonce, issued, tag = body.split(".")
        try:
            age = time.time() - int(issued)
        except ValueError:
            return None
        if not 0 <= age <= self.session_seconds:
            return None
        return Session(user_id=user_id, nonce=nonce, password_tag=tag)

    def device(self, user_id: str) -> str:
        """A new device cookie value: this browser signed in to ``user_id``."""
        body = f"{user_id}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac('device.' + body)}"

    def open_device(self, value: str | None) -> tuple[str, str] | None:
        """``(user_id, device_id)`` of a validly signed device cookie, else None."""
        if not value or value.count(".") != 2:
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("device." + body)):
            return None
        user_id, device_id = body.split(".")
        return user_id, device_id

    def csrf(self, nonce: str) -> str:
        """The CSRF token bound to a session (or sign-in) nonce."""
        return self._mac("csrf." + nonce)

    def check_csrf(self, nonce: str | None, token: str | None) -> bool:
        """Whether ``token`` is the CSRF token of ``nonce``."""
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf(nonce), token)

    def fingerprint_key(self) -> bytes:
        """A key derived for rate-limit fingerprints (never the session key itself)."""
        return hashlib.sha256(b"ratelimit." + self.secret).digest()
