"""What the store's listing is indexed by: each SEG's image series, and each listed series by UID.

A store the size of a hospital's holds thousands of series and SEGs. Two costs grew with it:

* **A SEG's image series** is in its ReferencedSeriesSequence, which QIDO-RS does not answer (Orthanc 1.10 returns
  main DICOM tags only), so it takes one metadata request per SEG series: 2,000 SEGs were 2,000 requests on the
  first listing after every start. :class:`SegReferences` resolves a SEG once, from a few threads, and keeps the
  answer in a JSON file of the cache folder: a SEG series does not change what it references (HOPE's SEG UIDs are
  derived from their content), so after a restart only SEGs new to the store are asked about.
* **Every lookup by UID** (a series' modality, its final label) scanned the whole listing, and strategies looked up
  every candidate: quadratic in the store's size. :class:`StoreIndex` is built once per listing, with the series
  by UID, the image series, and each image's SEGs newest first.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from hope import fileio
from hope.errors import StoreError

logger = logging.getLogger(__name__)

#: Tags of a QIDO-RS series result (DICOM JSON keys).
_UID, _STUDY, _MODALITY, _DATE, _TIME = "0020000E", "0020000D", "00080060", "00080021", "00080031"
_SOP_INSTANCE_UID, _REFERENCED_SERIES = "00080018", "00081115"
#: Threads resolving new SEGs at once (each asks the store for one SEG's metadata).
RESOLVE_THREADS = 4

Metadata = Callable[[str, str], list[dict[str, Any]]]  # (study UID, series UID) -> WADO-RS metadata (DICOM JSON)


def _first(item: Mapping[str, Any], tag: str) -> str:
    """The first value of ``tag`` in a DICOM JSON object, as a string ("" when absent)."""
    values = (item.get(tag) or {}).get("Value") or []
    return str(values[0]) if values and values[0] is not None else ""


@dataclass(frozen=True)
class SeriesRecord:
    """One series as listed by QIDO-RS."""

    uid: str
    study_uid: str
    modality: str
    date: str
    time: str

    @classmethod
    def from_qido(cls, item: Mapping[str, Any]) -> SeriesRecord:
        """Parse one QIDO-RS JSON result (read directly: pydicom's ``Dataset.from_json`` costs 10x more, and a
        listing parses every series of the store)."""
        return cls(uid=_first(item, _UID), study_uid=_first(item, _STUDY), modality=_first(item, _MODALITY).upper(),
                   date=_first(item, _DATE), time=_first(item, _TIME))

    @property
    def recency(self) -> tuple[str, str, str]:
        """Sort key: later series date and time first, UID to break ties."""
        return (self.date, self.time, self.uid)


@dataclass(frozen=True)
class SegRef:
    """The image series a SEG series segments, and the SEG's SOP Instance UID (HOPE's SEGs hold one instance)."""

    image_uid: str
    sop_uid: str


class SegReferences:
    """SEG series UID -> :class:`SegRef`, resolved once per SEG series and kept in ``path`` (JSON).

    Args:
        path: the file the resolved references are kept in (rewritten atomically when new ones are resolved).
        metadata: fetches a series' WADO-RS metadata; called from several threads at once.
        skipped: SEG series UID -> why it is not used, filled here for a SEG that references no single series (the
            datastore's ``skipped_labels``); a skipped SEG is asked about again at the next listing.
        threads: how many SEGs are asked about at once.
    """

    def __init__(self, path: Path, metadata: Metadata, skipped: dict[str, str],
                 threads: int = RESOLVE_THREADS) -> None:
        self._path = path
        self._metadata = metadata
        self._skipped = skipped
        self._threads = threads
        self._lock = threading.Lock()
        self._refs: dict[str, SegRef] = self._load()

    def _load(self) -> dict[str, SegRef]:
        try:
            raw = json.loads(self._path.read_text())
            return {uid: SegRef(str(ref[0]), str(ref[1])) for uid, ref in raw.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            logger.warning(f"{self._path} is not a SEG reference file ({exc}); every SEG is asked about again")
            return {}

    def get(self, seg_uid: str) -> SegRef | None:
        """The resolved reference of ``seg_uid``, or ``None`` (not resolved, or skipped)."""
        return self._refs.get(seg_uid)

    def add(self, seg_uid: str, image_uid: str, sop_uid: str) -> None:
        """Record a SEG whose reference is known without asking (one HOPE just stored); kept at the next save."""
        with self._lock:
            self._refs[seg_uid] = SegRef(image_uid, sop_uid)

    def segs_of(self, image_uid: str) -> list[str]:
        """Every SEG series known to reference ``image_uid``."""
        with self._lock:
            return [uid for uid, ref in self._refs.items() if ref.image_uid == image_uid]

    def resolve(self, segs: Iterable[SeriesRecord]) -> None:
        """Ask the store about every SEG of ``segs`` not resolved yet; keep the file to the SEGs of ``segs``.

        Raises:
            StoreError: the store did not answer a metadata request.
        """
        listed = list(segs)
        unknown = [seg for seg in listed if seg.uid not in self._refs]
        if unknown:
            logger.info(f"resolving the image series of {len(unknown)} SEG series")
            with ThreadPoolExecutor(min(self._threads, len(unknown)), thread_name_prefix="hope-seg") as pool:
                for seg, ref in zip(unknown, pool.map(self._fetch, unknown), strict=True):
                    if ref is not None:
                        with self._lock:
                            self._refs[seg.uid] = ref
                        self._skipped.pop(seg.uid, None)
        listed_uids = {seg.uid for seg in listed}
        with self._lock:
            kept = {uid: [ref.image_uid, ref.sop_uid] for uid, ref in self._refs.items() if uid in listed_uids}
        if unknown or len(kept) != len(self._refs):
            fileio.write_json(self._path, kept)

    def _fetch(self, seg: SeriesRecord) -> SegRef | None:
        try:
            meta = self._metadata(seg.study_uid, seg.uid)
        except requests.RequestException as exc:
            raise StoreError(f"cannot read the metadata of SEG series {seg.uid} from the DICOM store: {exc}") from exc
        try:
            if not meta:
                raise ValueError("the store lists the series but holds no instance of it")
            series = {_first(item, _UID) for item in (meta[0].get(_REFERENCED_SERIES) or {}).get("Value") or []}
            series.discard("")
            if len(series) != 1:
                raise ValueError(f"SEG {_first(meta[0], _SOP_INSTANCE_UID) or '?'} references {len(series)} series in "
                                 "its ReferencedSeriesSequence, expected exactly one")
        except ValueError as exc:
            self._skipped[seg.uid] = str(exc)
            logger.warning(f"SEG {seg.uid} ignored: {exc}")
            return None
        return SegRef(series.pop(), _first(meta[0], _SOP_INSTANCE_UID))


class StoreIndex:
    """One listing of the store, indexed: series by UID, image series in listing order, each image's SEGs.

    The SEGs are resolved (:meth:`SegReferences.resolve`, new SEGs only) on the first question about labels, not
    when the listing is made: a store that cannot answer a SEG's metadata still lists its images.

    Args:
        records: the series as listed.
        segs: the SEG references of the store.
        image_modalities: the modalities listed as images.
    """

    def __init__(self, records: list[SeriesRecord], segs: SegReferences, image_modalities: Collection[str]) -> None:
        self.records = records
        self._segs = segs
        self._modalities = frozenset(image_modalities)
        self.by_uid: dict[str, SeriesRecord] = {}
        for record in records:
            self.by_uid.setdefault(record.uid, record)
        self.images = [r.uid for r in records if r.modality in self._modalities]
        self._lock = threading.Lock()
        self._labelled: dict[str, list[tuple[SeriesRecord, SegRef]]] | None = None

    def with_series(self, *records: SeriesRecord) -> StoreIndex:
        """This listing with ``records`` in place of the series of the same UIDs (added when not listed)."""
        uids = {r.uid for r in records}
        return StoreIndex([*(r for r in self.records if r.uid not in uids), *records], self._segs, self._modalities)

    def _segs_by_image(self) -> dict[str, list[tuple[SeriesRecord, SegRef]]]:
        """Each listed image's SEG series with their references, newest first (resolved once per listing).

        Raises:
            StoreError: the store did not answer a SEG's metadata.
        """
        with self._lock:
            if self._labelled is None:
                seg_records = [r for r in self.records if r.modality == "SEG"]
                self._segs.resolve(seg_records)
                images = set(self.images)
                labelled: dict[str, list[tuple[SeriesRecord, SegRef]]] = {}
                for seg in seg_records:
                    ref = self._segs.get(seg.uid)
                    if ref is not None and ref.image_uid in images:
                        labelled.setdefault(ref.image_uid, []).append((seg, ref))
                for found in labelled.values():
                    found.sort(key=lambda pair: pair[0].recency, reverse=True)
                self._labelled = labelled
            return self._labelled

    def final_labels(self, counts: Callable[[str], bool] | None = None) -> dict[str, SeriesRecord]:
        """The newest SEG series of each image series whose SOP Instance UID ``counts`` accepts (``None``: any).

        Raises:
            StoreError: the store did not answer a SEG's metadata.
        """
        finals = {}
        for image, found in self._segs_by_image().items():
            for seg, ref in found:
                if counts is None or counts(ref.sop_uid):
                    finals[image] = seg
                    break
        return finals
