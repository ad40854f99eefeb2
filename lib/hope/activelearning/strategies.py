"""Active-learning strategies: which series an annotator should label next.

Every strategy follows the lease rule of :mod:`hope.activelearning.leases` (several annotators at once never get the
same series; flagged and finally labelled series are never handed out) and serves several tasks: the task is the
request's ``model`` (or ``task``), by default the first task; an optional ``eligible(task, series_uid)`` keeps
series a task cannot annotate (another modality) out of its picks. Each answers
``{"id": uid, "strategy": name, "score": float | None, "basis": ..., "task": ..., "client_id": ...,
"lease_expires": epoch seconds}`` or ``None`` when nothing can be handed out.

Scored strategies rank by the :class:`~hope.activelearning.scores.ScoreStore`, using the scores of the served model
version, or, while that version is still being scored, of the newest version that has scores for the candidates
(scores of different versions are never mixed in one ranking). **Series without a score rank after every scored
one, in random order; when no candidate has a score, the pick is random** (``"basis": "random (no scores)"``).

With label review on (a ``review``, e.g. :class:`hope.review.ReviewBook`), every strategy first hands the client a
free series of theirs whose label was rejected (``"basis": "your rejected label"``), and never hands out a series
the review withholds from the client (its label awaits review or is approved, or it was rejected recently and is
kept for its annotator).
"""

from __future__ import annotations

import logging
import random
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from hope.activelearning.leases import LeaseBook, candidates, client_of
from hope.activelearning.scores import ScoreStore, SeriesScores
from hope.errors import NotFoundError

logger = logging.getLogger(__name__)

Ranking = list[tuple[str, float | None]]
VersionOf = Callable[[str], str | None]  # task -> served model version
Eligible = Callable[[str, str], bool]  # (task, series UID) -> may the task annotate it (e.g. its modality fits)
REJECTED_BASIS = "your rejected label"
#: How many series the diverse strategy picks greedily per request (each pick costs a pass over the pool); the
#: rest of the pool follows by distance alone, for when concurrent requests took every pick.
DIVERSE_PICKS = 32
#: Rows of candidates compared with every centre at once (bounds the memory of a distance matrix).
_DISTANCE_CHUNK = 1024


class LabelReview(Protocol):
    """What strategies ask the label review (:class:`hope.review.ReviewBook`)."""

    def rejected_for(self, annotator: str) -> list[str]:
        """Series whose latest label, by ``annotator``, was rejected, first to correct first."""

    def withheld_from(self, user: str) -> set[str]:
        """Series that may not be handed to ``user`` now."""


class LeasedStrategy(Strategy):
    """Base class: candidates, task resolution, and leasing the best-ranked free series to the client."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(
        self,
        leases: LeaseBook,
        tasks: Sequence[str],
        seed: int | None = None,
        eligible: Eligible | None = None,
        review: LabelReview | None = None,
    ) -> None:
        super().__init__(self.summary)
        if not tasks:
            raise ValueError("a strategy needs at least one task")
        self.leases = leases
        self.tasks = list(tasks)
        self._rng = random.Random(seed)
        self.eligible = eligible
        self.review = review

    def task_of(self, request: Mapping[str, Any]) -> str:
        """The request's task (``model`` or ``task``), by default the first; 404 for an unknown one."""
        task = request.get("model") or request.get("task") or self.tasks[0]
        if task not in self.tasks:
            raise NotFoundError(f"no task named {task!r} for active learning; known: {', '.join(self.tasks)}")
        return str(task)

    def shuffled(self, uids: Sequence[str]) -> list[str]:
        """``uids`` in random order."""
        out = sorted(uids)
        self._rng.shuffle(out)
        return out

    @abstractmethod
    def rank(self, task: str, pool: list[str], client_id: str, labelled: list[str]) -> tuple[Ranking, str]:
        """Order ``pool`` (free candidates) best first, with scores, and say what the order is based on.

        ``labelled`` lists the series with a final label.
        """

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        """Lease the best-ranked free series to the requesting client; ``None`` when none is free."""
        task = self.task_of(request)
        client = client_of(request)
        pool, labelled = candidates(datastore, self.leases, request)
        if self.eligible is not None:
            pool = [uid for uid in pool if self.eligible(task, uid)]
        rejected: list[str] = []
        if self.review is not None:
            withheld = self.review.withheld_from(client)
            pool = [uid for uid in pool if uid not in withheld]
            rejected = [uid for uid in self.review.rejected_for(client) if uid in pool]
        if not pool:
            return None
        if rejected:
            ranking, basis = [(uid, None) for uid in rejected], REJECTED_BASIS
        else:
            ranking, basis = self.rank(task, pool, client, labelled)
        for uid, score in ranking:  # a series taken by a concurrent request since ranking is skipped
            lease = self.leases.try_acquire(uid, client, task, self.name)
            if lease is not None:
                logger.info(f"{self.name}: {uid} to {client} for {task} (score {score}, {basis})")
                return {
                    "id": uid,
                    "strategy": self.name,
                    "score": score,
                    "basis": basis,
                    "task": task,
                    "client_id": client,
                    "lease_expires": lease.expires,
                }
        return None


class RandomStrategy(LeasedStrategy):
    """Uniformly random among free candidates: the control every other strategy must beat."""

    name = "random"
    summary = "Random unlabelled series"

    def rank(self, task: str, pool: list[str], client_id: str, labelled: list[str]) -> tuple[Ranking, str]:
        """Random order."""
        return [(uid, None) for uid in self.shuffled(pool)], "random"


class ScoredStrategy(LeasedStrategy):
    """Ranks by a value computed from stored scores; ``fields`` must all be present for a series to count."""

    fields: tuple[str, ...] = ()

    def __init__(
        self,
        leases: LeaseBook,
        scores: ScoreStore,
        tasks: Sequence[str],
        version_of: VersionOf,
        seed: int | None = None,
        eligible: Eligible | None = None,
        review: LabelReview | None = None,
    ) -> None:
        super().__init__(leases, tasks, seed, eligible, review)
        self.scores = scores
        self.version_of = version_of

    def table(
        self, task: str, pool: Sequence[str]
    ) -> tuple[dict[str, SeriesScores], dict[str, SeriesScores], str | None]:
        """Scores under one version (the served one, else the newest with any for the pool): the pool's scored
        series, every series scored with the needed fields (for scaling), and the version."""
        served = self.version_of(task)
        versions = self.scores.versions(task)
        order = ([served] if served else []) + [v for v in reversed(versions) if v != served]
        for version in order:
            rows = self.scores.for_version(task, version)
            complete = {uid: r for uid, r in rows.items() if all(getattr(r, f) is not None for f in self.fields)}
            usable = {uid: complete[uid] for uid in pool if uid in complete}
            if usable:
                return usable, complete, version
        return {}, {}, None

    @abstractmethod
    def values(self, table: dict[str, SeriesScores], version_rows: dict[str, SeriesScores]) -> dict[str, float]:
        """Value of each series of ``table``, higher is more worth annotating; ``version_rows`` holds every series
        scored by the same model (labelled and leased ones too), a stable reference for scaling."""

    def rank(self, task: str, pool: list[str], client_id: str, labelled: list[str]) -> tuple[Ranking, str]:
        """Scored series by decreasing value, then the unscored ones at random."""
        table, version_rows, version = self.table(task, pool)
        if not table:
            return [(uid, None) for uid in self.shuffled(pool)], "random (no scores)"
        values = self.values(table, version_rows)
        ranked: Ranking = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        ranked += [(uid, None) for uid in self.shuffled([u for u in pool if u not in values])]
        return ranked, f"{self.name} scores of model {version}"


def _minmax(values: Mapping[str, float], reference: Iterable[float] | None = None) -> dict[str, float]:
    """Scale to ``[0, 1]`` by the range of ``reference`` (default: ``values``); all 0 when the range is empty."""
    ref = list(values.values()) if reference is None else [*reference, *values.values()]
    low, high = min(ref), max(ref)
    span = high - low
    return {k: (v - low) / span if span > 0 else 0.0 for k, v in values.items()}


class Epistemic(ScoredStrategy):
    """Highest MC-dropout entropy first (MONAI Label's epistemic strategy, with leases)."""

    name = "epistemic"
    summary = "Highest MC-dropout entropy first"
    fields = ("epistemic",)

    def values(self, table: dict[str, SeriesScores], version_rows: dict[str, SeriesScores]) -> dict[str, float]:
        """The stored epistemic entropy."""
        return {uid: float(s.epistemic) for uid, s in table.items()}


class TTA(ScoredStrategy):
    """Highest prediction variance under test-time flips first."""

    name = "tta"
    summary = "Highest test-time-augmentation variance first"
    fields = ("tta",)

    def values(self, table: dict[str, SeriesScores], version_rows: dict[str, SeriesScores]) -> dict[str, float]:
        """The stored TTA variance."""
        return {uid: float(s.tta) for uid, s in table.items()}


class RareFirst(ScoredStrategy):
    """Likely tumours first, so rare tumours reach annotators early; uncertainty orders the rest.

    value = ``tumor_weight`` x tumour likelihood + (1 - ``tumor_weight``) x uncertainty scaled to ``[0, 1]`` by its
    range over every series the same model scored, so values do not shift as series are handed out
    (``uncertainty`` names the score: ``epistemic`` or ``tta``).
    """

    name = "rare_first"
    summary = "Likely tumours first, then uncertainty"

    def __init__(
        self,
        leases: LeaseBook,
        scores: ScoreStore,
        tasks: Sequence[str],
        version_of: VersionOf,
        tumor_weight: float = 0.7,
        uncertainty: str = "epistemic",
        seed: int | None = None,
        eligible: Eligible | None = None,
        review: LabelReview | None = None,
    ) -> None:
        if not 0.0 <= tumor_weight <= 1.0 or uncertainty not in ("epistemic", "tta"):
            raise ValueError("tumor_weight must lie in [0, 1] and uncertainty be 'epistemic' or 'tta'")
        super().__init__(leases, scores, tasks, version_of, seed, eligible, review)
        self.tumor_weight = tumor_weight
        self.uncertainty = uncertainty
        self.fields = ("tumour", uncertainty)

    def values(self, table: dict[str, SeriesScores], version_rows: dict[str, SeriesScores]) -> dict[str, float]:
        """Weighted tumour likelihood plus uncertainty scaled by its range over every series of the version."""
        reference = [float(getattr(s, self.uncertainty)) for s in version_rows.values()]
        unc = _minmax({uid: float(getattr(s, self.uncertainty)) for uid, s in table.items()}, reference)
        w = self.tumor_weight
        return {uid: w * float(s.tumour) + (1 - w) * unc[uid] for uid, s in table.items()}


def _nearest_distance(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Distance of each row of ``x`` to its nearest row of ``ref``, in chunks (never an ``n x m x d`` array)."""
    ref_sq = (ref**2).sum(axis=1)
    out = np.empty(len(x))
    for start in range(0, len(x), _DISTANCE_CHUNK):
        chunk = x[start:start + _DISTANCE_CHUNK]
        sq = (chunk**2).sum(axis=1)[:, None] + ref_sq[None] - 2.0 * chunk @ ref.T
        out[start:start + len(chunk)] = np.sqrt(np.maximum(sq.min(axis=1), 0.0))
    return out


def _far_first(features: Mapping[str, Sequence[float]], centres: Sequence[Sequence[float]],
               avoid: Sequence[Sequence[float]], min_distance: float) -> Ranking:
    """``features`` farthest from ``centres`` (their mean without any) first, one pass, no greedy update; those
    closer than ``min_distance`` to a vector of ``avoid`` are left out."""
    uids = sorted(features)
    x = np.asarray([features[u] for u in uids], dtype=np.float64)
    ref = np.asarray(centres, dtype=np.float64).reshape(-1, x.shape[1]) if len(centres) else x.mean(0, keepdims=True)
    distance = _nearest_distance(x, ref)
    allowed = np.ones(len(uids), dtype=bool)
    if len(avoid):
        allowed = _nearest_distance(x, np.asarray(avoid, dtype=np.float64).reshape(-1, x.shape[1])) >= min_distance
    order = np.argsort(-distance, kind="stable")
    return [(uids[i], float(distance[i])) for i in order if allowed[i]]


def select_diverse(
    features: Mapping[str, Sequence[float]],
    k: int,
    centres: Sequence[Sequence[float]] = (),
    avoid: Sequence[Sequence[float]] = (),
    uncertainty: Mapping[str, float] | None = None,
    diversity: float = 1.0,
    min_distance: float = 0.0,
) -> list[tuple[str, float]]:
    """Greedy k-center batch: up to ``k`` series, each far from ``centres`` and from the ones picked before it.

    Each step picks the candidate maximising ``diversity`` x (distance to the nearest centre or earlier pick,
    divided by the largest such distance) + (1 - ``diversity``) x ``uncertainty`` scaled to ``[0, 1]``. Without
    centres, the candidates' mean is the first centre. A candidate closer than ``min_distance`` to a vector of
    ``avoid`` (series leased to others) or to an earlier pick is never picked: no near-duplicates in one batch.
    Returns ``(uid, value)`` in pick order; fewer than ``k`` when candidates run out.
    """
    if not features or k < 1:
        return []
    uids = sorted(features)
    x = np.asarray([features[u] for u in uids], dtype=np.float64)
    ref = np.asarray(centres, dtype=np.float64).reshape(-1, x.shape[1]) if len(centres) else x.mean(0, keepdims=True)
    nearest = _nearest_distance(x, ref)
    allowed = np.ones(len(uids), dtype=bool)
    if len(avoid):
        bad = np.asarray(avoid, dtype=np.float64).reshape(-1, x.shape[1])
        allowed &= _nearest_distance(x, bad) >= min_distance
    unc = _minmax({u: float(uncertainty.get(u, 0.0)) for u in uids}) if uncertainty else dict.fromkeys(uids, 0.0)
    u_arr = np.asarray([unc[u] for u in uids])
    picks: list[tuple[str, float]] = []
    while len(picks) < k and allowed.any():
        top = nearest[allowed].max()
        value = diversity * (nearest / top if top > 0 else np.zeros_like(nearest)) + (1 - diversity) * u_arr
        i = int(np.argmax(np.where(allowed, value, -np.inf)))
        picks.append((uids[i], float(value[i])))
        d = np.linalg.norm(x - x[i], axis=1)
        nearest = np.minimum(nearest, d)
        allowed &= d >= min_distance
        allowed[i] = False
    return picks


class Diverse(LeasedStrategy):
    """Diversity-aware picks: far from what is labelled or being labelled, and never a near-duplicate of a case
    leased to another annotator (feature distance below ``min_distance``).

    Centres are the feature vectors of labelled series and of series leased to others; features are each series'
    newest stored ones (they depend mostly on the image, so versions may mix). ``diversity`` < 1 mixes in the
    ``uncertainty`` score. Candidates without features come last, at random; without any features, the pick is
    random. When every candidate is a near-duplicate of a leased case, nothing is handed out until a lease ends.
    """

    name = "diverse"
    summary = "Far from labelled and leased series, no near-duplicates"

    def __init__(
        self,
        leases: LeaseBook,
        scores: ScoreStore,
        tasks: Sequence[str],
        min_distance: float = 0.1,
        diversity: float = 0.5,
        uncertainty: str = "epistemic",
        seed: int | None = None,
        eligible: Eligible | None = None,
        review: LabelReview | None = None,
    ) -> None:
        if not 0.0 <= diversity <= 1.0 or uncertainty not in ("epistemic", "tta"):
            raise ValueError("diversity must lie in [0, 1] and uncertainty be 'epistemic' or 'tta'")
        super().__init__(leases, tasks, seed, eligible, review)
        self.scores = scores
        self.min_distance = min_distance
        self.diversity = diversity
        self.uncertainty = uncertainty

    def rank(self, task: str, pool: list[str], client_id: str, labelled: list[str]) -> tuple[Ranking, str]:
        """Greedy k-center order over the pool (near-duplicates of others' leases left out), then unscored."""
        rows = self.scores.newest(task)

        def features_of(uids: Iterable[str]) -> dict[str, list[float]]:
            return {uid: rows[uid].features for uid in uids if uid in rows and rows[uid].features}

        feats = features_of(pool)
        if not feats:
            return [(uid, None) for uid in self.shuffled(pool)], "random (no scores)"
        others = list(features_of(self.leases.held_by_others(client_id)).values())
        centres = list(features_of(labelled).values()) + others
        unc = {uid: float(v) for uid in feats if (v := getattr(rows[uid], self.uncertainty)) is not None}
        diversity = self.diversity if unc else 1.0
        ranked: Ranking = list(
            select_diverse(feats, min(len(feats), DIVERSE_PICKS), centres, others, unc or None, diversity,
                           self.min_distance)
        )
        if len(feats) > DIVERSE_PICKS:
            picked = {uid for uid, _ in ranked}
            ranked += _far_first({u: f for u, f in feats.items() if u not in picked}, centres, others,
                                 self.min_distance)
        ranked += [(uid, None) for uid in self.shuffled([u for u in pool if u not in feats])]
        return ranked, "diversity over feature vectors"
