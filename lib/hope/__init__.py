"""HOPE: the reusable package behind the HOPE annotation server."""

__version__ = "0.1.0"
