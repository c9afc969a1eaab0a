"""``dermtriage outcomes import FILE.csv --as LOGIN``: what lesions turned out to be, in bulk.

The file has a header row and one outcome per row: ``case`` (a case id or the patient's
pseudonym), ``diagnosis`` (a code of the coded-diagnosis list, or its SNOMED CT concept id),
``source`` (``histology``, ``consultation`` or ``follow_up``) and ``date`` (``YYYY-MM-DD`` or
``DD/MM/YYYY``); commas or semicolons. The outcomes are recorded in the name of ``LOGIN``, a
reader or senior of the cases' centre, exactly as from the case page (history and audit trail).

All or nothing: every bad row is printed with its line number and the command exits 1 having
recorded nothing; otherwise it records every row in one transaction and exits 0. Rows already on
record are skipped, so a file can be imported again safely. Exit 2: the file or the database
cannot be read, or LOGIN is no active account.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from serving.settings import get_settings

logger = logging.getLogger(__name__)

EXIT_BAD_ROWS = 1
EXIT_ERROR = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("outcomes", help="record lesions' outcomes")
    actions = parser.add_subparsers(dest="outcomes_command", required=True, metavar="ACTION")
    importing = actions.add_parser(
        "import", help="record outcomes from a CSV file (case, diagnosis, source, date)"
    )
    importing.add_argument("file", type=Path, help="CSV file with a header row")
    importing.add_argument(
        "--as",
        dest="login",
        required=True,
        help="the reader's or senior's account the outcomes are recorded under",
    )
    importing.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from serving.auth import load_user
    from serving.db.session import Database
    from serving.outcomes import OutcomeImportError, import_outcomes

    try:
        lines = args.file.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    database = Database(get_settings().sqlalchemy_url)
    try:
        with database.session() as session:
            user = load_user(session, args.login)
            if user is None:
                print(f"error: no active account {args.login!r}", file=sys.stderr)
                return EXIT_ERROR
            result = import_outcomes(session, lines, user, datetime.now(UTC))
    except OutcomeImportError as exc:
        for line, message in exc.errors:
            print(f"{args.file}:{line}: {message}", file=sys.stderr)
        print(f"{len(exc.errors)} bad row(s): nothing imported", file=sys.stderr)
        return EXIT_BAD_ROWS
    except SQLAlchemyError as exc:
        print(f"error: cannot record the outcomes: {type(exc).__name__}", file=sys.stderr)
        logger.debug("outcomes import failed", exc_info=True)
        return EXIT_ERROR
    finally:
        database.dispose()
    print(
        f"{result.recorded} outcome(s) recorded, "
        f"{result.already_recorded} already on record (skipped)"
    )
    return 0
