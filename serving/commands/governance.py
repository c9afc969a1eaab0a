"""``dermtriage governance reference|report``: the offline parts of model governance.

``reference [VERSION]`` computes and stores the training reference that the drift page compares
live weeks with (default: the champion), drawing the ROC and calibration plots when the version's
run has none; run it once per version, for example right after registering or promoting one.
``reference --shipped`` writes ``models/shipped/reference.json``, the reference a fresh
installation uses for the shipped model until one is stored in MLflow.
``report VERSION --out FILE`` writes the version's audit report PDF without the service.
``check`` computes the real-world figures of each version in service (champion, challenger) and
prints one line per alert: its live sensitivity interval lies below its registered figure.
Exit codes: 0 done (``check``: no alert), 2 the request could not be carried out, 3 (``check``)
at least one alert, for a scheduler or monitoring to act on.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path

from serving.settings import get_settings

logger = logging.getLogger(__name__)

EXIT_ERROR = 2
EXIT_ALERT = 3


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

    check = actions.add_parser(
        "check", help="alert when an in-service version's live sensitivity falls below its own"
    )
    check.set_defaults(func=run_check)


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
    from serving.governance_real_world import version_report
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
            real_world = version_report(
                settings, session, args.version, dossier.metrics, now=datetime.now(UTC)
            )
    finally:
        database.dispose()
    pdf = audit_report_pdf(
        dossier, plots=plots, live_cases=live, generated=datetime.now(UTC), real_world=real_world
    )
    args.out.write_bytes(pdf)
    print(f"wrote {args.out} ({len(pdf)} bytes)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """One line per in-service version (its live sensitivity), one ``ALERT`` line per alert."""
    from serving.db.session import Database
    from serving.governance_real_world import in_service_reports

    settings = get_settings()
    database = Database(settings.sqlalchemy_url)
    try:
        database.upgrade()
        with database.session() as session:
            reports = in_service_reports(settings, session, now=datetime.now(UTC))
    finally:
        database.dispose()
    if not reports:
        print("no version in service: nothing to check")
        return 0
    for report in reports:
        live = report.figures.overall.sensitivity
        if report.alert is not None:
            alert = report.alert
            print(
                f"ALERT {report.label}: live sensitivity {live.value:.3f} (95 % interval "
                f"{live.low:.3f} to {live.high:.3f}, {live.n} cancers) below the registered "
                f"{alert.registered_metric} {alert.registered:.3f}"
            )
        else:
            shown = "undefined" if live.value is None else f"{live.value:.3f}"
            print(f"ok {report.label}: live sensitivity {shown} ({live.n} cancers)")
    return EXIT_ALERT if any(report.alert is not None for report in reports) else 0
