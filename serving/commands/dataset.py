"""``dermtriage dataset export --out DIR``: the consented, validated cases as a training set.

Writes derm-dev's layout (``images/``, ``metadata.csv``) with ``manifest.json`` and
``SHA256SUMS`` (see ``serving/dataset_export.py``), then logs the folder to MLflow as a data set
(experiment ``dermtriage-datasets``) so a model trained on it can be traced back to it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from serving.settings import PROJECT_ROOT, get_settings

logger = logging.getLogger(__name__)

#: The installation's pseudonymisation key, under the data folder (never inside an export).
KEY_FILE = "dataset-export.key"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="training sets made from the centre's cases")
    actions = parser.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write the consented, validated cases in derm-dev's layout, pseudonymised",
    )
    export.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    export.add_argument(
        "--chunk-size", type=int, default=200, help="cases read from the database at a time"
    )
    export.add_argument("--no-track", action="store_true", help="do not log it to MLflow")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from serving.dataset_export import ExportError, export_dataset, pseudonymisation_key
    from serving.db.session import Database
    from serving.storage import PhotoStore

    if args.chunk_size < 1:
        print("--chunk-size must be at least 1", file=sys.stderr)
        return 2
    settings = get_settings()
    database = Database(settings.sqlalchemy_url)
    try:
        database.upgrade()
        key = pseudonymisation_key(settings.data_dir / KEY_FILE)
        result = export_dataset(
            database,
            PhotoStore(settings.data_dir / "photos"),
            args.out,
            key=key,
            now=datetime.now(UTC),
            chunk_size=args.chunk_size,
        )
    except ExportError as exc:
        print(f"dataset export: {exc}", file=sys.stderr)
        return 2
    finally:
        database.dispose()
    summary: dict[str, object] = {
        "out": str(result.out_dir),
        "cases": result.manifest["cases"],
        "images": result.manifest["images"],
        "images_per_class": result.manifest["images_per_class"],
        "left_out": {k: v for k, v in result.manifest["left_out"].items() if k != "meaning"},
        "validated_without_consent": result.manifest["validated_without_consent"],
    }
    if not args.no_track:
        from training.dataset_tracking import log_exported_dataset

        summary["mlflow"] = log_exported_dataset(
            result.out_dir,
            tracking_uri=settings.tracking_uri,
            artifact_root=settings.artifact_root if not settings.mlflow_tracking_uri else None,
            user=getpass.getuser(),
            repo_dir=PROJECT_ROOT,
        )
    print(json.dumps(summary, indent=2))
    return 0
