"""The shipped lesion segmenter on real phone photos, and its latency on one CPU thread.

``python -m benchmarks.segmenter_sheet [--count 16] [--out docs/img/segmenter-clinical-phone.jpg]``

Draws the predicted outline on clinical (not dermoscopic) photos of ``clinical-phone``, chosen
by ``benchmarks/clinical_phone_labels.csv`` (``modality=clinical``), evenly over the sorted file
names so the choice is not ours, and prints the time per photo of :func:`models.segmenter.segment`
on one thread: a derm-dev size photo and a 12-MP one (decoded pixels in, mask out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageOps

from models.segmenter import shipped_segmenter

PROJECT = Path(__file__).resolve().parents[1]
PHONE_DIR = PROJECT.parent / "shared" / "data" / "clinical-phone" / "images"
LABELS = PROJECT / "benchmarks" / "clinical_phone_labels.csv"
TILE = 240


def choose(count: int) -> list[str]:
    labels = pd.read_csv(LABELS)
    clinical = sorted(labels.loc[labels["modality"] == "clinical", "file"])
    picks = np.linspace(0, len(clinical) - 1, count).round().astype(int)
    return [clinical[i] for i in picks]


def tile(path: Path) -> Image.Image:
    """The photo (upright, as its EXIF says) reduced to a tile, with the outline in green."""
    with Image.open(path) as img:
        photo = ImageOps.exif_transpose(img).convert("RGB")
    photo.thumbnail((1024, 1024))
    result = shipped_segmenter().segment(photo)
    rgb = np.asarray(photo).copy()
    contours, _ = cv2.findContours(
        result.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(rgb, contours, -1, (0, 255, 0), max(2, rgb.shape[1] // 150))
    out = Image.fromarray(rgb)
    out.thumbnail((TILE, TILE))
    canvas = Image.new("RGB", (TILE, TILE + 16), "white")
    canvas.paste(out, ((TILE - out.width) // 2, 0))
    share = 100 * result.mask.mean()
    ImageDraw.Draw(canvas).text((4, TILE + 2), f"{path.name}  {share:.0f} % lesion", fill="black")
    return canvas


def latency(repeats: int = 20) -> dict[str, float]:
    torch.set_num_threads(1)
    segmenter = shipped_segmenter()
    rng = np.random.default_rng(0)
    out = {}
    for name, shape in (("224 px", (224, 224, 3)), ("12 MP", (3000, 4000, 3))):
        rgb = rng.integers(0, 255, shape, np.uint8)
        segmenter.segment(rgb)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            segmenter.segment(rgb)
            times.append(time.perf_counter() - start)
        out[name] = 1000 * float(np.median(times))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument(
        "--out", type=Path, default=PROJECT / "docs/img/segmenter-clinical-phone.jpg"
    )
    args = parser.parse_args()
    print("one thread, median ms per photo:", latency())
    tiles = [tile(PHONE_DIR / name) for name in choose(args.count)]
    columns = 4
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + 16)), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % columns) * TILE, (i // columns) * (TILE + 16)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=80, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB, {len(tiles)} photos")


if __name__ == "__main__":
    main()
