"""``dermtriage score DIR --out FILE.csv``: score every photo in a folder, in batches."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from serving.settings import get_settings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("score", help="score every image in a folder into a CSV")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--model", default=None, help="MLflow model URI (default: the champion)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models.batch_scoring import score_directory
    from models.device import resolve_device
    from models.predictor import Predictor

    settings = get_settings()
    if not args.directory.is_dir():
        logger.error("%s is not a folder", args.directory)
        return 2
    predictor = Predictor.load(
        args.model or settings.model_uri,
        tracking_uri=settings.tracking_uri,
        device=str(resolve_device(args.device)),
    )
    scored, failed = score_directory(
        predictor,
        args.directory,
        args.out,
        batch_size=args.batch_size or settings.inference_batch_size,
    )
    logger.info(
        "scored %d files (%d unreadable) with %s into %s",
        scored,
        failed,
        predictor.version,
        args.out,
    )
    return 0
