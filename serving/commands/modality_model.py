"""``dermtriage fit-modality-model``: refit the photo-modality check (dermoscopic, clinical, other).

Fits :mod:`models.modality`'s head and out-of-distribution reference
(:mod:`training.modality_model`) and writes the model file, by default over the shipped one
beside the code (``models/modality_model.json``): the file is part of the code's version,
reviewed and committed like it, and its sha256 prefix is the version stored with every verdict.
Each fit is also logged to MLflow (experiment ``dermtriage-modality-check``: parameters,
figures, the file, the commit).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import models
from models.modality import MODEL_FILE
from serving.settings import get_settings

DEFAULT_OUT = Path(models.__file__).resolve().parent / MODEL_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit-modality-model",
        help="refit the photo-modality check (which photos the classifier may score)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--ham-extra", type=Path, default=None,
                        help="ham-extra folder (default: beside the data set)")  # fmt: skip
    parser.add_argument("--clinical", type=Path, default=None,
                        help="clinical-phone folder (default: beside the data set)")  # fmt: skip
    parser.add_argument("--lesions", type=int, default=1500,
                        help="dermoscopic training-split lesions to fit on")  # fmt: skip
    parser.add_argument("--clinical-variants", type=int, default=5,
                        help="augmented copies of each clinical fit photo")  # fmt: skip
    parser.add_argument("--others", type=int, default=500, help="non-skin pictures to make")
    parser.add_argument("--seed", type=int, default=0, help="sample and augmentation seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model file to write")
    parser.add_argument("--no-track", action="store_true", help="do not log the fit to MLflow")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from models.modality import load_modality_model
    from training.modality_model import fit_modality_model, log_fit

    torch.set_num_threads(max(1, args.threads))
    settings = get_settings()
    shared = settings.dataset_dir.parent
    clinical = args.clinical or shared / "clinical-phone"
    if not (clinical / "images.csv").is_file():
        raise SystemExit(f"dermtriage fit-modality-model: no clinical-phone photos at {clinical}")
    result = fit_modality_model(
        settings.dataset_dir,
        args.ham_extra or shared / "ham-extra",
        clinical,
        derm_fit=args.lesions,
        clinical_variants=args.clinical_variants,
        others=args.others,
        seed=args.seed,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.model.to_json(), separators=(",", ":")) + "\n",
                   encoding="utf-8")  # fmt: skip
    tmp.replace(args.out)
    if not args.no_track:
        artifact_root = settings.artifact_root if not settings.mlflow_tracking_uri else None
        run_id = log_fit(result, args.out, settings.tracking_uri, artifact_root)
        print(f"MLflow run {run_id} (experiment dermtriage-modality-check)")
    f = result.figures
    print(
        f"{args.out} ({load_modality_model(args.out).version}): held-out dermoscopy read "
        f"dermoscopic {100 * f['test_dermoscopic']:.1f} %, clinical-phone holdout read clinical "
        f"{100 * f['holdout_clinical']:.1f} %, non-skin read other {100 * f['holdout_other']:.1f} "
        f"%; OOD threshold {f['ood_threshold']:.3f}"
    )
    return 0
