"""An Orthanc storage area (Python plugin script) that keeps files in a folder, and refuses writes on demand.

``tests/security/test_label_uploads.py`` loads it as Orthanc's ``PythonScript``. Orthanc's configuration names the
folder and a flag file (``"HopeTestStorage": {"Root": ..., "RefuseFlag": ...}``): while the flag file exists,
every write fails, as on a read-only or full disk. Orthanc 1.10 with DICOMweb 1.7 then answers a STOW-RS with 200
and empty FailedSOPSequence and ReferencedSOPSequence, which is how HOPE used to lose a label with a 200.
"""

import json
import os

import orthanc  # provided by Orthanc's Python plugin

_SETTINGS = json.loads(orthanc.GetConfiguration())["HopeTestStorage"]
ROOT = _SETTINGS["Root"]
REFUSE_FLAG = _SETTINGS["RefuseFlag"]


def _path(uuid: str) -> str:
    return os.path.join(ROOT, uuid[:2], uuid)


def _create(uuid: str, content_type: int, data: bytes) -> None:
    if os.path.exists(REFUSE_FLAG):
        raise OSError(f"the storage {ROOT} is read-only")
    os.makedirs(os.path.dirname(_path(uuid)), exist_ok=True)
    with open(_path(uuid), "wb") as out:
        out.write(data)


def _read(uuid: str, content_type: int) -> bytes:
    with open(_path(uuid), "rb") as source:
        return source.read()


def _remove(uuid: str, content_type: int) -> None:
    os.remove(_path(uuid))


orthanc.RegisterStorageArea(_create, _read, _remove)
