"""Run the HOPE server: ``monailabel start_server`` on ``apps/hope`` against a DICOMweb store."""

from __future__ import annotations

import sys
from pathlib import Path

from hope.config import REPO_ROOT
from hope.services.process import ManagedProcess

APP_DIR = REPO_ROOT / "apps" / "hope"


def hope_server_process(
    studies: str, port: int, data_dir: Path, extra_env: dict[str, str] | None = None
) -> ManagedProcess:
    """A :class:`ManagedProcess` for the HOPE server on 127.0.0.1:``port``.

    Models go to ``<data_dir>/models`` and the DICOM cache to ``<data_dir>/cache``.
    """
    env = {
        "HOPE_DATA_DIR": str(data_dir),
        "HOPE_MODEL_DIR": str(data_dir / "models"),
        "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(data_dir / "cache"),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    return ManagedProcess(
        name="HOPE server",
        command=[
            sys.executable, "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", studies,
            "--host", "127.0.0.1", "--port", str(port),
        ],
        log_path=data_dir / "hope.log",
        ready_url=f"http://127.0.0.1:{port}/info/",
        env=env,
    )
