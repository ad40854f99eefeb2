"""HOPE's whole loop with Orthanc's index and files in PostgreSQL (Debian's ``orthanc-postgresql`` plugins).

A real PostgreSQL server (Debian's ``postgresql``, started by ``hope.processes.postgres`` in a temporary folder),
a real Orthanc whose index and storage area live in it, and a real HOPE server against that Orthanc:
store -> list -> infer -> final label as DICOM SEG -> train, and the rows really are in PostgreSQL.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dicomweb_client import DICOMwebClient

from hope.config import load_task
from hope.demo import StoredPhantom, store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes import orthanc as orthanc_service
from hope.processes import postgres as postgres_service
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings, PostgresIndex, orthanc_process, render_config
from hope.processes.postgres import PostgresServer
from hope.processes.process import free_port

from .helpers import (
    model_checksum,
    nifti_bytes,
    poll,
    put_label,
    read_nifti_bytes,
    seg_series,
    series_volume,
    wait_for_training,
)

pytestmark = pytest.mark.slow

SEEDS = (101, 102)
# Orthanc's resource types in its database schema.
PATIENT, STUDY, SERIES, INSTANCE = 0, 1, 2, 3


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on a free port (in a tempfile.mkdtemp folder the ``postgres`` user can reach)."""
    folder = Path(tempfile.mkdtemp(prefix="hope-pg-"))
    server = PostgresServer(folder, database="orthanc_test", user="orthanc_test", password="s3cret'pw")
    try:
        server.start(timeout=120)
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_orthanc(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancSettings]:
    """Orthanc with DICOMweb and GDCM whose index and files are in ``postgres``."""
    settings = OrthancSettings(
        data_dir=tmp_path_factory.mktemp("pg-orthanc"),
        http_port=free_port(),
        dicom_port=free_port(),
        stable_age=1,
        postgresql=postgres.index_settings(storage=True),
    )
    process = orthanc_process(settings)
    process.start(timeout=120)
    yield settings
    process.stop()


@pytest.fixture(scope="module")
def pg_hope_url(pg_orthanc: OrthancSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real HOPE server against the PostgreSQL-backed Orthanc."""
    port = free_port()
    process = hope_server_process(pg_orthanc, port, tmp_path_factory.mktemp("pg-hope") / "hope")
    process.start(timeout=300)
    yield f"http://127.0.0.1:{port}"
    process.stop()


@pytest.fixture(scope="module")
def pg_client(pg_orthanc: OrthancSettings) -> DICOMwebClient:
    """A dicomweb-client on the PostgreSQL-backed Orthanc, logged in."""
    return pg_orthanc.dicomweb_client()


@pytest.fixture(scope="module")
def pg_phantoms(pg_orthanc: OrthancSettings) -> list[StoredPhantom]:
    """Two phantom CT series stored in the PostgreSQL-backed Orthanc."""
    labels = load_task("spine_ct").labels
    return [
        store_phantom(pg_orthanc.url, generate_neck_ct(seed, labels), patient_id=f"PG-{seed}", auth=pg_orthanc.auth)
        for seed in SEEDS
    ]


def _resource_counts(postgres: PostgresServer) -> dict[int, int]:
    rows = postgres.psql("SELECT resourcetype, count(*) FROM resources GROUP BY resourcetype")
    return {int(t): int(n) for t, n in (line.split("|") for line in rows.splitlines() if line)}


@pytest.fixture(scope="module")
def stored_counts(
    postgres: PostgresServer, pg_orthanc: OrthancSettings, pg_phantoms: list[StoredPhantom]
) -> tuple[dict[int, int], dict[str, Any]]:
    """PostgreSQL's resource rows and Orthanc's ``/statistics`` once the phantoms are stored, before any SEG."""
    stats = requests.get(f"{pg_orthanc.url}/statistics", auth=pg_orthanc.auth, timeout=30).json()
    return _resource_counts(postgres), stats


@pytest.fixture(scope="module")
def final_labels(
    postgres: PostgresServer,
    pg_hope_url: str,
    pg_client: DICOMwebClient,
    pg_phantoms: list[StoredPhantom],
    stored_counts: tuple[dict[int, int], dict[str, Any]],
) -> int:
    """Both phantoms' final labels saved through HOPE (after ``stored_counts``); the series rows there were before."""
    series_before = _resource_counts(postgres)[SERIES]
    for stored in pg_phantoms:
        image = series_volume(pg_client, stored.study_uid, stored.series_uid)
        response = put_label(pg_hope_url, stored.series_uid, nifti_bytes(stored.phantom.label, image))
        assert response.status_code == 200, response.text
    return series_before


# -- configuration (no servers) ----------------------------------------------------------------------------------


def test_render_config_loads_the_postgresql_plugins(tmp_path: Path) -> None:
    """The index plugin always, the storage plugin only when asked; the section has what plugin 4.0 reads."""
    index = PostgresIndex(host="db", port=5433, database="pacs", user="u", password="p")
    config = render_config(OrthancSettings(data_dir=tmp_path, postgresql=index))
    assert str(orthanc_service.POSTGRESQL_INDEX_PLUGIN) in config["Plugins"]
    assert str(orthanc_service.POSTGRESQL_STORAGE_PLUGIN) not in config["Plugins"]
    section = config["PostgreSQL"]
    assert section["EnableIndex"] is True and section["EnableStorage"] is False and section["Lock"] is False
    assert (section["Host"], section["Port"], section["Database"], section["Username"], section["Password"]) == (
        "db", 5433, "pacs", "u", "p"
    )
    with_storage = render_config(OrthancSettings(data_dir=tmp_path, postgresql=PostgresIndex(storage=True)))
    assert str(orthanc_service.POSTGRESQL_STORAGE_PLUGIN) in with_storage["Plugins"]
    assert with_storage["PostgreSQL"]["EnableStorage"] is True

    sqlite = render_config(OrthancSettings(data_dir=tmp_path))
    assert "PostgreSQL" not in sqlite
    assert not any("PostgreSQL" in p for p in sqlite["Plugins"])


def test_missing_plugin_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Debian's orthanc-postgresql the error names the package."""
    monkeypatch.setattr(orthanc_service, "POSTGRESQL_INDEX_PLUGIN", tmp_path / "libOrthancPostgreSQLIndex.so")
    with pytest.raises(FileNotFoundError, match="apt-get install orthanc-postgresql"):
        render_config(OrthancSettings(data_dir=tmp_path, postgresql=PostgresIndex()))


def test_missing_postgresql_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Debian's postgresql server binaries the error names the package."""
    monkeypatch.setattr(postgres_service, "POSTGRES_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install postgresql"):
        PostgresServer(tmp_path / "pg")


def test_postgres_url_is_parsed() -> None:
    """``postgresql://user:password@host:port/db``, %-encoded parts decoded, default port 5432."""
    index = PostgresIndex.from_url("postgresql://hope:p%40ss%3Aword@db.local:6543/orthanc_db", storage=True)
    assert index == PostgresIndex("db.local", 6543, "orthanc_db", "hope", "p@ss:word", storage=True)
    assert PostgresIndex.from_url("postgres://u:p@h/d").port == 5432
    with pytest.raises(ValueError, match="postgresql://"):
        PostgresIndex.from_url("mysql://u:p@h/d")


# -- the loop against real servers -------------------------------------------------------------------------------


def test_orthanc_reports_the_postgresql_backends(pg_orthanc: OrthancSettings) -> None:
    """Orthanc's /system names the PostgreSQL index and storage plugins as its database and storage area."""
    system = requests.get(f"{pg_orthanc.url}/system", auth=pg_orthanc.auth, timeout=30).json()
    assert "PostgreSQLIndex" in (system.get("DatabaseBackendPlugin") or ""), system
    assert "PostgreSQLStorage" in (system.get("StorageAreaPlugin") or ""), system


def test_stored_series_are_indexed_in_postgresql(
    postgres: PostgresServer,
    pg_orthanc: OrthancSettings,
    pg_hope_url: str,
    pg_phantoms: list[StoredPhantom],
    stored_counts: tuple[dict[int, int], dict[str, Any]],
) -> None:
    """Both series are listed by HOPE; Orthanc's resources and files are rows in PostgreSQL, not SQLite or files."""
    expected = {p.series_uid for p in pg_phantoms}

    def listed() -> dict | None:
        response = requests.get(f"{pg_hope_url}/datastore/", params={"output": "all"}, timeout=60)
        response.raise_for_status()
        objects = response.json()["objects"]
        return objects if expected <= set(objects) else None

    objects = poll(listed, timeout=60, what="the phantom series to be listed")
    assert {objects[uid]["image"]["info"]["Modality"] for uid in expected} == {"CT"}

    counts, stats = stored_counts
    assert counts[PATIENT] == stats["CountPatients"] == len(SEEDS)
    assert counts[SERIES] == stats["CountSeries"] == len(SEEDS)
    assert counts[INSTANCE] == stats["CountInstances"] == sum(p.phantom.image.shape[0] for p in pg_phantoms)
    assert int(postgres.psql("SELECT count(*) FROM storagearea")) >= counts[INSTANCE]
    storage = pg_orthanc.data_dir / "storage"
    assert not (storage / "index").exists(), "Orthanc wrote a SQLite index"
    assert not [p for p in storage.rglob("*") if p.is_file()], "Orthanc wrote DICOM files to disk"


def test_infer_returns_label_on_series_grid(
    pg_hope_url: str, pg_client: DICOMwebClient, pg_phantoms: list[StoredPhantom]
) -> None:
    """``POST /infer/spine_ct`` reads the series through the PostgreSQL-backed Orthanc and answers its grid."""
    stored = pg_phantoms[0]
    response = requests.post(
        f"{pg_hope_url}/infer/spine_ct", params={"image": stored.series_uid, "output": "image"}, timeout=600
    )
    assert response.status_code == 200, response.text
    image = series_volume(pg_client, stored.study_uid, stored.series_uid)
    assert read_nifti_bytes(response.content).GetSize() == image.GetSize()


def test_final_labels_become_segs_in_postgresql(
    postgres: PostgresServer, pg_client: DICOMwebClient, pg_phantoms: list[StoredPhantom], final_labels: int
) -> None:
    """Each final label is a SEG in Orthanc referencing its series, and a new series row in PostgreSQL."""
    series_before = final_labels
    segs = seg_series(pg_client)
    referenced = set()
    for seg in segs:
        metadata = pg_client.retrieve_series_metadata(seg.StudyInstanceUID, seg.SeriesInstanceUID)[0]
        referenced.add(metadata["00081115"]["Value"][0]["0020000E"]["Value"][0])
    assert referenced == {p.series_uid for p in pg_phantoms}
    assert _resource_counts(postgres)[SERIES] == series_before + len(pg_phantoms)
    modalities = postgres.psql(
        "SELECT value FROM maindicomtags WHERE taggroup = 8 AND tagelement = 96"  # (0008,0060) Modality
    ).splitlines()
    assert modalities.count("SEG") == len(pg_phantoms)


def test_training_on_labels_read_back_publishes_a_new_model(pg_hope_url: str, final_labels: int) -> None:
    """One epoch on the final labels read back from the PostgreSQL-backed Orthanc changes the served model."""
    before = model_checksum(pg_hope_url, "spine_ct")
    response = requests.post(f"{pg_hope_url}/train/spine_ct", json={"max_epochs": 1, "val_split": 0.0}, timeout=60)
    assert response.status_code == 200, response.text
    task = wait_for_training(pg_hope_url, timeout=900)
    assert task["status"] == "DONE", "\n".join(task.get("details", []))
    assert model_checksum(pg_hope_url, "spine_ct") != before
