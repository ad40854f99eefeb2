"""Benchmark: a team of annotators on one HOPE server with sign-in on, and what it does to everyone else's latency.

Starts its own Orthanc, OpenID Connect provider (the demo users) and HOPE server (sign-in on, background scoring
and automatic retraining off) on free loopback ports in a temporary folder, and stores ``annotators x rounds``
phantom neck CTs in Orthanc. Then:

* idle baseline: a user (``uma``) polls ``GET /info/`` on the idle server (a few unrecorded warm-up calls first);
* load: ``annotators`` threads sign in through HOPE (``POST /auth/token`` as annotator1..N, as Slicer does) and
  each runs ``rounds`` rounds of ``POST /activelearning/random`` -> ``POST /infer/spine_ct`` (a 503 with
  ``Retry-After`` from the inference pool is retried after it) -> ``PUT /datastore/label?tag=final`` with the
  phantom's own label on the inferred label's grid, while ``uma`` keeps polling ``GET /info/``;
* afterwards, every SEG series in Orthanc (QIDO ``Modality=SEG``) is matched with the series it references: a
  label answered 200 whose series has no SEG is lost.

Reported per route: requests, outcomes (ok, refused 503, 4xx, 5xx, no answer) and p50/p95 latency of the ok
answers; ``GET /info/`` p95 under load against idle (same run); labels saved, found and lost. Targets, printed as
pass/fail (the script exits 0 either way): ``GET /info/`` p95 < 200 ms while inferences run, no label lost, no 5xx.
There is no HOPE plugin in this Orthanc, so no suggestion is precomputed: every inference is computed on demand.

    .venv/bin/python scripts/bench_team.py [--quick] [--annotators 8] [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import requests
import SimpleITK as sitk
import yaml
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from hope.benchmarks.load import NO_ANSWER, Call, CallLog, label_audit, route_stats
from hope.config import DEFAULT_CONFIG_DIR, load_task
from hope.demo import load_demo
from hope.dicom.seg import seg_referenced_series_uid
from hope.phantoms import PhantomSpec
from hope.processes.hope_server import hope_server_process
from hope.processes.oidc_provider import OidcProviderSettings, demo_password, oidc_provider_process
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import free_port

TASK = "spine_ct"
STRATEGY = "random"
POLLER = "uma"  # a demo user with the user role only
TOKEN, NEXT, INFER, SAVE = "POST /auth/token", f"POST /activelearning/{STRATEGY}", f"POST /infer/{TASK}", \
    "PUT /datastore/label"
INFO, INFO_IDLE = "GET /info/", "GET /info/ (idle)"
ROUTES = (TOKEN, NEXT, INFER, SAVE, INFO, INFO_IDLE)
INFO_P95_TARGET_MS = 200.0
#: ``server.yaml`` sections of the benchmarked server besides sign-in: no background work competes for the CPU.
QUIET = {"activelearning": {"background_scoring": False}, "retrain": {"enabled": False}}


def summarize(calls: Iterable[Call], saved: Iterable[str], seg_references: Iterable[str],
              settings: dict[str, Any], duration_s: float, client_errors: list[str]) -> dict[str, Any]:
    """The benchmark's results (the JSON written by ``--json``) from the recorded calls and the label audit.

    Args:
        calls: every request made (``GET /info/`` on the idle server as :data:`INFO_IDLE`).
        saved: the series of each ``PUT /datastore/label`` answered 200.
        seg_references: the series each SEG series found in the store afterwards references.
        settings: the run's settings, reported as they are.
        duration_s: wall time of the load phase.
        client_errors: what stopped a simulated client early (its reason), if anything did.
    """
    routes = route_stats(calls)
    info_p95 = routes.get(INFO, {}).get("p95_ms")
    idle_p95 = routes.get(INFO_IDLE, {}).get("p95_ms")
    audit = label_audit(saved, seg_references)
    totals = {key: sum(stats[key] for stats in routes.values())
              for key in ("errors_4xx", "errors_5xx", "refused_503", "no_answer")}
    targets = {
        f"GET /info/ p95 < {INFO_P95_TARGET_MS:g} ms while inferences run":
            info_p95 is not None and info_p95 < INFO_P95_TARGET_MS,
        "zero labels lost": audit["labels_lost"] == 0,
        "zero 5xx": totals["errors_5xx"] == 0,
    }
    return {
        "info_p95_ms": info_p95,
        "info_idle_p95_ms": idle_p95,
        "info_ratio": info_p95 / idle_p95 if info_p95 is not None and idle_p95 else None,
        **audit,
        **totals,
        "targets": targets,
        "routes": routes,
        "client_errors": client_errors,
        "settings": settings,
        "duration_s": duration_s,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }


def print_table(result: dict[str, Any]) -> None:
    """The results as a plain-text table, and the targets as pass/fail."""
    settings = result["settings"]
    print(f"\n{settings['annotators']} annotators x {settings['rounds']} rounds on {settings['phantoms']} phantoms "
          f"{'x'.join(map(str, settings['phantom_shape']))}, sign-in on, {result['machine']['cpu_count']} CPUs, "
          f"load phase {result['duration_s']:.0f} s")
    print(f"{'route':<30}{'requests':>9}{'ok':>6}{'refused 503':>13}{'4xx':>5}{'5xx':>5}{'no answer':>11}"
          f"{'p50 ms':>9}{'p95 ms':>9}")
    for route in sorted(result["routes"], key=lambda r: ROUTES.index(r) if r in ROUTES else len(ROUTES)):
        s = result["routes"][route]
        p50, p95 = (f"{s[k]:.1f}" if s[k] is not None else "-" for k in ("p50_ms", "p95_ms"))
        print(f"{route:<30}{s['requests']:>9}{s['ok']:>6}{s['refused_503']:>13}{s['errors_4xx']:>5}"
              f"{s['errors_5xx']:>5}{s['no_answer']:>11}{p50:>9}{p95:>9}")
    print(f"labels saved (200) {result['labels_saved']}, found as SEG {result['labels_found']}, "
          f"lost {result['labels_lost']}; saved again {result['saved_again']}, extra SEGs {result['extra_segs']}, "
          f"SEGs of unsaved series {result['unexpected_segs']}")
    if result["info_ratio"] is not None:
        print(f"GET /info/ p95 under load / idle: {result['info_p95_ms']:.1f} / {result['info_idle_p95_ms']:.1f} ms "
              f"= {result['info_ratio']:.1f}x")
    for error in result["client_errors"]:
        print(f"client stopped early: {error}")
    for target, passed in result["targets"].items():
        print(f"[{'PASS' if passed else 'FAIL'}] {target}")


def label_on_grid(label_zyx: np.ndarray, inferred: bytes) -> bytes:
    """``label_zyx`` as NIfTI bytes on the grid of ``inferred`` (the NIfTI answer of ``/infer``, on the series)."""
    with tempfile.TemporaryDirectory(prefix="hope-bench-label-") as tmp:
        answer = Path(tmp) / "inferred.nii.gz"
        answer.write_bytes(inferred)
        label = sitk.GetImageFromArray(label_zyx.astype(np.uint8))
        label.CopyInformation(sitk.ReadImage(str(answer)))
        path = Path(tmp) / "label.nii.gz"
        sitk.WriteImage(label, str(path))
        return path.read_bytes()


def seg_references(client: DICOMwebClient) -> list[str]:
    """The series each SEG series in the store references (QIDO ``Modality=SEG``, then each one's metadata)."""
    references = []
    for item in client.search_for_series(search_filters={"Modality": "SEG"}, get_remaining=True):
        seg = Dataset.from_json(item)
        metadata = client.retrieve_series_metadata(seg.StudyInstanceUID, seg.SeriesInstanceUID)
        first = Dataset.from_json(metadata[0], lambda _tag, _vr, _uri: None)  # pixel data is not needed
        references.append(seg_referenced_series_uid(first))
    return references


class Team:
    """Simulated clients of one HOPE server; every request is timed into :attr:`log`."""

    def __init__(self, url: str, labels: dict[str, np.ndarray], rounds: int) -> None:
        self.url = url
        self.labels = labels  # ground truth per SeriesInstanceUID
        self.rounds = rounds
        self.log = CallLog()
        self.saved: list[str] = []
        self.client_errors: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._started = time.perf_counter()

    def timed(self, session: requests.Session, method: str, route: str, path: str,
              **kwargs: Any) -> tuple[requests.Response | None, float]:
        """Send the request, record it as ``route``; the answer (``None`` if none came) and its seconds."""
        start = time.perf_counter()
        try:
            response = session.request(method, f"{self.url}{path}", timeout=kwargs.pop("timeout", 120), **kwargs)
        except requests.RequestException:
            seconds = time.perf_counter() - start
            self.log.add(Call(route, NO_ANSWER, seconds))
            return None, seconds
        seconds = time.perf_counter() - start
        self.log.add(Call(route, response.status_code, seconds, "Retry-After" in response.headers))
        return response, seconds

    def signed_in(self, username: str) -> requests.Session:
        """A session of ``username``, signed in through ``POST /auth/token``; raises if refused."""
        session = requests.Session()
        answer, _ = self.timed(session, "POST", TOKEN, "/auth/token",
                               data={"username": username, "password": demo_password(username)})
        if answer is None or answer.status_code != 200:
            raise RuntimeError(f"{username} could not sign in: {answer.status_code if answer else 'no answer'}")
        session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return session

    def poll_info(self, session: requests.Session, route: str, interval_s: float,
                  until: Callable[[int], bool]) -> None:
        """``GET /info/`` every ``interval_s`` s, recorded as ``route``, until ``until(calls made)``."""
        made = 0
        while not until(made):
            self.timed(session, "GET", route, "/info/", timeout=60)
            made += 1
            time.sleep(interval_s)

    def annotate(self, username: str) -> None:
        """One annotator's rounds; what stops it early goes to :attr:`client_errors`."""
        try:
            session = self.signed_in(username)
            for number in range(1, self.rounds + 1):
                if self.stop.is_set() or not self._round(session, username, number):
                    return
        except Exception as error:  # a benchmark client: report why it stopped, let the others go on
            with self._lock:
                self.client_errors.append(f"{username}: {error!r}")

    def _round(self, session: requests.Session, username: str, number: int) -> bool:
        """Next sample, infer, save; print one line. False when no sample was handed out."""
        answer, next_s = self.timed(session, "POST", NEXT, f"/activelearning/{STRATEGY}", json={"client_id": username})
        uid = answer.json().get("id") if answer is not None and answer.ok else None
        if not uid:
            self._report(username, number, f"no sample ({answer.status_code if answer else 'no answer'})")
            return False
        inferred, infer_s, refused = self._infer(session, uid)
        if inferred is None:
            self._report(username, number, f"…{uid[-10:]} inference failed after {refused} refusals")
            return True
        answer, save_s = self.timed(
            session, "PUT", SAVE, "/datastore/label", params={"image": uid, "tag": "final"},
            files={"label": ("label.nii.gz", label_on_grid(self.labels[uid], inferred), "application/octet-stream")},
            data={"params": "{}"}, timeout=300,
        )
        status = answer.status_code if answer is not None else "no answer"
        if answer is not None and answer.status_code == 200:
            with self._lock:
                self.saved.append(uid)
        self._report(username, number, f"…{uid[-10:]} next {next_s:.2f} s, infer {infer_s:.2f} s "
                                       f"({refused} refused), save {save_s:.2f} s -> {status}")
        return True

    def _infer(self, session: requests.Session, uid: str) -> tuple[bytes | None, float, int]:
        """The inferred label (``None`` on failure), seconds of the last attempt, and how many 503s came first."""
        refused = 0
        while not self.stop.is_set():
            answer, seconds = self.timed(session, "POST", INFER, f"/infer/{TASK}",
                                         params={"image": uid, "output": "image"},
                                         files={"params": (None, "{}")}, timeout=900)
            if answer is not None and answer.status_code == 503 and "Retry-After" in answer.headers:
                refused += 1
                self.stop.wait(float(answer.headers["Retry-After"]))
                continue
            return (answer.content if answer is not None and answer.ok else None), seconds, refused
        return None, 0.0, refused

    def _report(self, username: str, number: int, what: str) -> None:
        with self._lock:
            print(f"[{time.perf_counter() - self._started:6.1f} s] {username} round {number}/{self.rounds}: {what}",
                  flush=True)


def config_dir(tmp: Path, issuer: str) -> Path:
    """A copy of ``configs/`` in ``tmp`` whose ``server.yaml`` has sign-in on (trusting ``issuer``) and is quiet."""
    dest = tmp / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, dest)
    server = yaml.safe_load((dest / "server.yaml").read_text())
    for section, values in {**QUIET, "auth": {"enabled": True, "issuer": issuer}}.items():
        server.setdefault(section, {}).update(values)
    (dest / "server.yaml").write_text(yaml.safe_dump(server))
    return dest


def run(annotators: int, rounds: int, idle_samples: int, poll_interval_s: float) -> dict[str, Any]:
    """Start the servers, run the team, stop everything (also on Ctrl-C or an error); return the results."""
    spec = PhantomSpec()
    n_phantoms = annotators * rounds
    settings = {"annotators": annotators, "rounds": rounds, "phantoms": n_phantoms, "phantom_shape": list(spec.shape),
                "strategy": STRATEGY, "idle_samples": idle_samples, "poll_interval_s": poll_interval_s,
                "server_yaml": {**QUIET, "auth": {"enabled": True}}}
    with tempfile.TemporaryDirectory(prefix="hope-bench-team-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        hope_port = free_port()  # first: the provider must know HOPE's callback
        provider_settings = OidcProviderSettings(
            port=free_port(), log_dir=work,
            redirect_uris=tuple(f"http://{host}:{hope_port}/auth/callback" for host in ("127.0.0.1", "localhost")),
        )
        provider = oidc_provider_process(provider_settings)
        provider.start(timeout=60)
        stack.callback(provider.stop)
        orthanc = OrthancSettings(data_dir=work / "orthanc", http_port=free_port(), dicom_port=free_port(),
                                  stable_age=1)
        orthanc_proc = orthanc_process(orthanc)
        orthanc_proc.start(timeout=60)
        stack.callback(orthanc_proc.stop)
        stored = load_demo(orthanc.url, load_task(TASK).labels, range(7000, 7000 + n_phantoms), spec,
                           auth=orthanc.auth)
        env = {"HOPE_CONFIG_DIR": str(config_dir(work, provider_settings.issuer))}
        server = hope_server_process(orthanc, hope_port, work / "hope", env)
        print("starting the HOPE server ...", flush=True)
        server.start(timeout=300)
        stack.callback(server.stop)

        team = Team(f"http://127.0.0.1:{hope_port}", {s.series_uid: s.phantom.label for s in stored}, rounds)
        stack.callback(team.stop.set)  # on Ctrl-C or an error, the client threads end too
        poller = team.signed_in(POLLER)
        team.poll_info(poller, "warm-up", 0.0, lambda made: made >= 3)
        print(f"idle baseline: {idle_samples} x GET /info/ ...", flush=True)
        team.poll_info(poller, INFO_IDLE, poll_interval_s, lambda made: made >= idle_samples)
        done = threading.Event()
        polling = threading.Thread(target=team.poll_info, args=(poller, INFO, poll_interval_s,
                                                                lambda _: done.is_set()), daemon=True)
        workers = [threading.Thread(target=team.annotate, args=(f"annotator{i}",), daemon=True)
                   for i in range(1, annotators + 1)]
        start = time.perf_counter()
        polling.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        duration_s = time.perf_counter() - start
        done.set()
        polling.join()
        calls = [call for call in team.log.calls() if call.route != "warm-up"]
        references = seg_references(orthanc.dicomweb_client())
    return summarize(calls, team.saved, references, settings, duration_s, team.client_errors)


def main() -> None:
    """Command-line entry point: print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds and 50 idle samples (under 5 min on 2 CPUs)")
    parser.add_argument("--annotators", type=int, default=8, help="simulated annotators, at most 8 (default 8)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per annotator (default 5)")
    parser.add_argument("--idle-samples", type=int, default=100, help="GET /info/ calls on the idle server")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="seconds between GET /info/ calls")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    args = parser.parse_args()
    if not 1 <= args.annotators <= 8:
        parser.error("--annotators: the demo users are annotator1..annotator8")
    rounds, idle = (2, 50) if args.quick else (args.rounds, args.idle_samples)
    result = run(args.annotators, rounds, idle, args.poll_interval)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
