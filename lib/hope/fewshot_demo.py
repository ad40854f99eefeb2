"""Demo and test data for the few-shot tasks: rare-tumour phantom stacks stored in Orthanc, labelled and recorded
through the HOPE server as an annotator and a pathologist would.

Labelled cases go through HOPE's own endpoints (``PUT /datastore/label`` writes the SEG, ``PUT /cases/{study}``
the case record, audited), so the demo exercises the same path as real use. One more case of each type is stored
unlabelled and unrecorded, to be segmented and graded.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests
import SimpleITK as sitk
from tqdm import tqdm

from hope.config.server import DemoFewShotType
from hope.demo import store_volume
from hope.dicom.series_writer import new_identity
from hope.fewshot.config import SliceSpec
from hope.phantoms.tumor_stacks import PhantomStack, phantom_stack


@dataclass(frozen=True)
class StoredStack:
    """A phantom stack stored in Orthanc under these UIDs."""

    stack: PhantomStack
    study_uid: str
    series_uid: str


def store_stack(orthanc_url: str, phantom: str, seed: int, spec: SliceSpec, slices: int = 6,
                auth: tuple[str, str] | None = None) -> StoredStack:
    """Store one phantom stack of ``phantom`` type (``slices`` slices) as a CT series of a new study, as ``auth``
    (Orthanc's ``(username, password)``)."""
    stack = phantom_stack(phantom, seed, spec, slices=slices)
    identity = new_identity(f"HOPE-RARE-{seed:04d}", study_description=f"Phantom {phantom}",
                            series_description=f"Phantom {phantom} seed {seed}")
    store_volume(orthanc_url, stack.hu, stack.spacing, identity, auth=auth)
    return StoredStack(stack, identity.study_instance_uid, identity.series_instance_uid)


def lesion_nifti(stored: StoredStack, value: int) -> bytes:
    """The stack's lesion as a NIfTI label on the stored series' grid (origin 0, identity direction)."""
    label = sitk.GetImageFromArray(stored.stack.mask * value)
    label.SetSpacing(stored.stack.spacing)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "label.nii.gz"
        sitk.WriteImage(label, str(path))
        return path.read_bytes()


def _check(response: requests.Response, what: str) -> None:
    if not response.ok:
        raise RuntimeError(f"HOPE refused {what}: HTTP {response.status_code} {response.text}")


def label_and_record(hope_url: str, stored: StoredStack, tumor_value: int, tumor_type: str, verdict: str,
                     who: str = "demo", timeout: float = 300.0) -> None:
    """Save the stack's lesion as its final label (a SEG) and record the study's pathology, through HOPE."""
    response = requests.put(
        f"{hope_url}/datastore/label", params={"image": stored.series_uid, "tag": "final"},
        files={"label": ("label.nii.gz", io.BytesIO(lesion_nifti(stored, tumor_value)), "application/octet-stream")},
        data={"params": json.dumps({"user": who})}, timeout=timeout,
    )
    _check(response, f"the label of series {stored.series_uid}")
    body = {"tumor_type": tumor_type, "verdict": verdict, "confirmation": "pathology",
            "reason": "demo phantom (synthetic, not a patient)"}
    response = requests.put(f"{hope_url}/cases/{stored.study_uid}", json=body, headers={"X-HOPE-User": who},
                            timeout=timeout)
    _check(response, f"the case record of study {stored.study_uid}")


def load_fewshot_demo(orthanc_url: str, hope_url: str, types: Iterable[DemoFewShotType], tumor_value: int,
                      spec: SliceSpec, first_seed: int, progress: bool = True, auth: tuple[str, str] | None = None
                      ) -> dict[str, tuple[list[StoredStack], StoredStack]]:
    """Per demo type: its labelled, recorded cases and one unlabelled case; seeds count up from ``first_seed``.

    The series are stored in Orthanc as ``auth`` (Orthanc's ``(username, password)``).
    """
    types = list(types)
    seed = first_seed
    result: dict[str, tuple[list[StoredStack], StoredStack]] = {}
    bar = tqdm(total=sum(t.labelled + 1 for t in types), desc="storing rare-tumour phantoms", unit="series",
               disable=not progress)
    for demo in types:
        labelled: list[StoredStack] = []
        for _ in range(demo.labelled):
            stored = store_stack(orthanc_url, demo.phantom, seed, spec, auth=auth)
            label_and_record(hope_url, stored, tumor_value, demo.tumor_type, demo.verdict)
            labelled.append(stored)
            seed += 1
            bar.update()
        result[demo.tumor_type] = (labelled, store_stack(orthanc_url, demo.phantom, seed, spec, auth=auth))
        seed += 1
        bar.update()
    bar.close()
    return result

