"""Scoring a folder of photos in batches, one CSV row per file, never stopping on a bad file.

Each file is decoded once, at the reduced size that both the quality checks and the network need,
checked for quality, checked for modality (:mod:`models.modality`) and, when it is a dermoscopic
image (the model's intended use), scored in batches. A photo outside the intended use gets a row
with empty probabilities, its ``domain`` and the reason in ``error``; a file that cannot be read
gets a row that says so: an archive re-scoring must account for every file it was given.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from models.intended_use import ChecksModality, score_within_intended_use
from models.modality import ModalityVerdict, reason_text
from models.network import CLASSES
from models.predictor import Prediction, Predictor
from pipeline.intake import IntakeError, decode_image
from pipeline.quality import QualityResult, assess_image

logger = logging.getLogger(__name__)

CSV_COLUMNS: tuple[str, ...] = (
    "image_id",
    "p_malignant",
    *(f"p_{c}" for c in CLASSES),
    "predicted_class",
    "uncertainty",
    "domain",
    "ood",
    "quality_acceptable",
    "quality_problems",
    "model_version",
    "error",
)
# Decode big phone photos at about this long side: enough for quality checks and the network.
DECODE_SIDE = 1024


@dataclass(frozen=True)
class ScoredFile:
    """One file's outcome: a prediction and quality verdict, or the reason it could not be read
    or was not scored (a photo outside the model's intended use: ``verdict`` says which)."""

    path: Path
    prediction: Prediction | None
    quality: QualityResult | None
    error: str | None
    verdict: ModalityVerdict | None = None

    def row(self, model_version: str) -> dict[str, object]:
        """The CSV row for this file."""
        row: dict[str, object] = dict.fromkeys(CSV_COLUMNS, "")
        row["image_id"] = self.path.stem
        row["model_version"] = model_version
        if self.quality is not None:
            row["quality_acceptable"] = self.quality.acceptable
            row["quality_problems"] = ";".join(p.code for p in self.quality.problems)
        if self.verdict is not None:
            row["domain"] = self.verdict.domain
            row["ood"] = self.verdict.ood if self.verdict.applicable else ""
        if self.error is not None and self.verdict is not None:
            row["error"] = self.error  # read, but outside the intended use: not scored
        elif self.error is not None:
            row["error"] = self.error
            row["quality_acceptable"] = False
            row["quality_problems"] = row["quality_problems"] or "unreadable_file"
        if self.prediction is not None:
            row["p_malignant"] = f"{self.prediction.p_malignant:.6f}"
            for c in CLASSES:
                row[f"p_{c}"] = f"{self.prediction.probabilities[c]:.6f}"
            row["uncertainty"] = f"{self.prediction.uncertainty:.6f}"
            row["predicted_class"] = self.prediction.predicted_class
        return row


def list_files(directory: Path) -> list[Path]:
    """Every regular file directly in ``directory`` (not only image suffixes), sorted by name.

    Content, not the name, decides what an image is; a misnamed photo is still scored and a
    non-image gets its own error row rather than vanishing from the output.
    """
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def _batches(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _decode(path: Path, max_bytes: int, max_pixels: int) -> tuple[Image.Image, QualityResult]:
    data = path.read_bytes()
    decoded = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, max_side=DECODE_SIDE)
    quality = assess_image(decoded.image, original_size=decoded.original_size, lang="en")
    return decoded.image, quality


def score_files(
    predictor: Predictor,
    files: Iterable[Path],
    modality: ChecksModality,
    *,
    batch_size: int = 32,
    max_bytes: int = 25 * 1024 * 1024,
    max_pixels: int = 50_000_000,
) -> Iterator[ScoredFile]:
    """Score ``files`` in batches; yields one :class:`ScoredFile` per file, in order."""
    for batch in _batches(files, batch_size):
        decoded: list[tuple[Path, Image.Image, QualityResult]] = []
        failed: dict[Path, str] = {}
        for path in batch:
            try:
                image, quality = _decode(path, max_bytes, max_pixels)
                decoded.append((path, image, quality))
            except IntakeError as exc:
                failed[path] = f"{exc.code}: {exc.message}"
            except OSError as exc:
                failed[path] = f"unreadable: {exc}"
        outcomes = score_within_intended_use(
            predictor, modality, [image for _, image, _ in decoded]
        )
        scored = {
            path: ScoredFile(
                path,
                outcome.prediction,  # type: ignore[arg-type]
                quality,
                None if outcome.scored else _not_applicable(outcome.verdict),
                outcome.verdict,
            )
            for (path, _, quality), outcome in zip(decoded, outcomes, strict=True)
        }
        for path in batch:
            if path in failed:
                logger.warning("cannot score %s: %s", path.name, failed[path])
                yield ScoredFile(path, None, None, failed[path])
            else:
                yield scored[path]


def _not_applicable(verdict: ModalityVerdict) -> str:
    """The ``error`` cell of a photo outside the intended use: code, then the sentence."""
    assert verdict.reason is not None
    return f"{verdict.reason}: {reason_text(verdict.reason, 'en')}"


@dataclass(frozen=True)
class ScoringTally:
    """What a folder's scoring did: files scored, refused (outside the intended use), unreadable."""

    scored: int
    not_applicable: int
    unreadable: int


def score_directory(
    predictor: Predictor,
    directory: Path,
    out_csv: Path,
    modality: ChecksModality,
    *,
    batch_size: int = 32,
) -> ScoringTally:
    """Write one CSV row per file in ``directory``."""
    files = list_files(directory)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    scored = failed = refused = 0
    tmp = out_csv.with_suffix(out_csv.suffix + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for result in score_files(predictor, files, modality, batch_size=batch_size):
            writer.writerow(result.row(predictor.version))
            if result.prediction is not None:
                scored += 1
            elif result.verdict is not None:
                refused += 1
            else:
                failed += 1
    tmp.replace(out_csv)
    return ScoringTally(scored=scored, not_applicable=refused, unreadable=failed)
