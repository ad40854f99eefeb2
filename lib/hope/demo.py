"""Demo and test data: seeded neck-CT phantoms stored in Orthanc as real DICOM series."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import requests
from tqdm import tqdm

from hope.dicom.series_writer import SeriesIdentity, datasets_to_bytes, new_identity, volume_to_datasets
from hope.phantoms import Phantom, PhantomSpec, generate_neck_ct


@dataclass(frozen=True)
class StoredPhantom:
    """A phantom and the UIDs it was stored under."""

    phantom: Phantom
    study_uid: str
    series_uid: str


def store_volume(orthanc_url: str, volume: np.ndarray, spacing: Sequence[float], identity: SeriesIdentity,
                 timeout: float = 60.0, auth: tuple[str, str] | None = None) -> None:
    """Store a ``(z, y, x)`` HU volume as a CT series through Orthanc's REST API (``POST /instances``).

    ``auth``: Orthanc's ``(username, password)`` (``OrthancSettings.auth``).
    """
    for ds in volume_to_datasets(volume, spacing, identity):
        response = requests.post(f"{orthanc_url}/instances", data=datasets_to_bytes(ds), timeout=timeout, auth=auth)
        if response.status_code != 200:
            raise RuntimeError(f"Orthanc refused a phantom slice: HTTP {response.status_code} {response.text}")


def store_phantom(orthanc_url: str, phantom: Phantom, patient_id: str, timeout: float = 60.0,
                  auth: tuple[str, str] | None = None) -> StoredPhantom:
    """Store one phantom as a CT series through Orthanc's REST API (``POST /instances``), as ``auth``."""
    identity = new_identity(
        patient_id,
        study_description="HOPE phantom neck CT",
        series_description=f"Phantom seed {phantom.seed}",
    )
    store_volume(orthanc_url, phantom.image, phantom.spacing, identity, timeout, auth)
    return StoredPhantom(phantom, identity.study_instance_uid, identity.series_instance_uid)


def load_demo(
    orthanc_url: str,
    labels: Mapping[str, int],
    seeds: Iterable[int],
    spec: PhantomSpec | None = None,
    progress: bool = True,
    auth: tuple[str, str] | None = None,
) -> list[StoredPhantom]:
    """Generate the phantoms of ``seeds`` and store them in Orthanc (as ``auth``), with a progress bar."""
    seeds = list(seeds)
    stored = []
    for seed in tqdm(seeds, desc="storing demo phantoms", unit="series", disable=not progress):
        phantom = generate_neck_ct(seed, labels, spec or PhantomSpec())
        stored.append(store_phantom(orthanc_url, phantom, patient_id=f"HOPE-PHANTOM-{seed:03d}", auth=auth))
    return stored
