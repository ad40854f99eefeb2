"""Case records: vocabulary, repository with audit trail, CSV import, Orthanc lookup, routes and the import CLI.

A unit test: SQLite in a temporary folder, a fake ``study_exists`` and a fake QIDO-RS server (no Orthanc).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from hope.api.cases import build_router
from hope.cases import (
    AuditImmutableError,
    CaseExistsError,
    CaseInput,
    CaseNotFoundError,
    CaseRepository,
    CaseValidationError,
    CsvImportError,
    StudyLookupError,
    import_csv,
    load_vocabulary,
    make_engine,
    orthanc_study_exists,
)
from hope.cases.models import AuditEntry
from hope.config import REPO_ROOT, ConfigError
from hope.datastore.gateway import OrthancGateway
from hope.processes.process import free_port

from .conftest import demo_app

STUDIES = {"1.2.826.0.1.1", "1.2.826.0.1.2", "1.2.826.0.1.3", "1.2.826.0.1.4"}
S1, S2, S3, S4 = sorted(STUDIES)
UNKNOWN = "1.2.826.0.9.9"
VOCABULARY = load_vocabulary()
HEADER = "study_uid,tumor_type,verdict,confirmation,notes\n"


def _repo(tmp_path: Path, study_exists: Callable[[str], bool] = STUDIES.__contains__) -> CaseRepository:
    return CaseRepository(make_engine(f"sqlite:///{tmp_path}/db/cases.sqlite"), VOCABULARY, study_exists)


@pytest.fixture
def repo(tmp_path: Path) -> CaseRepository:
    """A repository on a fresh SQLite file; the store has :data:`STUDIES`."""
    return _repo(tmp_path)


def _chordoma(uid: str = S1, **overrides: str | None) -> CaseInput:
    values = {"tumor_type": "chordoma", "verdict": "malignant", "confirmation": "pathology", "notes": "C2 body"}
    return CaseInput(uid, **(values | overrides))  # type: ignore[arg-type]


def _write_csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "cases.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


# -- vocabulary -----------------------------------------------------------------------------------------------


def test_vocabulary_from_configs() -> None:
    assert {"chordoma", "giant_cell_tumor", "schwannoma", "aneurysmal_bone_cyst", "metastasis"} <= set(
        VOCABULARY.tumor_types
    )
    assert set(VOCABULARY.verdicts) == {"benign", "borderline", "malignant"}
    assert set(VOCABULARY.confirmations) == {"pathology", "follow_up"}
    assert VOCABULARY.tumor_types["chordoma"].verdicts == {"malignant"}
    assert VOCABULARY.tumor_types["giant_cell_tumor"].verdicts == set(VOCABULARY.verdicts)
    assert VOCABULARY.as_dict()["tumor_types"]["chordoma"] == {"name": "Chordoma", "verdicts": ["malignant"]}


def test_database_url_default_and_override(tmp_path: Path) -> None:
    assert VOCABULARY.database_url_for({"HOPE_DATA_DIR": str(tmp_path)}) == f"sqlite:///{tmp_path}/cases.sqlite"
    assert VOCABULARY.database_url_for({}) == f"sqlite:///{Path('data').resolve()}/cases.sqlite"
    env = {"HOPE_DATA_DIR": str(tmp_path), "HOPE_CASES_DB_URL": "postgresql+psycopg://hope@db/hope"}
    assert VOCABULARY.database_url_for(env) == "postgresql+psycopg://hope@db/hope"


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("tumor_types: {Chordoma: {name: C}}", "lower-case"),
        ("tumor_types: {chordoma: {name: C, verdicts: [evil]}}", "subset"),
        ("tumor_types: {chordoma: Chordoma}", "mapping with 'name'"),
    ],
)
def test_vocabulary_errors_name_the_key(tmp_path: Path, snippet: str, message: str) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(
        f"database: {{url: 'sqlite://'}}\nverdicts: {{benign: B, malignant: M}}\nconfirmations: {{pathology: P}}\n"
        f"{snippet}\n"
    )
    with pytest.raises(ConfigError, match=message):
        load_vocabulary(path)


# -- repository: changes and their audit trail ----------------------------------------------------------------


def test_create_update_delete_write_audit_entries(repo: CaseRepository) -> None:
    before = datetime.now(UTC)
    created = repo.create(_chordoma(), who="dr.a", reason="pathology report 17")
    assert (created.tumor_type, created.verdict, created.confirmation, created.notes) == (
        "chordoma",
        "malignant",
        "pathology",
        "C2 body",
    )
    assert created.created_at == created.updated_at and created.created_at.tzinfo is UTC
    assert repo.get(S1) == created

    updated = repo.update(S1, who="dr.b", reason="second opinion", confirmation="follow_up", notes="C2 and C3")
    assert (updated.confirmation, updated.notes, updated.created_at) == ("follow_up", "C2 and C3", created.created_at)
    assert updated.updated_at >= created.updated_at

    deleted = repo.delete(S1, who="dr.c", reason="wrong study")
    assert deleted == updated
    with pytest.raises(CaseNotFoundError, match=S1):
        repo.get(S1)
    assert repo.list_cases() == ()

    create, update, delete = repo.history(S1)
    assert [e.action for e in (create, update, delete)] == ["create", "update", "delete"]
    assert create.old_values == {}
    assert create.new_values == {
        "tumor_type": "chordoma",
        "verdict": "malignant",
        "confirmation": "pathology",
        "notes": "C2 body",
    }
    assert update.old_values == {"confirmation": "pathology", "notes": "C2 body"}
    assert update.new_values == {"confirmation": "follow_up", "notes": "C2 and C3"}
    assert delete.old_values == {
        "tumor_type": "chordoma",
        "verdict": "malignant",
        "confirmation": "follow_up",
        "notes": "C2 and C3",
    }
    assert delete.new_values == {}
    assert [(e.who, e.reason) for e in (create, update, delete)] == [
        ("dr.a", "pathology report 17"),
        ("dr.b", "second opinion"),
        ("dr.c", "wrong study"),
    ]
    for entry in (create, update, delete):
        assert entry.at.tzinfo is UTC and before <= entry.at <= datetime.now(UTC) + timedelta(seconds=1)
    assert repo.history() == (create, update, delete)


def test_upsert_creates_updates_and_skips_unchanged(repo: CaseRepository) -> None:
    case, change = repo.upsert(_chordoma(notes=None), who="dr.a", reason="report")
    assert (change, case.notes) == ("created", "")
    same, change = repo.upsert(_chordoma(notes=None), who="dr.a", reason="again")
    assert (change, same) == ("unchanged", case)
    assert len(repo.history(S1)) == 1  # documented: a change to nothing writes no audit entry
    _, change = repo.upsert(_chordoma(notes="clivus"), who="dr.a", reason="notes")
    assert change == "updated"
    assert repo.update(S1, who="dr.a", reason="same again", notes="clivus").notes == "clivus"
    assert [e.action for e in repo.history(S1)] == ["create", "update"]


def test_values_are_normalised(repo: CaseRepository) -> None:
    case = repo.create(
        CaseInput(f" {S1} ", "Giant-cell Tumor", " BORDERLINE ", "follow up", "  "), who=" dr.a ", reason=" r "
    )
    assert (case.study_uid, case.tumor_type, case.verdict, case.confirmation, case.notes) == (
        S1,
        "giant_cell_tumor",
        "borderline",
        "follow_up",
        "",
    )
    assert (repo.history(S1)[0].who, repo.history(S1)[0].reason) == ("dr.a", "r")
    assert [c.study_uid for c in repo.list_cases(tumor_type="giant cell tumor")] == [S1]
    assert repo.list_cases(verdict="malignant") == ()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (_chordoma(tumor_type="chordomma"), ["tumor_type: 'chordomma' is not a known tumour type", "chordoma, "]),
        (_chordoma(tumor_type=""), ["tumor_type is required; allowed: aneurysmal_bone_cyst"]),
        (_chordoma(verdict="maybe"), ["verdict: 'maybe' is not a verdict; allowed: benign, borderline, malignant"]),
        (
            _chordoma(confirmation="biopsy"),
            ["confirmation: 'biopsy' is not a confirmation; allowed: follow_up, pathology"],
        ),
        (
            _chordoma(verdict="benign"),
            ["verdict: 'benign' is not possible for tumor_type 'chordoma'", "allowed: malig"],
        ),
        (_chordoma(UNKNOWN), [f"study_uid: study '{UNKNOWN}' is not in the DICOM store"]),
        (_chordoma("1.2.abc"), ["study_uid: '1.2.abc' is not a DICOM UID"]),
    ],
)
def test_invalid_cases_are_refused_with_clear_messages(
    repo: CaseRepository, case: CaseInput, expected: list[str]
) -> None:
    for write in (
        lambda: repo.create(case, who="dr.a", reason="r"),
        lambda: repo.upsert(case, who="dr.a", reason="r"),
    ):
        with pytest.raises(CaseValidationError) as info:
            write()
        assert isinstance(info.value, ValueError)
        for fragment in expected:
            assert fragment in str(info.value)
    assert repo.list_cases() == () and repo.history() == ()


def test_all_problems_are_reported_at_once(repo: CaseRepository) -> None:
    with pytest.raises(CaseValidationError) as info:
        repo.create(CaseInput(UNKNOWN, "x", "y", "z"), who="", reason=" ")
    fields = [p.split(":")[0].split(" is required")[0] for p in info.value.problems]
    assert fields == ["who", "reason", "tumor_type", "verdict", "confirmation", "study_uid"]


@pytest.mark.parametrize(("who", "reason"), [("", "r"), ("dr.a", ""), (None, "r"), ("dr.a", None), ("  ", "r")])
def test_every_change_requires_who_and_reason(repo: CaseRepository, who: str, reason: str) -> None:
    repo.create(_chordoma(S2), who="dr.a", reason="setup")
    missing = "who is required" if not (who or "").strip() else "reason is required"
    changes = [
        lambda: repo.create(_chordoma(), who=who, reason=reason),
        lambda: repo.upsert(_chordoma(), who=who, reason=reason),
        lambda: repo.update(S2, who=who, reason=reason, notes="new"),
        lambda: repo.delete(S2, who=who, reason=reason),
        lambda: repo.save_many([_chordoma()], who=who, reason=reason),
    ]
    for change in changes:
        with pytest.raises(CaseValidationError, match=missing):
            change()
    assert [c.study_uid for c in repo.list_cases()] == [S2] and len(repo.history()) == 1


def test_update_validates_the_merged_case_and_needs_no_store(tmp_path: Path) -> None:
    known = set(STUDIES)
    repo = _repo(tmp_path, known.__contains__)
    repo.create(_chordoma(), who="dr.a", reason="r")
    with pytest.raises(CaseValidationError, match="'benign' is not possible for tumor_type 'chordoma'"):
        repo.update(S1, who="dr.a", reason="r", verdict="benign")
    known.clear()  # the study left the store: its case can still be corrected and deleted
    changed = repo.update(S1, who="dr.a", reason="r", tumor_type="osteoblastoma", verdict="benign")
    assert (changed.tumor_type, changed.verdict) == ("osteoblastoma", "benign")
    repo.delete(S1, who="dr.a", reason="r")
    with pytest.raises(CaseNotFoundError):
        repo.update(S1, who="dr.a", reason="r", notes="x")
    with pytest.raises(CaseNotFoundError):
        repo.delete(S1, who="dr.a", reason="r")


def test_create_refuses_an_existing_case(repo: CaseRepository) -> None:
    repo.create(_chordoma(), who="dr.a", reason="r")
    with pytest.raises(CaseExistsError, match="update it instead"):
        repo.create(_chordoma(), who="dr.a", reason="r")


def test_case_and_audit_entry_are_one_transaction(repo: CaseRepository) -> None:
    def fail(*_: object) -> None:
        raise RuntimeError("audit insert failed")

    event.listen(AuditEntry, "before_insert", fail)
    try:
        with pytest.raises(RuntimeError, match="audit insert failed"):
            repo.create(_chordoma(), who="dr.a", reason="r")
    finally:
        event.remove(AuditEntry, "before_insert", fail)
    assert repo.list_cases() == ()


def test_a_failing_store_lookup_writes_nothing(tmp_path: Path) -> None:
    def down(uid: str) -> bool:
        raise StudyLookupError("store down")

    repo = _repo(tmp_path, down)
    with pytest.raises(StudyLookupError):
        repo.upsert(_chordoma(), who="dr.a", reason="r")
    assert repo.history() == ()


def test_audit_entries_cannot_be_edited(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/cases.sqlite")
    repo = CaseRepository(engine, VOCABULARY, STUDIES.__contains__)
    repo.create(_chordoma(), who="dr.a", reason="r")
    public = {name for name in dir(repo) if not name.startswith("_")}
    assert public == {
        "check_many",
        "create",
        "delete",
        "get",
        "history",
        "list_cases",
        "save_many",
        "update",
        "upsert",
        "vocabulary",
    }
    entry = repo.history()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.who = "someone else"  # type: ignore[misc]

    with Session(engine) as session, pytest.raises(AuditImmutableError):
        session.get(AuditEntry, entry.id).who = "someone else"
        session.flush()
    with Session(engine) as session, pytest.raises(AuditImmutableError):
        session.delete(session.get(AuditEntry, entry.id))
        session.flush()
    for sql in ("UPDATE case_audit SET who = 'x'", "DELETE FROM case_audit"):
        with engine.begin() as connection, pytest.raises(DBAPIError, match="append-only"):
            connection.execute(text(sql))
    assert repo.history() == (entry,)


# -- CSV import -----------------------------------------------------------------------------------------------


def test_csv_import_happy_path(repo: CaseRepository, tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path,
        f'{S1},chordoma,malignant,pathology,"clivus, C2"\n'
        "\n"
        f'{S2},Giant cell tumor,borderline,follow_up,"two\nlines"\n'
        f"{S3},schwannoma,benign,pathology,\n",
    )
    assert import_csv(path, repo, "dr.a", "batch 1", progress=False) == 3
    assert [(c.study_uid, c.tumor_type, c.notes) for c in repo.list_cases()] == [
        (S1, "chordoma", "clivus, C2"),
        (S2, "giant_cell_tumor", "two\nlines"),
        (S3, "schwannoma", ""),
    ]
    entries = repo.history()
    assert [(e.action, e.who, e.reason) for e in entries] == [("create", "dr.a", "batch 1")] * 3
    assert len({e.at for e in entries}) == 1  # one transaction, one time

    assert import_csv(path, repo, "dr.a", "batch 1 again", progress=False) == 0  # nothing changed, no entries
    path = _write_csv(
        tmp_path,
        f"{S1},chordoma,malignant,follow_up\n{S4},hemangioma,benign,pathology\n",
        header="Study_UID, tumor_type ,verdict,confirmation\n",
    )
    assert import_csv(path, repo, "dr.b", "batch 2", progress=True) == 2
    assert repo.get(S1).notes == "clivus, C2"  # no notes column: notes kept
    assert [(e.action, e.new_values) for e in repo.history()[3:]] == [
        ("update", {"confirmation": "follow_up"}),
        ("create", {"tumor_type": "hemangioma", "verdict": "benign", "confirmation": "pathology", "notes": ""}),
    ]


def test_csv_import_is_all_or_nothing_and_reports_every_row(repo: CaseRepository, tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path,
        f"{S1},chordoma,malignant,pathology,ok\n"  # line 2: fine
        f"{S2},chordomma,malignant,pathology,\n"  # line 3: unknown type
        f"{S3},schwannoma,maybe,biopsy,\n"  # line 4: bad verdict and confirmation
        f"{UNKNOWN},chordoma,malignant,pathology,\n"  # line 5: unknown study
        f"{S4},chordoma,malignant\n"  # line 6: too few fields
        f"{S1},chordoma,malignant,pathology,again\n",  # line 7: repeated study
    )
    with pytest.raises(CsvImportError) as info:
        import_csv(path, repo, "dr.a", "batch", progress=False)
    assert [e.split(":")[0] for e in info.value.errors] == ["line 3", "line 4", "line 4", "line 5", "line 6", "line 7"]
    message = str(info.value)
    assert "nothing imported, 6 problem(s)" in message
    for fragment in (
        "line 3: tumor_type: 'chordomma' is not a known tumour type",
        "line 4: verdict: 'maybe' is not a verdict; allowed: benign, borderline, malignant",
        "line 4: confirmation: 'biopsy' is not a confirmation; allowed: follow_up, pathology",
        f"line 5: study_uid: study '{UNKNOWN}' is not in the DICOM store",
        "line 6: 3 fields, the header has 5",
        f"line 7: study_uid '{S1}' is already on line 2",
    ):
        assert fragment in message
    assert repo.list_cases() == () and repo.history() == ()


def test_csv_import_value_errors_alone_also_write_nothing(repo: CaseRepository, tmp_path: Path) -> None:
    repo.create(_chordoma(S4), who="dr.a", reason="setup")
    path = _write_csv(tmp_path, f"{S4},chordoma,malignant,follow_up,\n{S1},chordoma,benign,pathology,\n")
    with pytest.raises(CsvImportError, match="line 3: verdict: 'benign' is not possible"):
        import_csv(path, repo, "dr.a", "batch", progress=False)
    assert repo.get(S4).confirmation == "pathology" and len(repo.history()) == 1


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("study_uid,tumor_type,verdict\n", "line 1: header: missing column(s) confirmation"),
        ("study_uid,tumor_type,verdict,confirmation,grade\n", "unknown column(s) grade"),
        ("study_uid,tumor_type,verdict,confirmation,verdict\n", "repeated column(s) verdict"),
        ("", "missing column(s) study_uid, tumor_type, verdict, confirmation"),
    ],
)
def test_csv_header_problems(repo: CaseRepository, tmp_path: Path, header: str, message: str) -> None:
    with pytest.raises(CsvImportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_csv(_write_csv(tmp_path, "", header=header), repo, "dr.a", "r", progress=False)


def test_csv_import_requires_who_and_reason(repo: CaseRepository, tmp_path: Path) -> None:
    path = _write_csv(tmp_path, f"{S1},chordoma,malignant,pathology,\n")
    with pytest.raises(CaseValidationError, match="reason is required"):
        import_csv(path, repo, "dr.a", "", progress=False)
    assert repo.list_cases() == ()


# -- Orthanc lookup (a fake QIDO-RS server) --------------------------------------------------------------------


class _Qido(BaseHTTPRequestHandler):
    """``GET /dicom-web/studies?StudyInstanceUID=...``: the matching studies of :data:`STUDIES`; ``/broken``: 500."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        if not url.path.startswith("/dicom-web/studies"):
            self.send_error(500)
            return
        uid = parse_qs(url.query).get("StudyInstanceUID", [""])[0]
        found = [{"0020000D": {"vr": "UI", "Value": [uid]}}] if uid in STUDIES else []
        body = json.dumps(found).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def qido_url() -> Iterator[str]:
    """Base URL of a fake QIDO-RS server that knows :data:`STUDIES`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Qido)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_orthanc_study_exists(qido_url: str) -> None:
    exists = orthanc_study_exists(OrthancGateway(f"{qido_url}/dicom-web", timeout=5))
    assert exists(S1) is True
    assert exists(UNKNOWN) is False
    with pytest.raises(StudyLookupError, match="could not ask the DICOM store"):
        orthanc_study_exists(OrthancGateway(f"{qido_url}/broken", timeout=5))(S1)
    with pytest.raises(StudyLookupError, match=S1):
        orthanc_study_exists(OrthancGateway(f"http://127.0.0.1:{free_port()}/dicom-web", timeout=5))(S1)


# -- routes ---------------------------------------------------------------------------------------------------


@pytest.fixture
def client(repo: CaseRepository) -> TestClient:
    """The router on its own app."""
    app = demo_app()
    app.include_router(build_router(repo))
    return TestClient(app)


BODY = {"tumor_type": "chordoma", "verdict": "malignant", "confirmation": "pathology", "reason": "report 17"}
USER = {"X-HOPE-User": "dr.a"}


def test_routes_put_get_list_delete_and_audit(client: TestClient) -> None:
    r = client.put(f"/cases/{S1}", json=BODY, headers=USER)
    assert r.status_code == 201, r.text
    assert r.json()["change"] == "created" and r.json()["notes"] == ""
    r = client.put(f"/cases/{S1}", json=BODY, headers=USER)
    assert (r.status_code, r.json()["change"]) == (200, "unchanged")
    r = client.put(f"/cases/{S1}", json=BODY | {"confirmation": "follow_up", "who": "dr.b", "reason": "follow-up"})
    assert (r.status_code, r.json()["change"], r.json()["confirmation"]) == (200, "updated", "follow_up")
    client.put(f"/cases/{S2}", json=BODY | {"tumor_type": "hemangioma", "verdict": "benign"}, headers=USER)

    assert client.get(f"/cases/{S1}").json()["confirmation"] == "follow_up"
    assert [c["study_uid"] for c in client.get("/cases").json()] == [S1, S2]
    assert [c["study_uid"] for c in client.get("/cases", params={"verdict": "benign"}).json()] == [S2]
    assert "chordoma" in client.get("/cases/vocabulary").json()["tumor_types"]

    audit = client.get(f"/cases/{S1}/audit").json()
    assert [(e["action"], e["who"], e["reason"]) for e in audit] == [
        ("create", "dr.a", "report 17"),
        ("update", "dr.b", "follow-up"),
    ]
    assert audit[1]["old_values"] == {"confirmation": "pathology"}
    assert audit[1]["new_values"] == {"confirmation": "follow_up"}
    assert datetime.fromisoformat(audit[1]["at"].replace("Z", "+00:00")).utcoffset() == timedelta(0)

    r = client.delete(f"/cases/{S1}", params={"reason": "wrong study"}, headers=USER)
    assert r.status_code == 200 and r.json()["study_uid"] == S1
    assert client.get(f"/cases/{S1}").status_code == 404
    assert client.delete(f"/cases/{S1}", params={"reason": "again"}, headers=USER).status_code == 404
    assert [e["action"] for e in client.get(f"/cases/{S1}/audit").json()] == ["create", "update", "delete"]
    assert len(client.get("/cases/audit").json()) == 4
    r = client.get(f"/cases/{UNKNOWN}/audit")
    assert r.status_code == 404 and "never had a case record" in r.json()["detail"]


@pytest.mark.parametrize(
    ("uid", "body", "headers", "fragment"),
    [
        (S1, BODY | {"tumor_type": "chordomma"}, USER, "tumor_type: 'chordomma' is not a known tumour type"),
        (S1, BODY | {"verdict": "maybe"}, USER, "allowed: benign, borderline, malignant"),
        (S1, BODY | {"confirmation": "biopsy"}, USER, "allowed: follow_up, pathology"),
        (UNKNOWN, BODY, USER, f"study '{UNKNOWN}' is not in the DICOM store"),
        (S1, BODY, {}, "who is required: send the X-HOPE-User header or the field who"),
        (S1, BODY | {"who": "dr.b"}, USER, "header says 'dr.a' but the field who says 'dr.b'"),
        (S1, BODY | {"reason": "  "}, USER, "reason is required"),
        (S1, {k: v for k, v in BODY.items() if k != "reason"}, USER, "reason"),
    ],
)
def test_routes_refuse_invalid_changes_with_422(
    client: TestClient, uid: str, body: dict[str, str], headers: dict[str, str], fragment: str
) -> None:
    r = client.put(f"/cases/{uid}", json=body, headers=headers)
    assert r.status_code == 422 and fragment in r.text, r.text
    assert client.get("/cases").json() == [] and client.get("/cases/audit").json() == []


def test_routes_delete_needs_who_and_reason(client: TestClient) -> None:
    client.put(f"/cases/{S1}", json=BODY, headers=USER)
    assert client.delete(f"/cases/{S1}", headers=USER).status_code == 422
    r = client.delete(f"/cases/{S1}", params={"reason": "x"})
    assert r.status_code == 422 and "who is required" in r.json()["detail"]
    assert client.delete(f"/cases/{S1}", params={"reason": "x", "who": "dr.c"}).status_code == 200
    assert client.get(f"/cases/{S1}/audit").json()[-1]["who"] == "dr.c"


def test_routes_csv_import(client: TestClient) -> None:
    good = HEADER + f"{S1},chordoma,malignant,pathology,\n{S2},schwannoma,benign,follow_up,\n"
    r = client.post("/cases/import", files={"file": ("c.csv", good)}, data={"reason": "batch"}, headers=USER)
    assert (r.status_code, r.json()) == (200, {"imported": 2}), r.text
    bad = HEADER + f"{S3},chordoma,malignant,pathology,\n{S4},chordomma,malignant,pathology,\n{UNKNOWN},x,y,z,\n"
    r = client.post("/cases/import", files={"file": ("bad.csv", bad)}, data={"reason": "batch", "who": "dr.a"})
    assert r.status_code == 422
    for fragment in ("bad.csv: nothing imported", "line 3: tumor_type", "line 4: tumor_type", "line 4: study_uid"):
        assert fragment in r.json()["detail"]
    assert [c["study_uid"] for c in client.get("/cases").json()] == [S1, S2]
    r = client.post("/cases/import", files={"file": ("c.csv", good)}, data={"reason": "batch"})
    assert r.status_code == 422 and "who is required" in r.text
    r = client.post("/cases/import", files={"file": ("c.csv", b"\xff\xfe\x00")}, data={"reason": "b"}, headers=USER)
    assert r.status_code == 422 and "not UTF-8" in r.text


def test_routes_store_failure_is_502(tmp_path: Path) -> None:
    def down(uid: str) -> bool:
        raise StudyLookupError("store down")

    app = demo_app()
    app.include_router(build_router(_repo(tmp_path, down)))
    r = TestClient(app).put(f"/cases/{S1}", json=BODY, headers=USER)
    assert (r.status_code, r.json()["detail"]) == (502, "store down")


def test_no_route_changes_audit_entries(repo: CaseRepository) -> None:
    routes = build_router(repo).routes
    audit_methods = {m for route in routes if "audit" in route.path for m in route.methods}  # type: ignore[attr-defined]
    assert audit_methods == {"GET"}


# -- the import CLI -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli() -> ModuleType:
    """``scripts/import_cases.py`` as a module."""
    spec = importlib.util.spec_from_file_location("import_cases", REPO_ROOT / "scripts" / "import_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(cli: ModuleType, tmp_path: Path, qido_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/cli.sqlite"
    common = ["--who", "dr.a", "--reason", "batch", "--db", db, "--no-progress", "--orthanc", f"{qido_url}/dicom-web"]
    bad = _write_csv(tmp_path, f"{S1},chordomma,malignant,pathology,\n{UNKNOWN},chordoma,malignant,pathology,\n")
    assert cli.main([str(bad), *common]) == 2
    err = capsys.readouterr().err
    assert "line 2: tumor_type: 'chordomma'" in err and f"line 3: study_uid: study '{UNKNOWN}'" in err

    good = _write_csv(tmp_path, f"{S1},chordoma,malignant,pathology,\n")
    assert cli.main([str(good), *common]) == 0
    assert "1 case(s) created or changed" in capsys.readouterr().out
    assert cli.main([str(tmp_path / "missing.csv"), *common]) == 2
    down = [*common[:-1], f"http://127.0.0.1:{free_port()}/dicom-web"]
    assert cli.main([str(_write_csv(tmp_path, f"{S2},chordoma,malignant,pathology,\n")), *down]) == 1
    assert "could not ask the DICOM store" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)"])
@pytest.mark.parametrize("field", ["notes", "who", "reason"])
def test_free_text_that_a_spreadsheet_would_run_is_refused(repo: CaseRepository, field: str, value: str) -> None:
    """Values starting with =, +, -, @ were stored and exported verbatim (CSV injection)."""
    case = {"study_uid": S1, "tumor_type": "chordoma", "verdict": "malignant", "confirmation": "pathology"}
    audit = {"who": "dr.path", "reason": "report 17"}
    if field == "notes":
        case["notes"] = value
    else:
        audit[field] = value
    with pytest.raises(CaseValidationError, match=f"{field}: .* a spreadsheet runs as a formula"):
        repo.create(CaseInput(**case), **audit)
    assert len(repo.list_cases()) == 0
