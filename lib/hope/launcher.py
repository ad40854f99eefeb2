"""``python -m hope.launcher``: start Orthanc and the HOPE server, load demo data once, stop both on Ctrl-C.

Both are supervised (:class:`hope.processes.supervisor.Supervisor`): one that exits is restarted with back-off
(1 s, 2 s, 4 s ... at most 60 s), and each exit and restart is logged with its exit code.

Environment: ``HOPE_DATA_DIR`` (./data), ``HOPE_PORT`` (8000), ``HOPE_ORTHANC_HTTP_PORT`` (8042),
``HOPE_ORTHANC_DICOM_PORT`` (4242), ``HOPE_HOST`` (127.0.0.1; another address needs sign-in on),
``HOPE_DEMO`` (1; 0 skips the demo phantoms), ``HOPE_SIGN_IN`` (unset; ``demo`` also starts HOPE's OpenID Connect
provider on ``HOPE_OIDC_PORT`` (8080) with the demo users of ``configs/auth/demo-users.json``, and serves with
sign-in and label review on),
``HOPE_ORTHANC_POSTGRES_URL`` (unset: SQLite; ``postgresql://user:password@host:port/database`` puts Orthanc's index
in that PostgreSQL database), ``HOPE_ORTHANC_POSTGRES_STORAGE`` (0; 1 puts the DICOM files there too).

Who may reach Orthanc comes from ``orthanc:`` of ``configs/server.yaml``. Orthanc's HTTP credentials and the key
its plugin signs store events with are generated at first start into ``HOPE_DATA_DIR/secrets`` (mode 0600).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from types import FrameType

from hope.auth.binding import check_bind
from hope.config import ConfigError, ServerSettings, load_server_settings, load_task
from hope.demo import load_demo, load_mr_demo
from hope.fewshot.config import load_fewshot_task
from hope.fewshot_demo import load_fewshot_demo
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings, PostgresIndex, orthanc_process
from hope.processes.sign_in_demo import sign_in_demo
from hope.processes.supervisor import Supervisor

logger = logging.getLogger("hope.launcher")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit():
        raise SystemExit(f"{name}={value!r} is not a port number")
    return int(value)


def _postgres_index() -> PostgresIndex | None:
    url = os.environ.get("HOPE_ORTHANC_POSTGRES_URL", "").strip()
    if not url:
        return None
    try:
        return PostgresIndex.from_url(url, storage=os.environ.get("HOPE_ORTHANC_POSTGRES_STORAGE", "0") == "1")
    except ValueError as exc:
        raise SystemExit(f"HOPE_ORTHANC_POSTGRES_URL: {exc}") from exc


def main() -> None:
    """Run both services in the foreground, restarting either when it exits, until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data_dir = Path(os.environ.get("HOPE_DATA_DIR", "data")).resolve()
    port = _env_int("HOPE_PORT", 8000)
    provider, server_env = None, {}
    if os.environ.get("HOPE_SIGN_IN", "") == "demo":
        provider, configs = sign_in_demo(data_dir, port, _env_int("HOPE_OIDC_PORT", 8080))
        os.environ["HOPE_CONFIG_DIR"] = server_env["HOPE_CONFIG_DIR"] = str(configs)
    settings = load_server_settings()
    orthanc_settings = OrthancSettings(
        data_dir=data_dir / "orthanc",
        http_port=_env_int("HOPE_ORTHANC_HTTP_PORT", 8042),
        dicom_port=_env_int("HOPE_ORTHANC_DICOM_PORT", 4242),
        hope_url=f"http://127.0.0.1:{port}",
        postgresql=_postgres_index(),
        access=settings.orthanc,
        secrets_dir=data_dir / "secrets",
    )
    orthanc = orthanc_process(orthanc_settings)
    host = os.environ.get("HOPE_HOST", "127.0.0.1").strip() or "127.0.0.1"
    try:
        check_bind(host, settings.auth)
    except ConfigError as exc:
        raise SystemExit(f"HOPE_HOST: {exc}") from exc
    server = hope_server_process(orthanc_settings, port, data_dir, server_env, host=host)
    supervisor = Supervisor()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if provider is not None:
            logger.info("starting the OpenID Connect provider (demo users: configs/auth/demo-users.json) ...")
            supervisor.start(provider, timeout=60)
        logger.info(f"starting Orthanc (data in {orthanc_settings.data_dir}) ...")
        supervisor.start(orthanc, timeout=120)
        _load_demo_once(data_dir, settings, orthanc_settings)
        logger.info("starting the HOPE server ...")
        supervisor.start(server, timeout=300)
        _load_fewshot_demo_once(data_dir, settings, orthanc_settings, f"http://127.0.0.1:{port}")
        _print_urls(port, orthanc_settings, settings)
        supervisor.run()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the stop short: the services run in their own sessions and would stay up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        logger.info("stopping ...")
        server.stop()
        orthanc.stop()
        if provider is not None:
            provider.stop()
        logger.info("stopped.")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGINT and SIGTERM interrupt whatever the launcher waits on (a start, a restart's back-off) to stop."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _load_demo_once(data_dir: Path, settings: ServerSettings, orthanc: OrthancSettings) -> None:
    marker = data_dir / ".demo-loaded"
    if os.environ.get("HOPE_DEMO", "1") == "0" or marker.exists():
        return
    demo = settings.demo
    for name in settings.tasks:
        task = load_task(name)
        if "CT" in task.modalities:
            load_demo(orthanc.url, task.labels, range(demo.first_seed, demo.first_seed + demo.cases),
                      auth=orthanc.auth)
        if "MR" in task.modalities:
            load_mr_demo(orthanc.url, task.labels, range(demo.mr_first_seed, demo.mr_first_seed + demo.mr_cases),
                         auth=orthanc.auth)
    marker.write_text("demo phantoms stored\n")


def _load_fewshot_demo_once(data_dir: Path, settings: ServerSettings, orthanc: OrthancSettings,
                            hope_url: str) -> None:
    """Rare-tumour phantoms, labelled and recorded through HOPE, so the few-shot tasks have support sets."""
    marker = data_dir / ".fewshot-demo-loaded"
    if os.environ.get("HOPE_DEMO", "1") == "0" or marker.exists() or "fewshot_tumor" not in settings.fewshot_tasks:
        return
    if settings.auth.enabled:
        logger.info("sign-in is on: the rare-tumour demo (case records written through HOPE) is not loaded")
        return
    fewshot = load_fewshot_task("fewshot_tumor")
    load_fewshot_demo(
        orthanc.url,
        hope_url,
        settings.demo.fewshot,
        load_task(settings.tasks[0]).labels[fewshot.lesion_label],
        fewshot.slices,
        settings.demo.fewshot_first_seed,
        auth=orthanc.auth,
    )
    marker.write_text("rare-tumour demo phantoms stored, labelled and recorded\n")


def _print_urls(port: int, orthanc: OrthancSettings, settings: ServerSettings) -> None:
    base = f"http://127.0.0.1:{port}"
    senders = ", ".join(f"{s.aet} at {s.host}" for s in orthanc.access.dicom_senders) or (
        "no sender (list them under orthanc.dicom_senders of configs/server.yaml)")
    logger.info(
        "\nHOPE is running. Press Ctrl-C to stop.\n"
        f"  OHIF viewer        {base}/ohif/\n"
        f"  API docs           {base}/docs\n"
        f"  Orthanc Explorer   {orthanc.url}/app/explorer.html (user and password in {orthanc.credentials_file})\n"
        f"  DICOMweb           {orthanc.dicomweb_url}\n"
        f"  DICOM (C-STORE)    AET HOPE on port {orthanc.dicom_port}, from {senders}\n"
        f"  3D Slicer          MONAI Label module, server {base}\n"
        + (f"  Sign-in            {settings.auth.issuer} (demo users and passwords: configs/auth/demo-users.json)\n"
           if settings.auth.enabled else "  Sign-in            off (loopback only)\n")
    )


if __name__ == "__main__":
    main()
