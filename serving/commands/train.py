"""``dermtriage train --config FILE``: train, calibrate, evaluate and register a classifier."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
from pathlib import Path

from serving.settings import PROJECT_ROOT, get_settings

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a classifier and register it in MLflow")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config")
    parser.add_argument("--epochs", type=int, default=None, help="override the config")
    parser.add_argument("--image-size", type=int, default=None, help="override the config")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    parser.add_argument("--work-dir", type=Path, default=None, help="checkpoints (resume)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument(
        "--finalize",
        action="store_true",
        help="stop an interrupted run: calibrate, evaluate and log its best checkpoint",
    )
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help="a data folder in derm-dev's layout; repeat for several (split by lesion over all "
        "of them); default: DERMTRIAGE_DATASET_DIR and DERMTRIAGE_EXTRA_DATASET_DIRS",
    )
    parser.add_argument(
        "--holdout-source",
        default=None,
        metavar="SOURCE",
        help="test on every image of this metadata 'dataset' source, train on the others",
    )
    parser.add_argument("--no-register", action="store_true", help="log the run only")
    parser.add_argument("--export", type=Path, default=None, help="also write a model folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.export import export_model_dir
    from training.train import train

    settings = get_settings()
    config = load_config(
        args.config,
        epochs=args.epochs,
        image_size=args.image_size,
        device=args.device,
        register_model=False if args.no_register else None,
        holdout_source=args.holdout_source,
    )
    data_dirs = args.data or settings.dataset_dirs
    missing = [str(d) for d in data_dirs if not (d / "metadata.csv").is_file()]
    if missing:
        logger.error("no metadata.csv in %s", ", ".join(missing))
        return 2
    work_dir = args.work_dir or settings.data_dir / "training" / args.config.stem
    result = train(
        config,
        dataset_dir=data_dirs,
        work_dir=work_dir,
        tracking_uri=settings.tracking_uri,
        artifact_root=settings.artifact_root if not settings.mlflow_tracking_uri else None,
        registered_model_name=settings.registered_model_name,
        user=getpass.getuser(),
        resume=args.resume,
        finalize=args.finalize,
    )
    if args.export:
        export_model_dir(result, config, args.export, dataset_dir=data_dirs)
    print(
        json.dumps(
            {
                "run_id": result.run_id,
                "model_uri": result.model_uri,
                "registered_version": result.registered_version,
                "temperature": round(result.temperature, 4),
                "test": {k: round(v, 4) for k, v in result.test_metrics.items()},
            },
            indent=2,
        )
    )
    return 0
