"""Few-shot, meta-learned segmentation and grading of rare spine tumour types: the code the server runs.

Import from the modules; this package imports nothing eagerly.

Core:

* :mod:`~hope.fewshot.episodes`: labelled cases, support sets (:func:`~hope.fewshot.episodes.build_support_set`)
  and few-shot episodes;
* :mod:`~hope.fewshot.encoder` and :mod:`~hope.fewshot.prototypes`: the encoder and the prototype segmenter
  (:meth:`~hope.fewshot.prototypes.PrototypeSegmenter.segment`);
* :mod:`~hope.fewshot.adapt`: fast adaptation to one support set before segmenting;
* :mod:`~hope.fewshot.grading`: lesion embeddings and the grader
  (``LesionGrader(embedder, temperature).fit(support).predict(cases)``);
* :mod:`~hope.fewshot.ssl` and :mod:`~hope.fewshot.meta_train`: self-supervised pretraining on unlabelled images
  and episodic meta-training on labelled types (used by the few-shot trainer and ``scripts/pretrain_fewshot.py``).

Serving (the ``fewshot_tumor`` and ``tumor_grade`` tasks):

* :mod:`~hope.fewshot.config`: task definitions;
* :mod:`~hope.fewshot.checkpoint`: weights;
* :mod:`~hope.fewshot.volumes`: 3D series to 2D slice stacks and back;
* :mod:`~hope.fewshot.support_library`: support sets from case records and final SEGs;
* :mod:`~hope.fewshot.volume_inference`: a whole stack against several types;
* :mod:`~hope.fewshot.anatomy_features`: what the synthesis-trained supervised network of a series' modality sees
  (vertebra, disc, cord, canal, tumour), joined to the encoder's features so that matching follows anatomy across
  contrasts.

Phantom tumour types and CT stacks through them are in :mod:`hope.phantoms.tumor_types` and
:mod:`hope.phantoms.tumor_stacks`; the benchmark's real-data proxy and supervised baselines in
:mod:`hope.benchmarks`.
"""
