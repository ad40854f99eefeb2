"""Entry point for ``monailabel start_server --app apps/hope``: the app lives in :mod:`hope.app`."""

from hope.app import HopeApp

__all__ = ["HopeApp"]
