"""Case records: the ground truth of each study (tumour type, verdict, how it was confirmed), with an audit trail.

Wiring into an app::

    vocabulary = load_vocabulary()                                   # configs/cases.yaml
    engine = make_engine(vocabulary.database_url_for())              # $HOPE_CASES_DB_URL or the configured URL
    repo = CaseRepository(engine, vocabulary, orthanc_study_exists(gateway))  # a study must be in the store

Its routes (``/cases``) are in :mod:`hope.api.cases`.
"""

from hope.cases.csv_import import CsvImportError, import_csv, import_stream
from hope.cases.models import AuditImmutableError, make_engine
from hope.cases.orthanc_lookup import StudyLookupError, orthanc_study_exists
from hope.cases.repository import (
    AuditEvent,
    Case,
    CaseBatchError,
    CaseError,
    CaseExistsError,
    CaseInput,
    CaseNotFoundError,
    CaseRepository,
    CaseValidationError,
)
from hope.cases.vocabulary import CaseVocabulary, TumorType, load_vocabulary

__all__ = [
    "AuditEvent",
    "AuditImmutableError",
    "Case",
    "CaseBatchError",
    "CaseError",
    "CaseExistsError",
    "CaseInput",
    "CaseNotFoundError",
    "CaseRepository",
    "CaseValidationError",
    "CaseVocabulary",
    "CsvImportError",
    "StudyLookupError",
    "TumorType",
    "import_csv",
    "import_stream",
    "load_vocabulary",
    "make_engine",
    "orthanc_study_exists",
]
