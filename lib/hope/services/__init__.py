"""Start, watch and stop the processes HOPE runs on: Orthanc and the HOPE (MONAI Label) server."""
