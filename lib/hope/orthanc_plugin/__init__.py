"""Logic of HOPE's Orthanc plugin (``orthanc/hope_plugin.py``): standard library only, testable without Orthanc.

Orthanc loads ``orthanc/hope_plugin.py`` into its embedded (system) Python; that file only binds the ``orthanc``
module to :class:`~hope.orthanc_plugin.service.PluginService`. Modules, one job each:

* ``config``: the ``"Hope"`` section of Orthanc's configuration;
* ``validation``: is an image series usable (pixel data, enough slices, consistent geometry)?
* ``events``: the JSON event a stable series or a stored SEG gives, from Orthanc's REST answers;
* ``sqlite_store``, ``worklist``, ``catalog``, ``outbox``: the plugin's durable state (one SQLite file);
* ``hope_client``: HTTP to HOPE (``POST /hope/events``, signed with :mod:`hope.sync.signing`; ``GET /hope/state``);
* ``views``: the JSON answered by the plugin's ``/hope/...`` routes;
* ``service``: the worker threads that tie it together.

Nothing here imports a third-party package (nor does :mod:`hope.sync.signing`, which it shares with HOPE):
Orthanc's Python has only the standard library.
"""
