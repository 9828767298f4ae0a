"""Hash sources (entry point ``hashsources``): HMA banks and lookups, an EOKM HashDB-style MD5
check, NCMEC hash-sharing XML and Project VIC / CAID JSON files.

The hook implementations only: each source is an ``engine.api.HashSource`` in its own module
(``hma``, ``eokm``, ``files``; ``client`` is their SSRF-safe JSON client) with its own
``[hashsource.NAME]`` section. The built-in match plugin drives them (``ntd hashlist sync``,
``ntd hashlist import --format``, the daemon's sync loop, match-time lookups).
``docs/hash-sources.md``.
"""

from __future__ import annotations

from engine import hookimpl
from engine.config import Config, Option
from engine.hash_sources import HashSource
from plugins.hashsource import eokm, files, hma


@hookimpl
def ntd_config_schema() -> dict[str, dict[str, Option]]:
    return {hma.SECTION: dict(hma.SCHEMA), eokm.SECTION: dict(eokm.SCHEMA),
            files.NCMECFile.section: dict(files.NCMEC_SCHEMA),
            files.VICFile.section: dict(files.VIC_SCHEMA)}


@hookimpl
def ntd_hash_sources(config: Config) -> list[HashSource]:
    return [hma.HMASource(config), eokm.EOKMSource(config), files.NCMECFile(config),
            files.VICFile(config)]
