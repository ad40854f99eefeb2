"""Server settings (``configs/server.yaml``): the tasks served, the store, retraining, sync, active learning, demo,
HTTP access to HOPE, sign-in and review (:mod:`hope.config.auth`), and who may reach Orthanc."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hope.config.auth import AuthSettings, ReviewSettings, parse_auth, parse_review
from hope.config.files import ConfigError, config_dir, flag, number, read_yaml, require, section


@dataclass(frozen=True)
class DatastoreSettings:
    """How HOPE talks to the DICOMweb store."""

    modalities: tuple[str, ...] = ("CT", "MR", "CR", "DX")
    list_cache_seconds: float = 5.0
    timeout_seconds: float = 60.0
    stable_wait_seconds: float = 10.0


@dataclass(frozen=True)
class HttpSettings:
    """Who may talk to the server over HTTP: Host names it answers to, origins allowed cross-origin, upload size."""

    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    cors_origins: tuple[str, ...] = ()  # empty: same origin only
    max_upload_mb: float = 512.0
    infer_workers: int = 2
    infer_queue: int = 8
    retry_after_seconds: int = 5
    infer_nice: int = 10

    @property
    def max_upload_bytes(self) -> int:
        """:attr:`max_upload_mb` in bytes (1 MB = 2**20 bytes)."""
        return int(self.max_upload_mb * (1 << 20))


@dataclass(frozen=True)
class DicomSender:
    """A DICOM modality allowed to send (C-STORE, C-ECHO) to Orthanc: its AE title and the IP address it calls from."""

    aet: str
    host: str


@dataclass(frozen=True)
class OrthancAccess:
    """Who may reach Orthanc.

    ``http_remote_access``: whether other machines may use Orthanc's HTTP API (REST, DICOMweb); off, Orthanc
    answers only this machine. Credentials are required either way (generated at first start).
    ``dicom_senders``: the only modalities whose associations Orthanc accepts, for C-STORE and C-ECHO, each from
    its own address; every other AE title, and C-FIND, C-MOVE and C-GET, are refused.
    """

    http_remote_access: bool = False
    dicom_senders: tuple[DicomSender, ...] = ()


@dataclass(frozen=True)
class RetrainSettings:
    """Automatic retraining: on, and after how many new final labels of a task."""

    enabled: bool = True
    after_new_final_labels: int = 5


@dataclass(frozen=True)
class SyncSettings:
    """How often HOPE looks for a newly published model (to recompute stale suggestions)."""

    model_poll_seconds: float = 2.0


@dataclass(frozen=True)
class ActiveLearningSettings:
    """How long a series handed out by a strategy stays leased, and whether unlabelled series are scored."""

    lease_minutes: float = 30.0
    background_scoring: bool = True


@dataclass(frozen=True)
class DemoFewShotType:
    """One demo rare-tumour type: the phantom drawn, its case-record type and verdict, and how many are labelled."""

    phantom: str
    tumor_type: str
    verdict: str
    labelled: int


@dataclass(frozen=True)
class DemoSettings:
    """Demo data stored on a first start: neck-CT and neck-MR phantoms, and labelled rare-tumour phantom stacks."""

    cases: int = 6
    first_seed: int = 1000
    mr_cases: int = 4  # sagittal neck MR phantoms, T2 and T1 in turn, of the same anatomy generator
    mr_first_seed: int = 3000
    fewshot_first_seed: int = 5000
    fewshot: tuple[DemoFewShotType, ...] = ()


@dataclass(frozen=True)
class ServerSettings:
    """Server-wide settings, parsed once at start-up."""

    tasks: tuple[str, ...]
    datastore: DatastoreSettings = field(default_factory=DatastoreSettings)
    fewshot_tasks: tuple[str, ...] = ()
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    activelearning: ActiveLearningSettings = field(default_factory=ActiveLearningSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    orthanc: OrthancAccess = field(default_factory=OrthancAccess)
    auth: AuthSettings = field(default_factory=AuthSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)


KNOWN_SECTIONS = {"tasks", "fewshot_tasks", "datastore", "retrain", "sync", "activelearning", "demo", "http", "orthanc",
                  "auth", "review"}
#: Longest DICOM AE title (characters).
AE_TITLE_MAX = 16


def _strings(raw: dict[str, Any], key: str, default: tuple[str, ...], where: str) -> tuple[str, ...]:
    value = raw.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _http(raw: dict[str, Any], where: str) -> HttpSettings:
    d = HttpSettings()
    origins = _strings(raw, "cors_origins", d.cors_origins, where)
    if "*" in origins:
        raise ConfigError(f"{where}.cors_origins: '*' would let any web page drive HOPE; list the origins instead")
    return HttpSettings(
        allowed_hosts=_strings(raw, "allowed_hosts", d.allowed_hosts, where),
        cors_origins=origins,
        max_upload_mb=number(raw, "max_upload_mb", d.max_upload_mb, where, low=1),
        infer_workers=number(raw, "infer_workers", d.infer_workers, where, cast=int, low=1),
        infer_queue=number(raw, "infer_queue", d.infer_queue, where, cast=int, low=0),
        retry_after_seconds=number(raw, "retry_after_seconds", d.retry_after_seconds, where, cast=int, low=1),
        infer_nice=number(raw, "infer_nice", d.infer_nice, where, cast=int, low=0, high=19),
    )


def _dicom_sender(entry: Any, at: str) -> DicomSender:
    if not isinstance(entry, dict):
        raise ConfigError(f"{at}: expected a mapping {{aet: AE_TITLE, host: IP address}}, got {entry!r}")
    aet, host = require(entry, "aet", at), require(entry, "host", at)
    if (not isinstance(aet, str) or not aet.strip() or len(aet) > AE_TITLE_MAX or not aet.isascii()
            or "\\" in aet or not aet.isprintable()):
        raise ConfigError(f"{at}.aet: expected an AE title of 1 to {AE_TITLE_MAX} printable ASCII characters "
                          f"(no backslash), got {aet!r}")
    try:
        address = ipaddress.ip_address(str(host))
    except ValueError:
        raise ConfigError(f"{at}.host: expected the IP address the sender connects from (Orthanc compares "
                          f"addresses, not names), got {host!r}") from None
    return DicomSender(aet=aet, host=str(address))


def _orthanc(raw: dict[str, Any], where: str) -> OrthancAccess:
    senders = raw.get("dicom_senders") or []
    if not isinstance(senders, list):
        raise ConfigError(f"{where}.dicom_senders: expected a list of {{aet, host}} mappings, got {senders!r}")
    return OrthancAccess(
        http_remote_access=flag(raw, "http_remote_access", OrthancAccess.http_remote_access, where),
        dicom_senders=tuple(_dicom_sender(entry, f"{where}.dicom_senders[{i}]") for i, entry in enumerate(senders)),
    )


def _demo(raw: dict[str, Any], where: str) -> DemoSettings:
    types = []
    for i, entry in enumerate(raw.get("fewshot") or []):
        at = f"{where}.fewshot[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a mapping with phantom, tumor_type, verdict, labelled")
        types.append(DemoFewShotType(
            phantom=str(require(entry, "phantom", at)),
            tumor_type=str(require(entry, "tumor_type", at)),
            verdict=str(require(entry, "verdict", at)),
            labelled=number(entry, "labelled", 0, at, cast=int, low=1),
        ))
    return DemoSettings(
        cases=number(raw, "cases", DemoSettings.cases, where, cast=int, low=0),
        first_seed=number(raw, "first_seed", DemoSettings.first_seed, where, cast=int, low=0),
        mr_cases=number(raw, "mr_cases", DemoSettings.mr_cases, where, cast=int, low=0),
        mr_first_seed=number(raw, "mr_first_seed", DemoSettings.mr_first_seed, where, cast=int, low=0),
        fewshot_first_seed=number(raw, "fewshot_first_seed", DemoSettings.fewshot_first_seed, where, cast=int, low=0),
        fewshot=tuple(types),
    )


def parse_server_settings(data: dict[str, Any], where: str = "server.yaml") -> ServerSettings:
    """Validate the mapping of ``server.yaml`` into :class:`ServerSettings`; unknown sections are an error."""
    unknown = sorted(set(data) - KNOWN_SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; known: {sorted(KNOWN_SECTIONS)}")
    tasks = tuple(str(t) for t in require(data, "tasks", where) or ())
    if not tasks:
        raise ConfigError(f"{where}: 'tasks' must list at least one task")
    store = section(data, "datastore", where)
    retrain = section(data, "retrain", where)
    sync = section(data, "sync", where)
    al = section(data, "activelearning", where)
    defaults = DatastoreSettings()
    return ServerSettings(
        tasks=tasks,
        datastore=DatastoreSettings(
            modalities=tuple(str(m).upper() for m in store.get("modalities", defaults.modalities)),
            list_cache_seconds=number(store, "list_cache_seconds", defaults.list_cache_seconds, f"{where}.datastore",
                                      low=0),
            timeout_seconds=number(store, "timeout_seconds", defaults.timeout_seconds, f"{where}.datastore",
                                   low=0.1),
            stable_wait_seconds=number(store, "stable_wait_seconds", defaults.stable_wait_seconds,
                                       f"{where}.datastore", low=0),
        ),
        fewshot_tasks=tuple(str(t) for t in data.get("fewshot_tasks") or ()),
        retrain=RetrainSettings(
            enabled=flag(retrain, "enabled", RetrainSettings.enabled, f"{where}.retrain"),
            after_new_final_labels=number(retrain, "after_new_final_labels", RetrainSettings.after_new_final_labels,
                                          f"{where}.retrain", cast=int, low=1),
        ),
        sync=SyncSettings(
            model_poll_seconds=number(sync, "model_poll_seconds", SyncSettings.model_poll_seconds, f"{where}.sync",
                                      low=0.05),
        ),
        activelearning=ActiveLearningSettings(
            lease_minutes=number(al, "lease_minutes", ActiveLearningSettings.lease_minutes, f"{where}.activelearning",
                                 low=0),
            background_scoring=flag(al, "background_scoring", ActiveLearningSettings.background_scoring,
                                    f"{where}.activelearning"),
        ),
        demo=_demo(section(data, "demo", where), f"{where}.demo"),
        http=_http(section(data, "http", where), f"{where}.http"),
        orthanc=_orthanc(section(data, "orthanc", where), f"{where}.orthanc"),
        auth=parse_auth(section(data, "auth", where), f"{where}.auth"),
        review=parse_review(section(data, "review", where), f"{where}.review"),
    )


def load_server_settings(directory: Path | None = None) -> ServerSettings:
    """Load ``<directory>/server.yaml`` (default: :func:`config_dir`)."""
    path = (directory or config_dir()) / "server.yaml"
    return parse_server_settings(read_yaml(path), str(path))
