"""``dermtriage evaluate-sources``: the recipe's figures on each clinic it never saw."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
from pathlib import Path

from serving.settings import PROJECT_ROOT, get_settings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-sources",
        help="leave-one-source-out: train a recipe once per held-out clinic and test on it",
    )
    parser.add_argument(
        "--config", type=Path, default=PROJECT_ROOT / "configs" / "default.yaml", help="YAML"
    )
    parser.add_argument("--data", type=Path, action="append", default=None, metavar="DIR")
    parser.add_argument("--sources", default=None, help="comma-separated; default: all of them")
    parser.add_argument("--epochs", type=int, default=None, help="override the config")
    parser.add_argument("--image-size", type=int, default=None, help="override the config")
    parser.add_argument("--work-dir", type=Path, default=None, help="checkpoints (resumable)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the summary JSON")
    parser.add_argument(
        "--attach-to",
        default=None,
        metavar="VERSION",
        help="also store the figures on this registered version (the promotion gate reads them)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.held_out_sources import attach_to_version, evaluate_sources
    from training.registry import RegistryError, open_client

    settings = get_settings()
    data_dirs = args.data or settings.dataset_dirs
    missing = [str(d) for d in data_dirs if not (d / "metadata.csv").is_file()]
    if missing:
        logger.error("no metadata.csv in %s", ", ".join(missing))
        return 2
    config = load_config(args.config, epochs=args.epochs, image_size=args.image_size)
    try:
        summary = evaluate_sources(
            config,
            dataset_dirs=data_dirs,
            work_root=args.work_dir
            or settings.data_dir / "training" / f"{args.config.stem}-sources",
            tracking_uri=settings.tracking_uri,
            artifact_root=settings.artifact_root if not settings.mlflow_tracking_uri else None,
            sources=args.sources.split(",") if args.sources else None,
            user=getpass.getuser(),
        )
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if args.attach_to:
        try:
            attach_to_version(
                open_client(settings.tracking_uri),
                settings.registered_model_name,
                args.attach_to,
                summary,
            )
        except RegistryError as exc:
            logger.error("%s", exc)
            return 2
    rows = [
        f"{name:>14}: malignant AUROC {f.get('malignant_auroc', float('nan')):.3f} "
        f"({int(f.get('n_malignant', 0))} cancers of {int(f.get('n', 0))})"
        for name, f in summary["sources"].items()
    ]
    print(
        "\n".join(
            [*rows, f"worst: {summary['worst_source']} {summary['worst_malignant_auroc']:.3f}"]
        )
    )
    return 0
