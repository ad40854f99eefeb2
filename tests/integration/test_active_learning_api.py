"""Active learning through ``/activelearning/<strategy>`` on a real server with background scoring on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from hope.demo import StoredPhantom, store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import free_port

from ..conftest import config_dir_with
from .helpers import poll

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, spine_labels: dict[str, int]) -> Iterator[tuple[str, list]]:
    """A HOPE server with background scoring on its own Orthanc, and four phantoms stored there.

    Leases last the whole module: the scored-strategy test leases three series (a, b, then a's next), rare_first
    one more, in either order.
    """
    tmp = tmp_path_factory.mktemp("al")
    orthanc = OrthancSettings(data_dir=tmp / "orthanc", http_port=free_port(), dicom_port=free_port())
    orthanc_proc = orthanc_process(orthanc)
    orthanc_proc.start(timeout=60)
    stored = [store_phantom(orthanc.url, generate_neck_ct(s, spine_labels), f"AL-{s}", auth=orthanc.auth)
              for s in (151, 152, 153, 154)]
    port = free_port()
    configs = config_dir_with(tmp, retrain={"enabled": False}, activelearning={"background_scoring": True})
    server = hope_server_process(orthanc, port, tmp / "hope", {"HOPE_CONFIG_DIR": str(configs)})
    server.start(timeout=300)
    yield f"http://127.0.0.1:{port}", stored
    server.stop()
    orthanc_proc.stop()


def _next(hope_url: str, strategy: str, client: str) -> requests.Response:
    return requests.post(f"{hope_url}/activelearning/{strategy}", json={"client_id": client}, timeout=60)


def test_strategies_are_served(stack: tuple[str, list[StoredPhantom]]) -> None:
    hope_url, _ = stack
    strategies = requests.get(f"{hope_url}/info/", timeout=30).json()["strategies"]
    assert {"random", "epistemic", "tta", "rare_first", "diverse"} <= set(strategies)


def test_scored_strategy_ranks_by_background_scores_and_two_annotators_get_different_cases(
    stack: tuple[str, list[StoredPhantom]],
) -> None:
    hope_url, stored = stack
    uids = {s.series_uid for s in stored}
    first = poll(
        lambda: (r := _next(hope_url, "epistemic", "annotator-a").json()) and "no scores" not in r["basis"] and r,
        300,
        "background scores to rank by",
    )
    assert first["id"] in uids
    second = _next(hope_url, "epistemic", "annotator-b").json()
    assert second["id"] in uids and second["id"] != first["id"]
    again = _next(hope_url, "epistemic", "annotator-a").json()
    assert again["id"] != second["id"], "b's case stays leased to b while a asks for another"


def test_rare_first_prefers_likely_tumors(stack: tuple[str, list[StoredPhantom]]) -> None:
    hope_url, stored = stack
    pick = poll(
        lambda: (r := _next(hope_url, "rare_first", "annotator-c").json()) and "no scores" not in r["basis"] and r,
        300,
        "background scores to rank by",
    )
    assert pick["id"] in {s.series_uid for s in stored}
    assert pick["basis"].startswith("rare_first scores of model")
