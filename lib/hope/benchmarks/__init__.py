"""Benchmark and research code, used by ``scripts/bench_*.py`` and the tests, never by the server.

* :mod:`~hope.benchmarks.real_proxy`: a real-data proxy for few-shot segmentation (within-volume slice episodes
  on the scans of the shared data folder);
* :mod:`~hope.benchmarks.real_cases`, :mod:`~hope.benchmarks.real_supervised`, :mod:`~hope.benchmarks.real_fewshot`:
  the real shared scans with their labels, and HOPE's supervised and few-shot models measured on them, across
  patients, against trivial baselines (``scripts/bench_real.py``);
* :mod:`~hope.benchmarks.baselines`: supervised baselines the few-shot networks are compared with;
* :mod:`~hope.benchmarks.load`: recording HTTP calls of a load benchmark, and their latency and error summary
  (``scripts/bench_team.py``).
"""
