"""HOPE's own HTTP routes: thin adapters from requests to the domain packages, one module per area.

Routers are built here and mounted in one place, :func:`hope.server.routes.mount_routes`; nothing else in HOPE
imports FastAPI, except :mod:`hope.server`.
"""
