"""``/hope/review`` and ``/hope/audit`` on a bare app, behind a test middleware that sets the request's identity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from hope.api import audit as audit_api
from hope.api import review as review_api
from hope.api.identity import SCOPE_KEY
from hope.audit import AuditAction, AuditLog
from hope.auth.identity import Identity, Role
from hope.review import ReviewBook
from hope.server.errors import install_error_handlers

STUDY = "1.2.3"
REVIEWER = Identity("rev", Role.REVIEWER, verified=True)


class SetIdentity:
    """Puts ``identity`` in every request's scope, as the access guard does."""

    def __init__(self, app: ASGIApp, identity: Identity) -> None:
        self.app = app
        self.identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_KEY] = self.identity
        await self.app(scope, receive, send)


@pytest.fixture
def book(tmp_path: Path) -> ReviewBook:
    return ReviewBook(tmp_path / "review.sqlite")


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.sqlite")


@pytest.fixture
def make_client(book: ReviewBook, audit: AuditLog) -> Callable[..., TestClient]:
    def make(enabled: bool = True, identity: Identity = REVIEWER) -> TestClient:
        app = FastAPI()
        app.include_router(review_api.build_router(book, audit, enabled, has_suggestion=lambda uid: uid == "1.9"))
        app.include_router(audit_api.build_router(audit))
        app.add_middleware(SetIdentity, identity=identity)
        install_error_handlers(app)
        return TestClient(app)

    return make


def test_a_reviewer_approves_from_the_queue_and_the_decision_is_audited(
    make_client: Callable[..., TestClient], book: ReviewBook, audit: AuditLog
) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    book.submit("9.2", "1.2", STUDY, "ann")
    client = make_client()
    queue = client.get("/hope/review/queue").json()
    assert [s["seg_sop_uid"] for s in queue] == ["9.1", "9.2"]
    assert queue[0]["state"] == "submitted" and queue[0]["reviewer"] is None
    assert [s["seg_sop_uid"] for s in client.get("/hope/review/queue?limit=1&offset=1").json()] == ["9.2"]

    answer = client.post("/hope/review/9.1", json={"decision": "approve"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["state"], answer.json()["reviewer"]) == ("approved", "rev")
    assert book.is_approved("9.1")
    [entry] = audit.query()
    assert (entry.user, entry.verified, entry.action) == ("rev", True, AuditAction.LABEL_APPROVED)
    assert (entry.study_uid, entry.series_uid, entry.detail["seg_sop_uid"]) == (STUDY, "1.1", "9.1")

    again = client.post("/hope/review/9.1", json={"decision": "reject", "comment": "no"})
    assert again.status_code == 409 and "a decision is final" in again.json()["detail"]


def test_a_rejection_needs_a_comment_which_the_annotator_sees(
    make_client: Callable[..., TestClient], book: ReviewBook, audit: AuditLog
) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    client = make_client()
    bare = client.post("/hope/review/9.1", json={"decision": "reject"})
    assert bare.status_code == 422 and "needs a comment" in bare.json()["detail"]
    assert client.post("/hope/review/9.1", json={"decision": "reject", "comment": "C2 is missing"}).status_code == 200
    series = client.get("/hope/review/series/1.1").json()
    assert (series["state"], series["last_comment"]) == ("rejected", "C2 is missing")
    assert [s["seg_sop_uid"] for s in series["history"]] == ["9.1"]
    assert audit.query()[0].action is AuditAction.LABEL_REJECTED


def test_series_without_a_label_are_unlabelled_or_suggested(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/hope/review/series/1.8").json() == {
        "series_uid": "1.8", "state": "unlabelled", "last_comment": None, "history": []}
    assert client.get("/hope/review/series/1.9").json()["state"] == "suggested"


@pytest.mark.parametrize("path", ["/hope/review/1.2.abc", "/hope/review/" + "1." * 40 + "1", "/hope/review/.1"])
def test_identifiers_that_are_not_uids_are_refused(make_client: Callable[..., TestClient], path: str) -> None:
    client = make_client()
    assert client.post(path, json={"decision": "approve"}).status_code == 422
    assert client.get(path.replace("/review/", "/review/series/")).status_code == 422


def test_bad_bodies_and_unknown_labels(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.post("/hope/review/9.1", json={"decision": "maybe"}).status_code == 422
    unknown = client.post("/hope/review/9.1", json={"decision": "approve"})
    assert unknown.status_code == 404 and "GET /hope/review/queue" in unknown.json()["detail"]


def test_with_review_off_decisions_are_refused_with_how_to_enable_it(
    make_client: Callable[..., TestClient], book: ReviewBook, audit: AuditLog
) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    answer = make_client(enabled=False).post("/hope/review/9.1", json={"decision": "approve"})
    assert answer.status_code == 409 and "review.enabled: true in configs/server.yaml" in answer.json()["detail"]
    assert not book.is_approved("9.1") and audit.query() == []


def test_an_annotator_cannot_decide(make_client: Callable[..., TestClient], book: ReviewBook) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    answer = make_client(identity=Identity("ann", Role.ANNOTATOR, verified=True)).post(
        "/hope/review/9.1", json={"decision": "approve"})
    assert answer.status_code == 403 and "needs the reviewer role" in answer.json()["detail"]
    assert not book.is_approved("9.1")


def test_the_audit_route_filters_and_pages(make_client: Callable[..., TestClient], audit: AuditLog) -> None:
    audit.record("ann", True, AuditAction.LABEL_SUBMITTED, study_uid="1.1", series_uid="1.1.1")
    audit.record("rev", True, AuditAction.LABEL_APPROVED, study_uid="1.1", series_uid="1.1.1")
    audit.record("admin", False, AuditAction.TRAINING_STARTED, detail={"task": "spine_ct"})
    client = make_client()
    assert [e["user"] for e in client.get("/hope/audit").json()] == ["admin", "rev", "ann"]
    assert [e["user"] for e in client.get("/hope/audit?study=1.1&limit=1").json()] == ["rev"]
    assert [e["user"] for e in client.get("/hope/audit?study=1.1&limit=1&offset=1").json()] == ["ann"]
    assert [e["action"] for e in client.get("/hope/audit?user=admin").json()] == ["training_started"]
    assert client.get("/hope/audit?action=label_approved").json()[0]["user"] == "rev"
    assert len(client.get("/hope/audit?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00").json()) == 3
    assert client.get("/hope/audit?since=2999-01-01T00:00:00%2B01:00").json() == []


@pytest.mark.parametrize("query", ["since=yesterday", "until=2025-13-01", "action=label_deleted", "study=1.a",
                                   "limit=0", "limit=1001", "offset=-1", "since=2025-02-01&until=2025-01-01"])
def test_bad_audit_filters_are_422(make_client: Callable[..., TestClient], query: str) -> None:
    assert make_client().get(f"/hope/audit?{query}").status_code == 422


def test_no_route_writes_the_audit_log(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/hope/audit").status_code == 405
