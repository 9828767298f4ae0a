"""Example ntd jurisdiction plugin: routing rules for material hosted in Germany."""

__version__ = "0.1.0"
