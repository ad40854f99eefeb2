"""Keeps every model version of a task and decides which one serves.

Layout under ``<model_dir>/<task>/versions/``::

    v0001/model.pt      the weights of that version
    v0001/meta.json     when, who, metrics (Dice per label), training data (SEG UIDs), parameters, network profile
    serving.json        {"pinned": "v0003"} or {"pinned": null} (the best version serves)

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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hope import fileio
from hope.errors import InvalidInputError, NotFoundError

_VERSION = re.compile(r"^v(\d{4,})$")


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

    @property
    def score(self) -> float:
        """The metric that ranks versions: validation mean Dice, else training mean Dice, else -1."""
        for key in ("val_mean_dice", "train_mean_dice"):
            if key in self.metrics:
                return float(self.metrics[key])
        return -1.0


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
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------------ reading
    def versions(self) -> list[ModelVersion]:
        """Every kept version, oldest first."""
        found = []
        for meta in sorted(self.root.glob("v*/meta.json")):
            found.append(ModelVersion(**json.loads(meta.read_text())))
        return found

    def get(self, version: str) -> ModelVersion:
        """One version; 404 when it is not kept."""
        meta = self.root / version / "meta.json"
        if not _VERSION.match(version) or not meta.exists():
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise NotFoundError(f"{self.task} has no model version {version!r}; kept versions: {known}")
        return ModelVersion(**json.loads(meta.read_text()))

    def servable(self, version: ModelVersion) -> bool:
        """Whether ``version`` may serve under this registry's profile."""
        if self.stamp is None:
            return True
        if version.signature:
            return version.signature == self.stamp.signature
        return self.stamp.name == version.profile

    def pinned(self) -> str | None:
        """The pinned version, or ``None`` when the best version serves."""
        serving = self.root / "serving.json"
        return json.loads(serving.read_text()).get("pinned") if serving.exists() else None

    def best(self) -> ModelVersion | None:
        """The servable version with the highest score (the newest among equals)."""
        versions = [v for v in self.versions() if self.servable(v)]
        return max(reversed(versions), key=lambda v: v.score) if versions else None

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
    ) -> ModelVersion:
        """Keep ``weights`` as a new version, then serve whichever version should serve."""
        with self._lock:
            numbers = [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
            version = f"v{max(numbers, default=0) + 1:04d}"
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{version}."))
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
            )
            (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=2, default=str))
            tmp.rename(self.root / version)
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
        if pinned is not None and not (self.root / pinned / "model.pt").exists():
            raise InvalidInputError(f"cannot pin {pinned}: its weights are missing")
        fileio.write_json(self.root / "serving.json", {"pinned": pinned}, indent=None)

    def apply(self) -> None:
        """Make the served file hold the serving version's weights (atomic; no-op when it already holds them,
        byte for byte: a served file changed behind the registry's back is restored)."""
        with self._lock:
            chosen = self.serving()
            if chosen is None:
                return
            source = self.root / chosen.version / "model.pt"
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
