"""``fewshot_tumor``: segment a new case against the labelled cases of a tumour type, without retraining.

``POST /infer/fewshot_tumor?image=<series>`` with params:

* ``tumor_type``: a type of ``configs/cases.yaml``; without it (or ``"all"``) the case is segmented against every
  type that has labelled cases, and the best-matching type is reported;
* ``adapt_steps``: first-order fine-tuning steps of the encoder on the named type's support set before segmenting
  (0 by default, at most ``inference.max_adapt_steps``).

With the task's ``anatomy:`` section, the query and every support slice carry anatomy features (the supervised
network of their modality, :mod:`hope.fewshot.anatomy_features`), joined to the encoder's in the matching.

The support set of a type is every series with a final label of a study recorded as that type (see
:class:`~hope.fewshot.support_library.SupportLibrary`); the query series itself is never its own support. The
answer is a lesion label on the image's grid (the store's ``tumor`` value) and JSON: the type asked for, the match
of each type (mean lesion probability inside the lesion found) and the best match, the support cases, and the
lesion's size.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import SimpleITK as sitk
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from hope.cases.vocabulary import CaseVocabulary, normalise_key
from hope.errors import ConflictError, InvalidInputError
from hope.fewshot.adapt import adapt
from hope.fewshot.config import FewShotDefinition
from hope.fewshot.episodes import SupportSet, build_support_set
from hope.fewshot.prototypes import PrototypeSegmenter
from hope.fewshot.support_library import SupportCase, SupportLibrary
from hope.fewshot.volume_inference import lesion_probabilities
from hope.fewshot.volumes import largest_component, probability_on_image, to_slices
from hope.infers.fewshot_common import ReloadingModel, int_param, lesion_size, write_lesion_label

ALL_TYPES = "all"


class FewShotTumorInfer(InferTask):
    """The ``fewshot_tumor`` infer task (a MONAI Label :class:`InferTask`)."""

    def __init__(
        self,
        definition: FewShotDefinition,
        model: ReloadingModel[PrototypeSegmenter],
        library: SupportLibrary,
        vocabulary: CaseVocabulary,
        modality_of: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels={definition.lesion_label: library.lesion_value},
            dimension=3,
            description=definition.description,
            config={"tumor_type": ALL_TYPES, "adapt_steps": 0},
        )
        self.definition = definition
        self.model = model
        self.library = library
        self.vocabulary = vocabulary
        self.modality_of = modality_of
        settings = definition.inference
        self.threshold = settings.threshold
        self.keep_largest = settings.keep_largest_component
        self.batch = settings.batch_slices
        self.max_adapt_steps = settings.max_adapt_steps
        self.adapt_lr = settings.adapt_lr

    def is_valid(self) -> bool:
        """Whether the served weights exist."""
        return self.model.path.exists()

    def named_type(self, request: dict[str, Any]) -> str | None:
        """The request's ``tumor_type`` as a vocabulary key, ``None`` for every type; 422 for an unknown one."""
        raw = request.get("tumor_type")
        if raw in (None, "", ALL_TYPES):
            return None
        key = normalise_key(str(raw))
        if key not in self.vocabulary.tumor_types:
            raise InvalidInputError(f"unknown tumor_type {raw!r}; known types: {', '.join(self.vocabulary.tumor_types)}"
                                    f" (or {ALL_TYPES!r})")
        return key

    def query_modality(self, request: dict[str, Any]) -> str:
        """The modality of the request's series (asked of the store), or the task's only modality; a 422 when
        neither tells it."""
        series = request.get("hope_series_uid")
        modality = self.modality_of(series) if series and self.modality_of is not None else None
        if modality is None and len(self.definition.modalities) == 1:
            modality = self.definition.modalities[0]
        if modality is None:
            raise InvalidInputError(f"cannot tell the modality of {request.get('image')!r}: segment a series of the "
                                    f"store ({', '.join(self.definition.modalities)})")
        return modality

    def support_by_type(self, named: str | None, exclude_series: str | None) -> dict[str, list[SupportCase]]:
        """The support cases to segment against, by type; 409 with what to do when there are none."""
        by_type: dict[str, list[SupportCase]] = defaultdict(list)
        for case in self.library.cases(exclude_series=exclude_series):
            by_type[case.tumor_type].append(case)
        how = ("store a final label (SEG) with a tumor segment for a series of the study and record the study's "
               "pathology with PUT /cases/{study_uid}")
        if not by_type:
            raise ConflictError(f"no labelled tumour cases yet; {how}")
        if named is None:
            return dict(by_type)
        if named not in by_type:
            raise ConflictError(f"no labelled case of tumor_type {named!r} yet ({how}); types with labelled cases: "
                                f"{', '.join(sorted(by_type))}")
        return {named: by_type[named]}

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Segment ``request["image"]``; returns the lesion label file and the result JSON."""
        named = self.named_type(request)
        steps = int_param(request, "adapt_steps", 0, self.max_adapt_steps)
        if steps and named is None:
            raise InvalidInputError("adapt_steps needs a tumor_type: adaptation fine-tunes on one type's cases")
        cases = self.support_by_type(named, request.get("hope_series_uid"))
        supports = {t: build_support_set([s for c in group for s in c.slices]) for t, group in cases.items()}
        segmenter = self.model.get()
        if steps:
            segmenter = self._adapted(segmenter, supports[named], steps)  # type: ignore[index]
        image = sitk.ReadImage(request["image"])
        stack = to_slices(image, self.definition.slices)
        anatomy = None
        if self.library.anatomy is not None:
            anatomy = self.library.anatomy.on_stack(image, self.query_modality(request), stack)
        probabilities = lesion_probabilities(segmenter, supports, stack.pixels, self.batch, anatomy)
        combined = np.max(np.stack(list(probabilities.values())), axis=0)
        mask = probability_on_image(combined, stack, image) > self.threshold
        if self.keep_largest:
            mask = largest_component(mask)
        on_stack = combined > self.threshold
        match = {t: float(p[on_stack].mean()) if on_stack.any() else 0.0 for t, p in probabilities.items()}
        result = {
            "tumor_type": named or ALL_TYPES,
            # The type whose support agrees most with the lesion found (a segmentation cue; tumor_grade's
            # nearest_types is the lesion-level comparison).
            "best_match": max(match, key=match.get) if on_stack.any() else None,  # type: ignore[arg-type]
            "per_type": {t: {"support_cases": len(cases[t]), "match": round(m, 4)} for t, m in match.items()},
            "support": [c.summary() for group in cases.values() for c in group],
            "lesion": lesion_size(mask, image),
            "adapt_steps": steps,
            "threshold": self.threshold,
            "label_names": {self.definition.lesion_label: self.library.lesion_value},
        }
        return write_lesion_label(mask, image, self.library.lesion_value), result

    def _adapted(self, segmenter: PrototypeSegmenter, support: SupportSet, steps: int) -> PrototypeSegmenter:
        """A copy of ``segmenter`` after ``steps`` first-order steps on ``support`` (the served one is untouched)."""
        tuned = copy.deepcopy(segmenter)
        tuned.load_state_dict(adapt(segmenter, support, steps=steps, lr=self.adapt_lr))
        return tuned.eval()

