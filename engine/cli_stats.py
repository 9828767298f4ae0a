"""``ntd stats``: anonymised statistics (registered by engine.cli)."""

from __future__ import annotations
