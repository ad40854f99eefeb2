#!/usr/bin/env bash
# Set up whatever is missing, then run Orthanc and the HOPE server in the foreground until Ctrl-C.
#   HOPE_DATA_DIR (./data)  HOPE_PORT (8000)  HOPE_ORTHANC_HTTP_PORT (8042)
#   HOPE_ORTHANC_DICOM_PORT (4242)  HOPE_DEMO (1; 0 skips the demo phantoms)
set -euo pipefail
cd "$(dirname "$0")/.."
HOPE_WITH_BROWSER=${HOPE_WITH_BROWSER:-0} bash scripts/setup.sh
exec .venv/bin/python -m hope.launcher
