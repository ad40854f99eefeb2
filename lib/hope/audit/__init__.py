"""The append-only audit log of who did what (labels, reviews, training, model versions, case records).

Wiring into the server::

    audit = AuditLog(paths.audit / "audit.sqlite")
    audit.record(identity.user, identity.verified, AuditAction.TRAINING_STARTED, detail={"task": task})

Its read-only route (``GET /hope/audit``) is in :mod:`hope.api.audit`.
"""

from hope.audit.log import AuditAction, AuditEntry, AuditLog

__all__ = ["AuditAction", "AuditEntry", "AuditLog"]
