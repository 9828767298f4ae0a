"""Account storage for the web app: the store's own user methods, or an adapter until then.

``SQLiteStore`` gains ``SQLiteUsersMixin`` (engine/store/sqlite_users.py); until a backend has
the methods, ``accounts(store)`` wraps a SQLite store's transaction helpers with the same mixin.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from engine.errors import ConfigError
from engine.store.sqlite_users import SQLiteUsersMixin

ROLES = ("analyst", "admin", "partner")


class _SQLiteAccounts(SQLiteUsersMixin):
    """The users mixin bound to an existing SQLite store's connection and lock."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def _write(self) -> AbstractContextManager[Any]:
        return self._store._write()  # type: ignore[no-any-return]

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._store._read(sql, params)  # type: ignore[no-any-return]


def accounts(store: Any) -> Any:
    """An object with the account methods (``add_user``, ``user_for_token`` ...) for ``store``."""
    if hasattr(store, "user_for_token"):
        return store
    if hasattr(store, "_write") and hasattr(store, "conn"):
        return _SQLiteAccounts(store)
    raise ConfigError(f"{type(store).__name__}: this store backend has no user accounts yet "
                      "(web console accounts need the SQLite backend)")
