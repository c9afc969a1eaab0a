"""Latency of the photo-modality check on one CPU thread, beside the classifier's.

    python -m benchmarks.modality [--n 40] [--threads 1]

Times one photo at a time (what the service's worker does for a lone case): decoded photo in,
verdict out (centre square at 160 px, frozen EfficientNet-Lite0 features, the logistic head and
the out-of-distribution distance). The shipped classifier is timed the same way on the same
photos, in the same run, so the two figures share the machine's load. Half the photos are
derm-dev images (224 px), half clinical-phone photos (384 px). A script to run on demand, never
a timed test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.modality import ModalityCheck
from models.predictor import Predictor
from serving.settings import get_settings


def _percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"p50 {np.median(ms):.1f} ms, p95 {np.quantile(ms, 0.95):.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="photos (half of each kind)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = get_settings()
    derm = sorted((settings.dataset_dir / "images").glob("*.jpg"))[: args.n // 2]
    phone = sorted((settings.dataset_dir.parent / "clinical-phone" / "images").glob("*.jpg"))
    paths: list[Path] = derm + phone[: args.n - len(derm)]
    photos = [Image.open(p).convert("RGB") for p in paths]
    check = ModalityCheck()
    classifier = Predictor.from_directory(settings.shipped_model_dir)
    check.check(photos[:1])
    classifier.predict(photos[:1])  # warm-up
    timings: dict[str, list[float]] = {"modality check": [], "classifier (shipped)": []}
    for photo in photos:
        start = time.perf_counter()
        check.check([photo])
        timings["modality check"].append(time.perf_counter() - start)
        start = time.perf_counter()
        classifier.predict([photo])
        timings["classifier (shipped)"].append(time.perf_counter() - start)
    print(f"{len(photos)} photos, one at a time, {torch.get_num_threads()} torch thread(s)")
    for name, seconds in timings.items():
        print(f"{name:>22}: {_percentiles(seconds)}")


if __name__ == "__main__":
    main()
