"""``tumor_grade``: benign / borderline / malignant probabilities of a lesion, and the nearest known tumour types.

``POST /infer/tumor_grade?image=<series>`` grades one lesion of the series. The lesion is, in this order:

1. the uploaded ``label`` (its voxels of the store's ``tumor`` value, or all its non-zero voxels when it has one
   value only): a mask from any task, or one the annotator drew;
2. the series' final label (its SEG in the store);
3. otherwise the ``fewshot_tumor`` segmentation of the series (params ``tumor_type`` and ``adapt_steps`` pass on).

A prototypical network (:class:`~hope.fewshot.grading.LesionGrader`) compares the lesion's embedding with the
lesions of every recorded, labelled study: the mean embedding per verdict gives calibrated probabilities, the mean
per tumour type the nearest types. Each verdict needs at least one support lesion (409 otherwise).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from hope.dicom.volume import grid_mismatch, label_like
from hope.errors import ConflictError, InvalidInputError
from hope.fewshot.config import FewShotDefinition
from hope.fewshot.episodes import GRADES
from hope.fewshot.grading import LesionGrader
from hope.fewshot.support_library import SupportLibrary
from hope.infers.fewshot_common import ReloadingModel, lesion_size, write_lesion_label

Segment = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]


class TumorGradeInfer(InferTask):
    """The ``tumor_grade`` infer task (a MONAI Label :class:`InferTask` of type classification).

    ``final_label(series_uid)`` gives the path of a series' final label or ``None``; ``segment(request)`` is the
    ``fewshot_tumor`` task, used when neither an uploaded nor a final label gives the lesion.
    """

    def __init__(
        self,
        definition: FewShotDefinition,
        model: ReloadingModel[LesionGrader],
        library: SupportLibrary,
        final_label: Callable[[str], str | None],
        segment: Segment,
    ) -> None:
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels={definition.lesion_label: library.lesion_value},
            dimension=3,
            description=definition.description,
            config={"tumor_type": "all"},
        )
        self.definition = definition
        self.model = model
        self.library = library
        self.final_label = final_label
        self.segment = segment
        self.top_types = definition.inference.top_types

    def is_valid(self) -> bool:
        """Whether the served weights exist."""
        return self.model.path.exists()

    def lesion(self, request: dict[str, Any], image: sitk.Image) -> tuple[np.ndarray, str, dict[str, Any] | None]:
        """The lesion mask ``(z, y, x)`` on ``image``'s grid, where it came from, and the segmentation JSON if any."""
        series_uid = request.get("hope_series_uid")
        segmentation = None
        if request.get("label"):
            label, source = sitk.ReadImage(str(request["label"])), "request"
        elif series_uid and (final := self.final_label(series_uid)):
            label, source = sitk.ReadImage(final), "final_label"
        else:
            label, segmentation = self.segmented(request)
            source = "fewshot_tumor"
        if reason := grid_mismatch(image, label):
            raise InvalidInputError(f"the lesion label does not lie on the image's grid: {reason}")
        values = sitk.GetArrayFromImage(label)
        present = set(np.unique(values).tolist()) - {0}
        lesion = values == self.library.lesion_value if self.library.lesion_value in present else values > 0
        if len(present) > 1 and self.library.lesion_value not in present:
            raise InvalidInputError(f"the label has several values {sorted(present)} and none is the lesion value "
                                    f"{self.library.lesion_value} ({self.definition.lesion_label}); send one lesion")
        if not lesion.any():
            raise InvalidInputError(f"no lesion to grade: the {source.replace('_', ' ')} label has no "
                                    f"{self.definition.lesion_label} voxels; draw the lesion and send it as label")
        return lesion.astype(np.uint8), source, segmentation

    def segmented(self, request: dict[str, Any]) -> tuple[sitk.Image, dict[str, Any]]:
        """The few-shot lesion label of the request's image and its JSON; the label's temporary file is removed
        once read (the answer carries the graded lesion's own label)."""
        path, segmentation = self.segment(dict(request))
        try:
            return sitk.ReadImage(path), segmentation
        finally:
            Path(path).unlink(missing_ok=True)

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Grade the lesion of ``request["image"]``; returns the lesion label file and the result JSON."""
        support = self.library.cases(exclude_series=request.get("hope_series_uid"))
        verdicts = Counter(c.verdict for c in support)
        missing = [g for g in GRADES if not verdicts[g]]
        if missing:
            raise ConflictError(
                f"grading needs labelled cases of every verdict; none yet for {', '.join(missing)}. Store a final "
                "label with a tumor segment for such a study and record it with PUT /cases/{study_uid}"
            )
        image = sitk.ReadImage(request["image"])
        mask, source, segmentation = self.lesion(request, image)
        query = self.library.lesion_cases(image, label_like(mask, image), "query", None)[:1]
        served = self.model.get()
        grader = LesionGrader(served.embedder, served.temperature).fit([s for c in support for s in c.slices])
        graded = grader.predict(list(query), top_types=self.top_types)[0]
        result: dict[str, Any] = {
            "grade": graded.grade,
            "probabilities": {k: round(v, 4) for k, v in graded.probabilities.items()},
            "nearest_types": [{"tumor_type": t, "probability": round(p, 4)} for t, p in graded.nearest_types],
            "lesion": {"source": source, **lesion_size(mask, image)},
            "support": {"cases": len(support), "by_verdict": dict(verdicts),
                        "by_type": dict(Counter(c.tumor_type for c in support))},
            "temperature": round(served.temperature, 4),
            "label_names": {self.definition.lesion_label: self.library.lesion_value},
        }
        if segmentation is not None:
            result["segmentation"] = segmentation
        return write_lesion_label(mask, image, self.library.lesion_value), result
