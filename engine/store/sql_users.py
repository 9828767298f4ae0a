"""Web-console accounts and API tokens (tables of migration 7), written once for both backends.

Mixed into ``engine.store.sql.SQLStore``; the methods use its ``_write()`` transaction and
``_read()`` helpers; rows are dicts.
Only password hashes (argon2, made by ``engine.web.auth``) and SHA-256 digests of API tokens are
stored; the store never sees a password or a token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from engine.errors import InputError
from engine.ids import new_id

_USER_COLUMNS = ("id", "name", "role", "country", "created_at")


def _user(row: Any, *, with_hash: bool = False) -> dict[str, Any]:
    out = {c: row[c] for c in _USER_COLUMNS}
    if with_hash:
        out["password_hash"] = row["password_hash"]
    return out


class SQLUsersMixin:
    """Accounts (``users``) and API tokens (``api_tokens``)."""

    if TYPE_CHECKING:  # provided by SQLStore; never defined here at run time (MRO)
        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    def add_user(self, *, name: str, password_hash: str, role: str, country: str | None,
                 now: str) -> str:
        """Create an account; returns its id. A taken name is an ``InputError``."""
        user_id = new_id("U")
        with self._write() as conn:
            if conn.execute("SELECT 1 AS x FROM users WHERE name = ?", (name,)).fetchone():
                raise InputError(f"user {name!r} already exists")
            conn.execute("INSERT INTO users(id, name, password_hash, role, country, created_at)"
                         " VALUES (?,?,?,?,?,?)",
                         (user_id, name, password_hash, role, country, now))
        return user_id

    def get_user(self, name: str, *, with_hash: bool = False) -> dict[str, Any] | None:
        """One account by name (``password_hash`` only when asked for)."""
        rows = self._read("SELECT * FROM users WHERE name = ?", (name,))
        return _user(rows[0], with_hash=with_hash) if rows else None

    def get_user_by_id(self, user_id: str) -> dict[str, Any] | None:
        """One account by id, without its password hash."""
        rows = self._read("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[dict[str, Any]]:
        """Every account (no hashes) with its number of API tokens, by name."""
        rows = self._read("SELECT u.*, (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id)"
                          " AS tokens FROM users u ORDER BY u.name")
        return [{**_user(r), "tokens": r["tokens"]} for r in rows]

    def set_password_hash(self, name: str, password_hash: str) -> bool:
        """Replace an account's password hash; False if there is no such account."""
        with self._write() as conn:
            cur = conn.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                               (password_hash, name))
            return cur.rowcount > 0

    def remove_user(self, name: str) -> bool:
        """Delete an account and its tokens; False if there was none."""
        with self._write() as conn:
            row = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM api_tokens WHERE user_id = ?", (row["id"],))
            conn.execute("DELETE FROM users WHERE id = ?", (row["id"],))
        return True

    def add_token(self, *, user_id: str, token_hash: str, now: str) -> None:
        """Store the digest of a new API token for an account."""
        with self._write() as conn:
            conn.execute("INSERT INTO api_tokens(token_hash, user_id, created_at)"
                         " VALUES (?,?,?)", (token_hash, user_id, now))

    def user_for_token(self, token_hash: str, now: str) -> dict[str, Any] | None:
        """The account owning a token digest, or None. Use is recorded once a minute at most
        (a write per request would serialise every API call on the database lock)."""
        rows = self._read(
            "SELECT u.*, t.last_used_at AS used FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.token_hash = ?", (token_hash,))
        if not rows:
            return None
        used = rows[0]["used"]
        if used is None or used[:16] != now[:16]:
            with self._write() as conn:
                conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_hash = ?",
                             (now, token_hash))
        return _user(rows[0])

    def revoke_tokens(self, user_id: str) -> int:
        """Delete every API token of an account; returns how many."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM api_tokens WHERE user_id = ?", (user_id,))
            return cur.rowcount

    def tokens_of(self, user_id: str) -> Iterator[dict[str, Any]]:
        """Creation and last-use times of an account's tokens (never the digests)."""
        for r in self._read("SELECT created_at, last_used_at FROM api_tokens WHERE user_id = ?"
                            " ORDER BY created_at", (user_id,)):
            yield {"created_at": r["created_at"], "last_used_at": r["last_used_at"]}
