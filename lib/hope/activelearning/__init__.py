"""Active learning: which series to annotate next, with several annotators at once, and the scores behind it.

* :mod:`~hope.activelearning.leases`: a series handed to an annotator is theirs for a while (the concurrency rule);
* :mod:`~hope.activelearning.scores`: per-series scores per model version, in SQLite;
* :mod:`~hope.activelearning.uncertainty`: pure functions on probability maps;
* :mod:`~hope.activelearning.scoring`: MONAI Label scoring methods and the background worker that fills the store;
* :mod:`~hope.activelearning.strategies`: random, epistemic, tta, rare_first and diverse strategies.
"""

from hope.activelearning.leases import Lease, LeaseBook
from hope.activelearning.scores import ScoreStore, SeriesScores
from hope.activelearning.scoring import (
    ScoringSettings,
    ScoringWorker,
    SuggestionDiceScoring,
    UncertaintyScoring,
    score_all,
    score_volume,
)
from hope.activelearning.strategies import TTA, Diverse, Epistemic, RandomStrategy, RareFirst, select_diverse

__all__ = [
    "TTA",
    "Diverse",
    "Epistemic",
    "Lease",
    "LeaseBook",
    "RandomStrategy",
    "RareFirst",
    "ScoreStore",
    "ScoringSettings",
    "ScoringWorker",
    "SeriesScores",
    "SuggestionDiceScoring",
    "UncertaintyScoring",
    "score_all",
    "score_volume",
    "select_diverse",
]
