"""``dermtriage models list|show|promote|rollback|challenger``: the registry from the command line.

A thin layer over :mod:`training.registry`: it reads the settings, builds the MLflow client and
prints. Promotion re-evaluates the candidate and the current champion on the candidate's test split
(``training.evaluate.evaluate_model_uri``) and moves ``champion`` only when the gates pass.
Exit codes: 0 done, 1 gates failed (nothing changed), 2 the request could not be carried out.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from serving.settings import Settings, get_settings

logger = logging.getLogger(__name__)

EXIT_GATES_FAILED = 1
EXIT_ERROR = 2

# Columns of ``models list``: header and metric key.
LIST_METRICS: tuple[tuple[str, str], ...] = (
    ("AUROC", "malignant_auroc"),
    ("SENS@95SP", "sens_at_95_spec"),
    ("SPEC@95SE", "spec_at_95_sens"),
    ("BAL.ACC", "balanced_accuracy"),
    ("ECE", "ece_malignant"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, inspect, promote and roll back models")
    actions = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="every registered version with its figures")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="one version: figures, run, lineage, history")
    show.add_argument("version")
    show.set_defaults(func=run_show)

    promote = actions.add_parser("promote", help="make a version the champion if it passes gates")
    promote.add_argument("version")
    promote.add_argument("--reason", required=True, help="why, for the audit trail")
    promote.add_argument("--user", default=None, help="who (default: your login)")
    promote.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="how far below the champion's malignant AUROC the candidate may be (default 0.01)",
    )
    promote.add_argument(
        "--sens-tolerance",
        type=float,
        default=0.0,
        help="likewise for sensitivity at 95%% specificity (default 0: no loss allowed)",
    )
    promote.set_defaults(func=run_promote)

    rollback = actions.add_parser("rollback", help="put the previous champion back in service")
    rollback.add_argument("--reason", required=True, help="why, for the audit trail")
    rollback.add_argument("--user", default=None, help="who (default: your login)")
    rollback.set_defaults(func=run_rollback)

    challenger = actions.add_parser("challenger", help="let a version shadow the champion")
    challenger.add_argument("version")
    challenger.add_argument("--reason", required=True, help="why, for the audit trail")
    challenger.add_argument("--user", default=None, help="who (default: your login)")
    challenger.set_defaults(func=run_challenger)


def _client(settings: Settings):
    from training.registry import open_client

    if not settings.mlflow_tracking_uri:  # the local store: its folder must exist for SQLite
        (settings.data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    return open_client(settings.tracking_uri)


def _user(args: argparse.Namespace) -> str:
    return args.user or getpass.getuser()


def _audited(settings: Settings, action: Callable[[], int]) -> Callable[[], int]:
    """``action``, then the registry's history copied into the service's audit trail (done or
    refused, every alias move becomes an audit event; see serving/governance_audit.py)."""

    def run() -> int:
        try:
            return action()
        finally:
            from mlflow.exceptions import MlflowException
            from sqlalchemy.exc import SQLAlchemyError

            from serving.governance_audit import sync_registry_history_in
            from training.registry import RegistryError

            try:
                sync_registry_history_in(
                    settings.sqlalchemy_url, _client(settings), settings.registered_model_name
                )
            except (SQLAlchemyError, MlflowException, RegistryError) as exc:
                logger.error("the registry change could not be written to the audit trail: %s", exc)

    return run


def _guarded(action: Callable[[], int]) -> int:
    """Turn a refused registry request into a message and exit code instead of a traceback."""
    from mlflow.exceptions import MlflowException

    from training.registry import GateFailed, RegistryError

    try:
        return action()
    except GateFailed as failed:
        print(failed.report.describe())
        print("champion unchanged")
        return EXIT_GATES_FAILED
    except (RegistryError, ValueError, MlflowException) as exc:
        logger.error("%s", exc)
        return EXIT_ERROR


def _cell(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def run_list(args: argparse.Namespace) -> int:
    from training.registry import list_versions

    settings = get_settings()

    def action() -> int:
        summaries = list_versions(_client(settings), settings.registered_model_name)
        if args.json:
            print(json.dumps([_plain(s) for s in summaries], indent=2))
            return 0
        header = ["VERSION", "ALIASES", *(h for h, _ in LIST_METRICS), "TRAINED_BY", "CREATED"]
        rows = [
            [
                s.version,
                ",".join(s.aliases) or "-",
                *(_cell(s.metrics.get(key)) for _, key in LIST_METRICS),
                s.trained_by or "-",
                s.created or "-",
            ]
            for s in summaries
        ]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        print(f"{settings.registered_model_name} ({len(rows)} versions)")
        for row in [header, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return 0

    return _guarded(action)


def _plain(summary: Any) -> dict[str, Any]:
    data = asdict(summary)
    data["aliases"] = list(summary.aliases)
    return data


def run_show(args: argparse.Namespace) -> int:
    from training.registry import show_version

    settings = get_settings()

    def action() -> int:
        details = show_version(_client(settings), settings.registered_model_name, args.version)
        print(json.dumps(details, indent=2, default=str))
        return 0

    return _guarded(action)


def run_promote(args: argparse.Namespace) -> int:
    from training.registry import GatePolicy, RegistryError, get_version, promote

    settings = get_settings()
    # Imported before the registry is touched, so that a missing evaluator fails first.
    from training.evaluate import evaluate_model_uri

    def action() -> int:
        client = _client(settings)
        name = settings.registered_model_name
        run_id = get_version(client, name, args.version).run_id
        if not run_id:
            raise RegistryError(f"{name} version {args.version} has no run, hence no test split")

        def evaluate(model_uri: str) -> dict[str, float]:
            # ``models:/name/N`` -> the version's artefact folder, through this client: MLflow's
            # loaders resolve registry URIs with the process-wide registry, not ours.
            ref = model_uri.removeprefix(f"models:/{name}/")
            artifacts = client.get_model_version_download_uri(name, ref)
            logger.info(
                "evaluating %s (%s) on the test split of run %s", model_uri, artifacts, run_id
            )
            return evaluate_model_uri(
                artifacts,
                tracking_uri=settings.tracking_uri,
                dataset_dir=settings.dataset_dirs,
                split_of_run=run_id,
            )

        record = promote(
            client,
            name,
            args.version,
            user=_user(args),
            reason=args.reason,
            evaluate=evaluate,
            policy=GatePolicy(auroc_tolerance=args.tolerance, sens_tolerance=args.sens_tolerance),
        )
        for gate in (record.gates or {}).get("gates", []):
            print(f"  [ok] {gate['name']}: {gate['detail']}")
        print(
            f"{name} version {record.version} is now champion "
            f"(was {record.previous_champion or 'none'}), by {record.user} at {record.at}"
        )
        return 0

    return _guarded(_audited(settings, action))


def run_rollback(args: argparse.Namespace) -> int:
    from training.registry import rollback

    settings = get_settings()

    def action() -> int:
        name = settings.registered_model_name
        record = rollback(_client(settings), name, user=_user(args), reason=args.reason)
        print(
            f"{name} champion rolled back from version {record.previous_champion} to "
            f"{record.version}, by {record.user} at {record.at}"
        )
        return 0

    return _guarded(_audited(settings, action))


def run_challenger(args: argparse.Namespace) -> int:
    from training.registry import set_challenger

    settings = get_settings()

    def action() -> int:
        name = settings.registered_model_name
        record = set_challenger(
            _client(settings), name, args.version, user=_user(args), reason=args.reason
        )
        print(f"{name} version {record.version} is now challenger, by {record.user} at {record.at}")
        return 0

    return _guarded(_audited(settings, action))
