"""Import case records (ground truth from pathology reports) from a CSV file, all or nothing.

    .venv/bin/python scripts/import_cases.py cases.csv --who "Dr A. Jones" --reason "pathology reports 2024" \\
        [--db URL] [--orthanc http://127.0.0.1:8042/dicom-web] [--credentials FILE] [--timeout 30] [--no-progress]

Columns: study_uid, tumor_type, verdict, confirmation, notes (optional); allowed values are in configs/cases.yaml.
Every row is checked first, each new study against the DICOM store; if any row is wrong, every problem is printed
with its line number, nothing is written, and the exit code is 2. The database is --db, else $HOPE_CASES_DB_URL,
else database.url of configs/cases.yaml. Orthanc's user and password are read from --credentials (default: the file
scripts/start.sh generates, $HOPE_DATA_DIR/secrets/orthanc-credentials.json). Exit codes: 0 imported, 1 the store or
database failed, 2 invalid input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from hope.cases import (
    CaseRepository,
    CaseValidationError,
    CsvImportError,
    StudyLookupError,
    import_csv,
    load_vocabulary,
    make_engine,
    orthanc_study_exists,
)
from hope.config import REPO_ROOT, ConfigError
from hope.datastore.gateway import OrthancGateway
from hope.processes.orthanc import CREDENTIALS_FILE, OrthancCredentials
from hope.secretfile import SecretFileError

DEFAULT_ORTHANC = "http://127.0.0.1:8042/dicom-web"
DEFAULT_CREDENTIALS = Path(os.environ.get("HOPE_DATA_DIR") or REPO_ROOT / "data") / "secrets" / CREDENTIALS_FILE


def main(argv: list[str] | None = None) -> int:
    """Run the import; the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="CSV file (UTF-8)")
    parser.add_argument("--who", required=True, help="who imports (recorded in the audit trail)")
    parser.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    parser.add_argument("--db", help="SQLAlchemy database URL (default: $HOPE_CASES_DB_URL or configs/cases.yaml)")
    parser.add_argument("--orthanc", default=DEFAULT_ORTHANC, help=f"DICOMweb URL of the store ({DEFAULT_ORTHANC})")
    parser.add_argument("--credentials", type=Path, default=DEFAULT_CREDENTIALS,
                        help=f"Orthanc's user and password, JSON ({DEFAULT_CREDENTIALS}); none when it is missing")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per DICOMweb request (30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        print(f"error: {args.csv} is not a file", file=sys.stderr)
        return 2
    try:
        vocabulary = load_vocabulary()
        engine = make_engine(args.db or vocabulary.database_url_for())
        auth = OrthancCredentials.load(args.credentials).auth if args.credentials.is_file() else ()
        gateway = OrthancGateway(args.orthanc, args.timeout, *auth)
        repo = CaseRepository(engine, vocabulary, orthanc_study_exists(gateway))
        count = import_csv(args.csv, repo, args.who, args.reason, progress=not args.no_progress)
    except CsvImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CaseValidationError, UnicodeDecodeError) as exc:
        print(f"error: {args.csv}: {exc}; nothing imported", file=sys.stderr)
        return 2
    except (ConfigError, StudyLookupError, SQLAlchemyError, ModuleNotFoundError, SecretFileError) as exc:
        print(f"error: {exc}; nothing imported", file=sys.stderr)
        return 1
    print(f"{args.csv}: {count} case(s) created or changed in {engine.url.render_as_string(hide_password=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
