"""The composition root: where the HOPE server is put together.

* :mod:`hope.server.collaborators`: every collaborator is built here, once (configuration, Orthanc gateway,
  datastore, tasks, registries, support sets, strategies, sync, scoring);
* :mod:`hope.server.routes`: every HOPE route is mounted here, in front of MONAI Label's;
* :mod:`hope.server.errors`: domain errors become HTTP answers here;
* :mod:`hope.server.app`: the MONAI Label app, an adapter handing MONAI Label what the collaborators hold;
* :mod:`hope.server.paths`: where runtime state lives (a data folder, never the source tree).
"""
