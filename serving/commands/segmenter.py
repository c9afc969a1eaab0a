"""``dermtriage train-segmenter``: train the learned lesion outline of :mod:`models.segmenter`.

Trains on derm-dev and ham-extra (their ``masks/``), split by lesion over both folders, checks
it on the held-out lesions, and writes the weights and their card, by default over the shipped
ones (``models/segmenter/``): like the blur detector, the file is part of the code's version,
reviewed and committed like it; each run is also logged to MLflow (experiment
``dermtriage-segmenter``). A stopped run resumes from its checkpoint when run again with the
same options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from serving.settings import get_settings

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "models" / "segmenter"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-segmenter",
        help="train the lesion segmenter used by the photo-quality checks",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--epochs", type=int, default=3, help="passes, one photo per lesion")
    parser.add_argument("--size", type=int, default=128, help="network input side, pixels")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--limit", type=int, default=None, help="at most N training lesions")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--extra-dir",
        type=Path,
        default=None,
        help="second folder with masks (default: ham-extra beside the data set)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for weights+card")
    parser.add_argument("--no-track", action="store_true", help="do not log the run to MLflow")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.segmenter import SegmenterConfig, log_run, train_segmenter

    if args.epochs < 1 or not 64 <= args.size <= 512:
        raise SystemExit("dermtriage train-segmenter: --epochs >= 1 and 64 <= --size <= 512")
    settings = get_settings()
    extra_dir = args.extra_dir or settings.dataset_dir.parent / "ham-extra"
    config = SegmenterConfig(
        epochs=args.epochs,
        image_size=args.size,
        batch_size=args.batch_size,
        seed=args.seed,
        limit=args.limit,
        threads=args.threads,
    )
    checkpoints = settings.data_dir / "training" / "segmenter" / "checkpoints"
    result = train_segmenter(
        settings.dataset_dir,
        extra_dir if (extra_dir / "metadata.csv").is_file() else None,
        args.out,
        config,
        checkpoint_dir=checkpoints,
        progress=lambda line: print(line, flush=True),
    )
    if not args.no_track:
        artifact_root = settings.artifact_root if not settings.mlflow_tracking_uri else None
        run_id = log_run(result, args.out, settings.tracking_uri, artifact_root)
        print(f"MLflow run {run_id} (experiment dermtriage-segmenter)")
    test = result.card["test"].get("all", {})
    print(
        f"{args.out}: version {result.card['version']}; test mean IoU "
        f"{test.get('mean_iou', float('nan')):.3f}, Dice {test.get('mean_dice', float('nan')):.3f}"
    )
    (checkpoints / "last.pt").unlink(missing_ok=True)
    return 0
