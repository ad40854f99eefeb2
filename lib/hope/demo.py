"""Demo and test data: seeded neck CT and MR phantoms stored in Orthanc as real DICOM series."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import requests
from tqdm import tqdm

from hope.dicom.series_writer import SeriesIdentity, datasets_to_bytes, new_identity, volume_to_datasets
from hope.phantoms import CT_SPEC, Phantom, PhantomSpec, generate_neck_ct, generate_neck_mr

MR_CONTRASTS = ("T2", "T1")


@dataclass(frozen=True)
class StoredPhantom:
    """A phantom and the UIDs it was stored under."""

    phantom: Phantom
    study_uid: str
    series_uid: str


def store_volume(orthanc_url: str, volume: np.ndarray, spacing: Sequence[float], identity: SeriesIdentity,
                 timeout: float = 60.0, auth: tuple[str, str] | None = None, orientation: str = "axial",
                 origin: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
    """Store a ``(z, y, x)`` volume as a series of ``identity.modality`` through Orthanc's REST API
    (``POST /instances``), in ``orientation`` slices from ``origin`` (see
    :func:`hope.dicom.series_writer.volume_to_datasets`).

    ``auth``: Orthanc's ``(username, password)`` (``OrthancSettings.auth``).
    """
    for ds in volume_to_datasets(volume, spacing, identity, orientation=orientation, origin=origin):
        response = requests.post(f"{orthanc_url}/instances", data=datasets_to_bytes(ds), timeout=timeout, auth=auth)
        if response.status_code != 200:
            raise RuntimeError(f"Orthanc refused a phantom slice: HTTP {response.status_code} {response.text}")


def store_phantom(orthanc_url: str, phantom: Phantom, patient_id: str, timeout: float = 60.0,
                  auth: tuple[str, str] | None = None) -> StoredPhantom:
    """Store one phantom through Orthanc's REST API (``POST /instances``), as ``auth``: a CT phantom as axial
    CT slices, an MR phantom as sagittal MR slices (as cervical-spine MR is usually acquired)."""
    contrast = phantom.params.get("contrast")
    kind = f"MR {contrast}" if contrast else "CT"
    identity = new_identity(
        patient_id,
        modality="MR" if contrast else "CT",
        study_description=f"HOPE phantom neck {kind}",
        series_description=f"Phantom {kind} seed {phantom.seed}",
    )
    store_volume(orthanc_url, phantom.image, phantom.spacing, identity, timeout, auth,
                 orientation="sagittal" if contrast else "axial")
    return StoredPhantom(phantom, identity.study_instance_uid, identity.series_instance_uid)


def load_demo(
    orthanc_url: str,
    labels: Mapping[str, int],
    seeds: Iterable[int],
    spec: PhantomSpec | None = None,
    progress: bool = True,
    auth: tuple[str, str] | None = None,
) -> list[StoredPhantom]:
    """Generate the neck-CT phantoms of ``seeds`` and store them in Orthanc (as ``auth``), with a progress bar."""
    seeds = list(seeds)
    stored = []
    for seed in tqdm(seeds, desc="storing demo CT phantoms", unit="series", disable=not progress):
        phantom = generate_neck_ct(seed, labels, spec or CT_SPEC)
        stored.append(store_phantom(orthanc_url, phantom, patient_id=f"HOPE-PHANTOM-{seed:03d}", auth=auth))
    return stored


def load_mr_demo(
    orthanc_url: str,
    labels: Mapping[str, int],
    seeds: Iterable[int],
    progress: bool = True,
    auth: tuple[str, str] | None = None,
) -> list[StoredPhantom]:
    """Generate neck-MR phantoms of ``seeds``, T2 and T1 in turn, and store them in Orthanc as sagittal series."""
    seeds = list(seeds)
    stored = []
    for i, seed in enumerate(tqdm(seeds, desc="storing demo MR phantoms", unit="series", disable=not progress)):
        phantom = generate_neck_mr(seed, labels, MR_CONTRASTS[i % len(MR_CONTRASTS)])
        stored.append(store_phantom(orthanc_url, phantom, patient_id=f"HOPE-MR-PHANTOM-{seed:03d}", auth=auth))
    return stored
