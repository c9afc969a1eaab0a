"""``dermtriage governance reference|report``: the offline parts of model governance.

``reference [VERSION]`` computes and stores the training reference that the drift page compares
live weeks with (default: the champion), drawing the ROC and calibration plots when the version's
run has none; run it once per version, for example right after registering or promoting one.
``reference --shipped`` writes ``models/shipped/reference.json``, the reference a fresh
installation uses for the shipped model until one is stored in MLflow.
``report VERSION --out FILE`` writes the version's audit report PDF without the service.
Exit codes: 0 done, 2 the request could not be carried out.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path

from serving.settings import get_settings

logger = logging.getLogger(__name__)

EXIT_ERROR = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("governance", help="drift reference and audit reports")
    actions = parser.add_subparsers(dest="governance_command", required=True, metavar="ACTION")

    reference = actions.add_parser("reference", help="store a version's drift reference")
    reference.add_argument("version", nargs="?", help="default: the current champion")
    reference.add_argument(
        "--shipped",
        action="store_true",
        help="instead: write models/shipped/reference.json for the shipped model folder",
    )
    reference.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    reference.set_defaults(func=run_reference)

    report = actions.add_parser("report", help="write a version's audit report PDF")
    report.add_argument("version")
    report.add_argument("--out", type=Path, required=True)
    report.set_defaults(func=run_report)


def run_reference(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from training.governance_reference import store_reference
    from training.registry import CHAMPION, RegistryError, alias_version, open_client

    settings = get_settings()
    if args.shipped:
        from training.governance_reference import write_shipped_reference

        path = write_shipped_reference(
            settings.shipped_model_dir, settings.dataset_dirs, device=args.device
        )
        print(f"wrote {path}")
        return 0
    client = open_client(settings.tracking_uri)
    name = settings.registered_model_name
    try:
        version = args.version or alias_version(client, name, CHAMPION)
        if version is None:
            raise RegistryError(f"{name} has no champion; name a version")
        reference = store_reference(
            client,
            name,
            version,
            tracking_uri=settings.tracking_uri,
            dataset_dir=settings.dataset_dirs,
            device=args.device,
        )
    except (RegistryError, ValueError, MlflowException, OSError) as exc:
        logger.error("%s", exc)
        return EXIT_ERROR
    print(f"{name} version {version}: reference stored ({reference.source})")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from serving.db.session import Database
    from serving.governance_pdf import audit_report_pdf
    from serving.governance_service import scored_counts, version_label
    from training.governance import artifact_bytes, version_dossier
    from training.registry import RegistryError, open_client

    settings = get_settings()
    client = open_client(settings.tracking_uri)
    name = settings.registered_model_name
    try:
        dossier = version_dossier(client, name, args.version)
    except (RegistryError, MlflowException) as exc:
        logger.error("%s", exc)
        return EXIT_ERROR
    plots = {}
    for plot in ("roc", "calibration"):
        if plot in dossier.plots and dossier.run_id:
            data = artifact_bytes(client, dossier.run_id, dossier.plots[plot])
            if data is not None:
                plots[plot] = data
    database = Database(settings.sqlalchemy_url)
    try:
        database.upgrade()
        with database.session() as session:
            live = scored_counts(session).get(version_label(name, args.version), {})
    finally:
        database.dispose()
    pdf = audit_report_pdf(dossier, plots=plots, live_cases=live, generated=datetime.now(UTC))
    args.out.write_bytes(pdf)
    print(f"wrote {args.out} ({len(pdf)} bytes)")
    return 0
