"""``dermtriage score DIR --out FILE.csv``: score every photo in a folder, in batches.

Only photos within the model's intended use (dermoscopic images, as the photo-modality check
reads them) get probabilities; the others get a row with the domain and the reason. On a fresh
install, before ``dermtriage serve`` has registered anything, the registry has no champion: the
command then scores with the shipped model (``models/shipped/``) and says so in one line. A
``--model`` that cannot be loaded is a one-line error, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from serving.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("score", help="score every image in a folder into a CSV")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument(
        "--model",
        default=None,
        help="MLflow model URI (default: the champion; the shipped model when the registry "
        "has none)",
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.set_defaults(func=run)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_predictor(model: str | None, settings: Settings, device: str):  # -> Predictor
    """The model to score with, or ``None`` after printing a one-line error.

    With no ``--model``: the registry's champion, or the shipped model when the registry cannot
    give one (a fresh install), said in one line on stderr."""
    from models.predictor import Predictor

    uri = model or settings.model_uri
    try:
        return Predictor.load(uri, tracking_uri=settings.tracking_uri, device=device)
    except Exception as exc:  # MLflow raises many kinds; each is one line for the user
        logger.debug("cannot load %s", uri, exc_info=True)
        if model is not None:
            print(f"dermtriage score: cannot load model {model!r}: {_first_line(exc)}",
                  file=sys.stderr)  # fmt: skip
            return None
        reason = _first_line(exc)
    predictor = Predictor.from_directory(settings.shipped_model_dir, device=device)
    print(
        f"dermtriage score: no {uri} in the registry ({reason}); scoring with the shipped "
        f"model {predictor.version} from {settings.shipped_model_dir}",
        file=sys.stderr,
    )
    return predictor


def run(args: argparse.Namespace) -> int:
    from models.batch_scoring import score_directory
    from models.device import resolve_device
    from models.modality import ModalityCheck

    settings = get_settings()
    if not args.directory.is_dir():
        print(f"dermtriage score: {args.directory} is not a folder", file=sys.stderr)
        return 2
    device = str(resolve_device(args.device))
    predictor = load_predictor(args.model, settings, device)
    if predictor is None:
        return 2
    modality = ModalityCheck()
    tally = score_directory(
        predictor,
        args.directory,
        args.out,
        modality,
        batch_size=args.batch_size or settings.inference_batch_size,
    )
    logger.info(
        "scored %d files, %d outside the intended use (not scored), %d unreadable, with %s "
        "and modality check %s into %s",
        tally.scored,
        tally.not_applicable,
        tally.unreadable,
        predictor.version,
        modality.version,
        args.out,
    )
    return 0
