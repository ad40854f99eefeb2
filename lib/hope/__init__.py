"""HOPE: the reusable package behind the HOPE annotation server."""
