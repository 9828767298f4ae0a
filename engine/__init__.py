"""ntd core engine: hookspecs, plugin manager, pipeline, case model, storage, CLI.

Plugins import only the marker from here::

    from engine import hookimpl
"""

from __future__ import annotations

from engine.plugin_manager import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
