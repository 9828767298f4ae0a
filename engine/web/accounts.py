"""Account storage for the web app: the store's user role (``engine.store.roles.UserStore``).

Every store backend implements the account methods (``add_user``, ``user_for_token`` ...), so
``accounts(store)`` is the store itself, typed as the one role the web app needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.roles import UserStore

ROLES = ("analyst", "admin", "partner", "police")


def accounts(store: Store) -> UserStore:
    """The account methods of ``store``."""
    return store
