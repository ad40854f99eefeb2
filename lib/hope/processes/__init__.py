"""Start, supervise and stop the processes HOPE runs on: Orthanc, PostgreSQL and the HOPE (MONAI Label) server.

Not a service layer: the server's collaborators are built in :mod:`hope.server`.
"""
