"""The one interface of hash sources: where known hashes come from besides ntd's own files.

A hash source is an object a plugin returns from the ``ntd_hash_sources`` hook
(``docs/hash-sources.md``). Its ``name`` is its configuration section (``[hashsource.NAME]``,
declared by the same plugin's ``ntd_config_schema``) and the argument of ``ntd hashlist sync
NAME``. A source does any of three things:

- **pull** (``can_sync``): ``await source.sync(ctx, cursors)`` returns the changes since the
  cursors of the previous sync as ``ListChanges``; the match plugin applies them to local lists
  as a diff (``Store.sync_hashlist``) and stores the new cursors. ``ntd run --daemon`` syncs
  every source whose ``sync_minutes`` is above zero.
- **look up at match time** (``can_lookup``): ``await source.lookup(ctx, hashes)`` answers
  whether one item's hashes are known to a remote service, as ``RemoteMatch`` records; the
  match stage treats them like matches on a local list named ``list``.
- **read files** (``formats``): ``ntd hashlist import FILE --format NAME`` reads a file in a
  format the source names, through ``source.read_file(format, path)``.

Sources never open sockets: they go through ``ctx.fetcher``-style SSRF-safe clients
(``engine.safe_fetch``), and read credentials from the environment variable their section
names (``*_env``) — never from ``ntd.toml``, never into a log line or an error message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

__all__ = ["HashSource", "ListChanges", "RemoteMatch", "SourceEntry"]


@dataclass(frozen=True, kw_only=True)
class SourceEntry:
    """One hash as a source holds it. ``external_id`` is the source's id of the thing hashed
    (several hashes may share one: an HMA bank content with a PDQ and an MD5)."""

    external_id: str
    hash_type: str
    hash: str
    category: str
    label: str | None = None

    def row(self) -> tuple[str, str, str, str, str | None]:
        """The tuple ``Store.sync_hashlist`` takes."""
        return (self.external_id, self.hash_type, self.hash, self.category, self.label)


@dataclass(frozen=True, kw_only=True)
class ListChanges:
    """What one sync of one local list brings.

    ``entries``: the current hashes of every external id that changed (all of them when
    ``replace``); ``removed``: external ids gone at the source; ``cursor``: where the next sync
    starts (``None``: keep the old one); ``transferred``: how many records crossed the wire."""

    list: str
    source: str
    trust: str = "review"
    negative: bool = False
    entries: Sequence[SourceEntry] = ()
    removed: Sequence[str] = ()
    replace: bool = False
    cursor: str | None = None
    transferred: int = 0
    notes: Sequence[str] = field(default_factory=tuple)


class RemoteMatch(TypedDict):
    """A remote service's answer that one hash is known (shaped like a local match)."""

    list: str
    hash_type: str
    distance: int
    category: str
    trust: str


class HashSource:
    """Base class of hash sources: override what the source can do."""

    #: the configuration section ``[hashsource.NAME]`` and ``ntd hashlist sync NAME``
    name: str = ""
    #: file formats ``read_file`` understands (``ntd hashlist import --format``)
    formats: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether the source is configured (an empty ``base_url`` is off)."""
        return False

    @property
    def can_sync(self) -> bool:
        """True when ``sync`` pulls lists."""
        return False

    @property
    def can_lookup(self) -> bool:
        """True when ``lookup`` answers at match time."""
        return False

    @property
    def sync_minutes(self) -> float:
        """How often ``ntd run --daemon`` syncs (0: only ``ntd hashlist sync NAME``)."""
        return 0.0

    async def sync(self, ctx: Any, cursors: Mapping[str, str | None]) -> list[ListChanges]:
        """Pull what changed since ``cursors`` (``{local list: cursor}`` of earlier syncs)."""
        raise NotImplementedError(f"hash source {self.name!r} does not sync")

    async def lookup(self, ctx: Any, hashes: Mapping[str, Any]) -> list[RemoteMatch]:
        """Ask the remote service about one item's hashes (``{"md5": ..., "pdq": ...}``)."""
        return []

    def read_file(self, fmt: str, path: str) -> ListChanges:
        """Read a file of format ``fmt`` into the changes of one list (``replace`` set)."""
        raise NotImplementedError(f"hash source {self.name!r} reads no files")

    def request_count(self) -> int:
        """Requests this source has sent so far in this run (for sync reports)."""
        return 0

    async def aclose(self) -> None:
        """Close clients opened by ``sync`` or ``lookup``."""


def entries_of(changes: ListChanges) -> Iterator[tuple[str, str, str, str, str | None]]:
    """The store tuples of a change set."""
    return (entry.row() for entry in changes.entries)
