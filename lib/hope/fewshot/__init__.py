"""Few-shot, meta-learned segmentation and grading of rare spine tumour types.

What the app calls:

* support set from labelled cases: :func:`build_support_set` (cases grouped with :func:`group_by_type`);
* segmenting a query given a support set: :meth:`PrototypeSegmenter.segment` (optionally after :func:`adapt`,
  then :func:`segment_adapted`);
* grading a lesion given support lesions: ``LesionGrader(embedder, temperature).fit(support).predict(cases)``;
* self-supervised pretraining on unlabelled images: :func:`pretrain_ssl`; meta-training on labelled base types:
  :func:`meta_train_segmenter`, :func:`meta_train_grader` and :func:`calibrate_grader`.

Phantom tumour types for training and benchmarks are in :mod:`hope.fewshot.phantoms`; supervised baselines in
:mod:`hope.fewshot.baselines`.

Serving (the ``fewshot_tumor`` and ``tumor_grade`` tasks): task definitions in :mod:`~hope.fewshot.config`, weights
in :mod:`~hope.fewshot.checkpoint`, 3D series to 2D slice stacks and back in :mod:`~hope.fewshot.volumes`, support
sets from case records and final SEGs in :mod:`~hope.fewshot.support_library`, a whole stack against several types
in :mod:`~hope.fewshot.volume_inference`, and phantom CT stacks to store in :mod:`~hope.fewshot.phantom_volumes`.
"""

from hope.fewshot.adapt import adapt, segment_adapted
from hope.fewshot.encoder import ConvEncoder
from hope.fewshot.episodes import (
    GRADES,
    ClassificationEpisode,
    LabelledCase,
    SegmentationEpisode,
    SupportSet,
    build_support_set,
    group_by_type,
    sample_grading_episode,
    sample_segmentation_episode,
    sample_type_episode,
)
from hope.fewshot.grading import GradeResult, LesionEmbedder, LesionGrader, crop_lesion, fit_temperature
from hope.fewshot.meta_train import (
    TrainConfig,
    calibrate_grader,
    meta_train_grader,
    meta_train_segmenter,
    train_episodic,
)
from hope.fewshot.phantoms import (
    BASE_TYPES,
    HELDOUT_TYPES,
    TUMOUR_TYPES,
    TumourType,
    generate_cases,
    generate_unlabelled,
    render_case,
)
from hope.fewshot.prototypes import PrototypeSegmenter, local_prototypes, masked_average_pooling
from hope.fewshot.ssl import SuperpixelEpisodes, pretrain_ssl, superpixels

__all__ = [
    "BASE_TYPES",
    "GRADES",
    "HELDOUT_TYPES",
    "TUMOUR_TYPES",
    "ClassificationEpisode",
    "ConvEncoder",
    "GradeResult",
    "LabelledCase",
    "LesionEmbedder",
    "LesionGrader",
    "PrototypeSegmenter",
    "SegmentationEpisode",
    "SuperpixelEpisodes",
    "SupportSet",
    "TrainConfig",
    "TumourType",
    "adapt",
    "build_support_set",
    "calibrate_grader",
    "crop_lesion",
    "fit_temperature",
    "generate_cases",
    "generate_unlabelled",
    "group_by_type",
    "local_prototypes",
    "masked_average_pooling",
    "meta_train_grader",
    "meta_train_segmenter",
    "pretrain_ssl",
    "render_case",
    "sample_grading_episode",
    "sample_segmentation_episode",
    "sample_type_episode",
    "segment_adapted",
    "superpixels",
    "train_episodic",
]
