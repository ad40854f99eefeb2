"""Keeps every model version of a task and decides which one serves.

Layout under ``<model_dir>/<task>/versions/``::

    v0001/model.pt      the weights of that version
    v0001/meta.json     when, who, metrics (Dice per label), training data (SEG UIDs), parameters, network profile,
                        the training run that made it, and its promotion decision (:class:`Promotion`)
    serving.json        {"pinned": "v0003"} or {"pinned": null} (the best version serves)

and the task's frozen validation set with its scores under ``<model_dir>/<task>/validation/``
(:mod:`hope.models.validation_set`, :mod:`hope.models.promotion`).

Unless a version is pinned, the best version serves: the newest one its promotion decision let serve. A version
without a decision (a task's first version, a few-shot version, one kept before decisions existed) counts as
promoted. A decision never overrides a pin.

The served file ``<model_dir>/<task>.pt`` is only ever replaced atomically (:mod:`hope.fileio`); MONAI Label's infer
task reloads it when its modification time changes, so switching versions needs no restart.

A registry made with a :class:`ProfileStamp` (a supervised task's network profile in effect) records that profile on
every version it keeps and serves only versions whose profile signature (network, spacing, intensity window) is the
same as the stamp's: weights of another architecture would not load, and weights learnt at another spacing would
segment the wrong scale. Versions of other profiles stay kept and listed; they serve again under their profile.
Versions kept before profiles existed have no signature and count as the ``cpu`` profile's.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hope import fileio
from hope.errors import InvalidInputError, NotFoundError

_VERSION = re.compile(r"^v(\d{4,})$")

#: The key of a training request that names its run; a version records it (:attr:`ModelVersion.run`) so that the
#: run's status can show what became of the version it kept.
RUN_KEY = "hope_run"


@dataclass(frozen=True)
class FrozenSetRef:
    """The frozen validation set a decision was made on: how many cases, and which
    (:func:`~hope.models.validation_set.fingerprint`)."""

    cases: int
    fingerprint: str


@dataclass(frozen=True)
class Promotion:
    """Whether a newly kept version may serve, and why; kept with the version (:mod:`hope.models.promotion`)."""

    promoted: bool
    reason: str  # in plain words, naming both scores when versions were compared
    frozen_set: FrozenSetRef
    scores: dict[str, float] = field(default_factory=dict)  # mean Dice on the frozen set, by version
    margin: float = 0.0
    dice: dict[str, dict[str, float]] = field(default_factory=dict)  # Dice per structure of the set, by version

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Promotion:
        """A decision as :func:`dataclasses.asdict` wrote it."""
        return cls(**{**raw, "frozen_set": FrozenSetRef(**raw["frozen_set"])})


@dataclass
class ModelVersion:
    """Metadata of one kept model version."""

    version: str
    created: str
    started_by: str
    metrics: dict[str, float] = field(default_factory=dict)
    training_data: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    profile: str = "cpu"  # the network profile it was trained with (versions older than profiles: cpu)
    signature: str = ""  # that profile's NetworkProfile.signature ("" for versions older than profiles)
    run: str = ""  # the training request's RUN_KEY ("" when not started through HOPE's training route)
    promotion: Promotion | None = None  # None: kept without a decision; it counts as promoted

    @classmethod
    def load(cls, meta: Path) -> ModelVersion:
        """The version described by ``meta`` (a ``meta.json``)."""
        raw = json.loads(meta.read_text())
        decision = raw.get("promotion")
        return cls(**{**raw, "promotion": Promotion.from_dict(decision) if decision else None})

    @property
    def promoted(self) -> bool:
        """Whether it may serve unpinned: its decision promoted it, or it has none."""
        return self.promotion is None or self.promotion.promoted

    @property
    def score(self) -> float | None:
        """Its mean Dice on the frozen validation set when its decision compared it, else ``None``."""
        return self.promotion.scores.get(self.version) if self.promotion is not None else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ProfileStamp:
    """The network profile a registry records on new versions and serves versions of."""

    name: str
    signature: str


class ModelRegistry:
    """All versions of one task's model, and the choice of the serving one."""

    def __init__(self, task: str, model_dir: Path, stamp: ProfileStamp | None = None) -> None:
        self.task = task
        self.stamp = stamp  # None: every version may serve (tasks without network profiles)
        self.root = model_dir / task / "versions"
        self.served_path = model_dir / f"{task}.pt"
        self.validation_dir = model_dir / task / "validation"
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------------ reading
    def versions(self) -> list[ModelVersion]:
        """Every kept version, oldest first."""
        return [ModelVersion.load(meta) for meta in sorted(self.root.glob("v*/meta.json"))]

    def get(self, version: str) -> ModelVersion:
        """One version; 404 when it is not kept."""
        meta = self.root / version / "meta.json"
        if not _VERSION.match(version) or not meta.exists():
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise NotFoundError(f"{self.task} has no model version {version!r}; kept versions: {known}")
        return ModelVersion.load(meta)

    def servable(self, version: ModelVersion) -> bool:
        """Whether ``version`` may serve under this registry's profile."""
        if self.stamp is None:
            return True
        if version.signature:
            return version.signature == self.stamp.signature
        return self.stamp.name == version.profile

    def weights(self, version: str) -> Path:
        """The weights file of a kept version."""
        return self.root / version / "model.pt"

    def pinned(self) -> str | None:
        """The pinned version, or ``None`` when the best version serves."""
        serving = self.root / "serving.json"
        return json.loads(serving.read_text()).get("pinned") if serving.exists() else None

    def best(self) -> ModelVersion | None:
        """The version that serves when none is pinned: the newest servable one that was promoted."""
        return next((v for v in reversed(self.versions()) if self.servable(v) and v.promoted), None)

    def serving(self) -> ModelVersion | None:
        """The version that serves now: the pinned one while it is servable, else the best."""
        pinned = self.pinned()
        chosen = self.get(pinned) if pinned else None
        return chosen if chosen is not None and self.servable(chosen) else self.best()

    # ------------------------------------------------------------------------------------------------ writing
    def add(
        self,
        weights: Path,
        *,
        started_by: str,
        metrics: dict[str, float],
        training_data: list[str],
        params: dict[str, Any],
        note: str = "",
        run: str = "",
        decide: Callable[[str, Path], Promotion] | None = None,
    ) -> ModelVersion:
        """Keep ``weights`` as a new version, then serve whichever version should serve.

        Args:
            weights: the checkpoint to keep (copied).
            started_by: who started the run that made it.
            metrics: the run's own metrics (Dice per label on its training crops and validation split).
            training_data: :func:`~hope.models.validation_set.label_ref` of every label it was trained on.
            params: the run's training parameters.
            note: a line for admins.
            run: the training request's :data:`RUN_KEY`.
            decide: called with the new version's name and weights before it can serve; its decision is kept with
                the version. ``None``: no decision, the version counts as promoted.
        """
        with self._lock:
            numbers = [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
            version = f"v{max(numbers, default=0) + 1:04d}"
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{version}."))
            try:
                shutil.copyfile(weights, tmp / "model.pt")
                meta = ModelVersion(
                    version=version,
                    created=datetime.now(UTC).isoformat(timespec="seconds"),
                    started_by=started_by,
                    metrics={k: float(v) for k, v in metrics.items()},
                    training_data=list(training_data),
                    params=params,
                    note=note,
                    **({"profile": self.stamp.name, "signature": self.stamp.signature} if self.stamp else {}),
                    run=run,
                    promotion=decide(version, tmp / "model.pt") if decide is not None else None,
                )
                (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=2, default=str))
                tmp.rename(self.root / version)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        self.apply()
        return meta

    def pin(self, version: str) -> ModelVersion:
        """Serve ``version`` until unpinned (this is also how an admin rolls back)."""
        chosen = self.get(version)
        if self.stamp is not None and not self.servable(chosen):
            raise InvalidInputError(
                f"cannot pin {version}: it was trained with the {chosen.profile} network profile, and this server runs "
                f"the {self.stamp.name} profile (another network or spacing); pin a {self.stamp.name} version, or "
                f"restart with HOPE_NETWORK_PROFILE={chosen.profile}"
            )
        self._write_serving(version)
        self.apply()
        return chosen

    def unpin(self) -> ModelVersion | None:
        """Let the best version serve again."""
        self._write_serving(None)
        self.apply()
        return self.serving()

    def _write_serving(self, pinned: str | None) -> None:
        if pinned is not None and not self.weights(pinned).exists():
            raise InvalidInputError(f"cannot pin {pinned}: its weights are missing")
        fileio.write_json(self.root / "serving.json", {"pinned": pinned}, indent=None)

    def apply(self) -> None:
        """Make the served file hold the serving version's weights (atomic; no-op when it already holds them,
        byte for byte: a served file changed behind the registry's back is restored)."""
        with self._lock:
            chosen = self.serving()
            if chosen is None:
                return
            source = self.weights(chosen.version)
            marker = self.root / "served_version"
            if (self.served_path.exists() and marker.exists() and marker.read_text() == chosen.version
                    and _sha256(self.served_path) == _sha256(source)):
                return
            fileio.copy(source, self.served_path)
            fileio.write_text(marker, chosen.version)

    def served_version(self) -> str | None:
        """The version whose weights are in the served file."""
        marker = self.root / "served_version"
        return marker.read_text() if marker.exists() else None
