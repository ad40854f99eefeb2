"""Fill an Orthanc quickly with an archive-like mix of tiny series, for scale benchmarks and tests.

A store the size of a hospital's is mostly many small things: studies of a few image series, a fraction of them
labelled by a SEG. :func:`plan_store` lays one out (seeded): ``series_per_study`` CT series per study, each image
series a SEG with probability ``seg_fraction``, until ``total`` series (images and SEGs) are planned. Images are
``slices`` slices of ``size`` x ``size`` pixels. A SEG is made once with highdicom (:func:`hope.dicom.seg.label_to_seg`)
against a template series and copied for each labelled series with every template UID replaced
(:func:`remap_uids`), so thousands of valid SEGs cost no more than copying datasets. :func:`upload` sends Part-10
files to Orthanc's REST ``POST /instances`` from several threads.
"""

from __future__ import annotations

import dataclasses
import io
import random
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pydicom
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from hope.dicom.seg import label_to_seg
from hope.dicom.series_writer import SeriesIdentity, datasets_to_bytes, new_identity, volume_to_datasets

#: Times one upload is retried after a dropped connection.
RETRIES = 3
#: Labels of the planned SEGs (one segment).
FILL_LABELS = {"tumor": 1}


@dataclass(frozen=True)
class PlannedSeries:
    """One image series of the plan, and the UID of its SEG series when it has one."""

    identity: SeriesIdentity
    seg_uid: str | None = None


@dataclass
class StorePlan:
    """What :func:`plan_store` laid out: image series (with their SEG UIDs), studies and patients."""

    images: list[PlannedSeries] = field(default_factory=list)
    studies: int = 0

    @property
    def segs(self) -> int:
        """How many SEG series are planned."""
        return sum(1 for s in self.images if s.seg_uid)

    @property
    def total(self) -> int:
        """Series planned, images and SEGs."""
        return len(self.images) + self.segs


def plan_store(total: int, prefix: str, series_per_study: int = 3, seg_fraction: float = 0.2,
               seed: int = 0) -> StorePlan:
    """Lay out ``total`` series: studies of ``series_per_study`` CT series (one patient ``<prefix>-<n>`` each),
    each image series with a SEG with probability ``seg_fraction``."""
    rng = random.Random(seed)
    plan = StorePlan()
    while plan.total < total:
        study = new_identity(f"{prefix}-{plan.studies:06d}", study_description=f"{prefix} study")
        plan.studies += 1
        for number in range(1, series_per_study + 1):
            if plan.total >= total:
                break
            identity = dataclasses.replace(study, series_instance_uid=generate_uid(), series_number=number,
                                           series_description=f"series {number}")
            labelled = plan.total + 2 <= total and rng.random() < seg_fraction
            plan.images.append(PlannedSeries(identity, generate_uid() if labelled else None))
    return plan


def remap_uids(ds: Dataset, mapping: Mapping[str, str]) -> None:
    """Replace, in place and in every nested sequence, each UI value found in ``mapping`` by its mapped UID."""
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                remap_uids(item, mapping)
        elif element.VR == "UI" and element.value in mapping:
            element.value = mapping[element.value]


class StoreFiller:
    """Makes the Part-10 files of a :class:`StorePlan`: ``slices`` slices of ``size`` x ``size`` per image series,
    and a SEG copied from one template per labelled series."""

    def __init__(self, slices: int = 2, size: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self._volume = rng.integers(-100, 400, size=(slices, size, size)).astype(np.int16)
        template = new_identity("TEMPLATE")
        self._template_images = volume_to_datasets(self._volume, (1.0, 1.0, 2.0), template)
        label = np.zeros_like(self._volume, dtype=np.uint8)
        label[:, size // 4: size // 2, size // 4: size // 2] = 1
        seg = label_to_seg(label, self._template_images, FILL_LABELS, series_description="scale SEG")
        self._template_seg_uids = (str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID))
        self._template_seg = datasets_to_bytes(seg)  # read back per copy: highdicom's object cannot be deep-copied
        self._template = template

    def files(self, planned: PlannedSeries) -> list[bytes]:
        """The image slices of ``planned`` then, if it has one, its SEG, as Part-10 bytes."""
        images = volume_to_datasets(self._volume, (1.0, 1.0, 2.0), planned.identity)
        out = [datasets_to_bytes(ds) for ds in images]
        if planned.seg_uid:
            mapping = {
                self._template.study_instance_uid: planned.identity.study_instance_uid,
                self._template.series_instance_uid: planned.identity.series_instance_uid,
                self._template.frame_of_reference_uid: planned.identity.frame_of_reference_uid,
                self._template_seg_uids[0]: planned.seg_uid,
                self._template_seg_uids[1]: generate_uid(),
                **{str(t.SOPInstanceUID): str(n.SOPInstanceUID) for t, n in zip(self._template_images, images,
                                                                                 strict=True)},
            }
            seg = pydicom.dcmread(io.BytesIO(self._template_seg))
            remap_uids(seg, mapping)
            seg.PatientID, seg.PatientName = planned.identity.patient_id, planned.identity.patient_name
            out.append(datasets_to_bytes(seg))
        return out


def upload(orthanc_url: str, auth: tuple[str, str], plan: StorePlan, filler: StoreFiller,
           threads: int = 6) -> int:
    """``POST /instances`` every file of ``plan`` to Orthanc from ``threads`` threads; the number of instances.

    Raises:
        RuntimeError: Orthanc refused an instance.
    """
    local = threading.local()

    def send(planned: PlannedSeries) -> int:
        files = filler.files(planned)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.auth = auth
        for body in files:
            for attempt in range(RETRIES + 1):  # Orthanc drops a kept-alive connection now and then; storing is
                try:                             # idempotent (the same instance again is "AlreadyStored")
                    answer = session.post(f"{orthanc_url}/instances", data=body, timeout=60)
                    break
                except requests.ConnectionError:
                    if attempt == RETRIES:
                        raise
            if not answer.ok:
                raise RuntimeError(f"Orthanc refused an instance: {answer.status_code} {answer.text[:200]}")
        return len(files)

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(send, plan.images))
