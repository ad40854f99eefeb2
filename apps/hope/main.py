"""Entry point for ``monailabel start_server --app apps/hope``: the app is put together in :mod:`hope.server`."""

from hope.server.app import HopeApp

__all__ = ["HopeApp"]
