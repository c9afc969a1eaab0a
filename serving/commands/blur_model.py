"""``dermtriage fit-blur-model``: refit the photo-quality check's blur detector.

Fits :mod:`pipeline.quality_blur`'s network on derm-dev photos degraded in code
(:mod:`training.blur_model`) and writes the model file, by default over the shipped one beside
the code (``pipeline/blur_model.json``): the file is part of the code's version, reviewed and
committed like it; each fit is also logged to MLflow (experiment ``dermtriage-blur-detector``:
parameters, out-of-fold figures, the file, the commit). The benchmark (``make bench-quality``)
then measures it on other lesions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pipeline
from pipeline.quality_blur import MODEL_FILE
from serving.settings import get_settings

DEFAULT_OUT = Path(pipeline.__file__).resolve().parent / MODEL_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit-blur-model",
        help="refit the blur detector of the photo-quality check",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--lesions", type=int, default=1500, help="lesions to fit on")
    parser.add_argument("--seed", type=int, default=0, help="sample and degradation seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model file to write")
    parser.add_argument("--no-track", action="store_true", help="do not log the fit to MLflow")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.blur_model import fit_blur_model, log_fit

    if args.lesions < 20:
        raise SystemExit("dermtriage fit-blur-model: --lesions must be at least 20")
    settings = get_settings()
    result = fit_blur_model(settings.dataset_dir, lesions=args.lesions, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.model.to_json(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    if not args.no_track:
        artifact_root = settings.artifact_root if not settings.mlflow_tracking_uri else None
        run_id = log_fit(result, settings.tracking_uri, artifact_root)
        print(f"MLflow run {run_id} (experiment dermtriage-blur-detector)")
    print(
        f"{args.out}: fitted on {result.model.fit['photos']} photos from "
        f"{result.model.fit['lesions']} lesions; threshold {result.model.threshold:.3f}; "
        f"out of fold: sharp flagged {100 * result.sharp_false_alarm:.2f} %, "
        f"blurred caught {100 * result.blurred_detected:.1f} %"
    )
    return 0
