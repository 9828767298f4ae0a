"""ntd core engine: hookspecs, plugin manager, pipeline, case model, storage, CLI.

Plugins import what they need from ``engine.api`` (the public plugin API); the marker is also
here for plugins written before it existed::

    from engine import hookimpl

This module imports nothing of the engine itself, so importing any ``engine.*`` module never
pulls in the plugin manager (and no import cycle runs through the package).
"""

from __future__ import annotations

import pluggy

PROJECT = "ntd"

#: Marks a plugin's hook implementations (``@hookimpl def ntd_fetch(case, ctx): ...``).
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl"]
__version__ = "0.1.0"
