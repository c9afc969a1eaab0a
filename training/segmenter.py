"""Train the lesion segmenter of :mod:`models.segmenter` on HAM10000's outlines.

Data: derm-dev (224 px) and ham-extra (150 px), both with a dermatologist-checked lesion mask
per image. The two folders share lesions, so they are split together **by lesion**: a derm-dev
lesion keeps the split the classifier gives it (:func:`training.data.config_split` with the
default training config), so no lesion the classifier is tested on is trained on here; a lesion
found only in ham-extra is split the same way (same fractions, stratified by diagnosis, seeded).
Figures are read once, on the test split, after training ends.

Each epoch shows one photo per training lesion, drawn afresh (a lesion with six photos does not
weigh six times), through albumentations chosen for phone photos: any crop, zoom-out, rotation
and flip, colour and white balance, blur, grain and JPEG. Loss: Dice plus binary cross-entropy
(Dice for the overlap the figures measure, cross-entropy for stable gradients early on).
The run is checkpointed every few dozen steps and resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import mlflow
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from models.network import IMAGENET_MEAN, IMAGENET_STD
from models.segmenter import (
    DEFAULT_SIZE,
    DEFAULT_THRESHOLD,
    Segmenter,
    build_segmenter,
    iou_and_dice,
    save_weights,
)
from training import tracking
from training.config import TrainConfig
from training.data import config_split, lesion_disjoint_split, load_metadata
from training.seeding import seed_everything

logger = logging.getLogger(__name__)

#: The MLflow experiment every run is logged to.
EXPERIMENT = "dermtriage-segmenter"
_PROJECT_DIR = Path(__file__).resolve().parents[1]
#: Images are decoded once at this multiple of the training size, so crops keep some detail.
_PRELOAD_FACTOR = 1.25
#: Validation photos scored after each epoch (a sample: the full split is read at the end).
_VAL_SAMPLE = 300


@dataclass
class SegmenterConfig:
    """What a run depends on; written into the card and MLflow."""

    epochs: int = 3
    image_size: int = DEFAULT_SIZE
    batch_size: int = 24
    learning_rate: float = 1.5e-3
    weight_decay: float = 1e-4
    seed: int = 2026
    limit: int | None = None  # at most this many training lesions (tests, smoke runs)
    checkpoint_every: int = 40  # steps
    threads: int = 2


@dataclass
class SegmenterResult:
    """A trained segmenter with its split and figures."""

    segmenter: Segmenter
    split: pd.DataFrame
    card: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    test_rows: pd.DataFrame | None = None


# --- data -------------------------------------------------------------------------------------


def load_sources(derm_dir: Path, extra_dir: Path | None) -> pd.DataFrame:
    """Both folders' metadata, one frame: ``source`` (folder name), ``image_path``,
    ``mask_path``; images without a mask file are dropped (none are, in the shipped data)."""
    frames = []
    for folder in (derm_dir, extra_dir):
        if folder is None:
            continue
        frame = load_metadata(Path(folder))
        frame["source"] = Path(folder).name
        frame["mask_path"] = [
            str(Path(folder) / "masks" / f"{image_id}.png") for image_id in frame["image_id"]
        ]
        frames.append(frame[frame["mask_path"].map(lambda p: Path(p).is_file())])
    return pd.concat(frames, ignore_index=True)


def segmenter_split(derm_metadata: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``split`` column, lesion-disjoint over both folders (module docstring)."""
    config = TrainConfig()
    classifier = config_split(derm_metadata, config)
    split_of = dict(zip(classifier["lesion_id"], classifier["split"], strict=False))
    others = frame[~frame["lesion_id"].isin(split_of)]
    if len(others):
        extra = lesion_disjoint_split(
            others,
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            seed=config.seed + 7,
        )
        split_of.update(zip(extra["lesion_id"], extra["split"], strict=False))
    out = frame.copy()
    out["split"] = out["lesion_id"].map(split_of)
    return out


def _read_pair(image_path: str, mask_path: str, side: int | None) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(image_path) as img:
        rgb = np.asarray(img.convert("RGB"))
    with Image.open(mask_path) as msk:
        mask = (np.asarray(msk.convert("L")) > 127).astype(np.uint8)
    if side is not None:
        rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST)
    return rgb, mask


def preload(frame: pd.DataFrame, side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every image and mask decoded once, at ``side`` x ``side``."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(
            pool.map(
                lambda pair: _read_pair(*pair, side),
                zip(frame["image_path"], frame["mask_path"], strict=True),
            )
        )


def train_augmentation(size: int, seed: int | None = None) -> A.Compose:
    """What varies between a dermoscopy set and a GP's phone photo, applied to image and mask
    together: framing (crops that cut the lesion, zoom-out that makes it small, any rotation
    and flip: skin has no up), aspect (phone photos are squashed to the square), light, white
    balance and saturation, focus, grain and JPEG compression."""
    return A.Compose(
        [
            A.RandomResizedCrop(size=(size, size), scale=(0.35, 1.0), ratio=(0.7, 1.4)),
            A.Affine(
                scale=(0.55, 1.1),
                rotate=(-180, 180),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.6,
            ),
            A.HorizontalFlip(),
            A.VerticalFlip(),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.35, hue=0.06, p=0.8),
            A.RandomGamma(gamma_limit=(70, 140), p=0.3),
            A.ToGray(p=0.03),
            A.OneOf(
                [
                    A.GaussianBlur(blur_limit=(3, 7)),
                    A.MotionBlur(blur_limit=(3, 7)),
                    A.GaussNoise(std_range=(0.02, 0.08)),
                ],
                p=0.35,
            ),
            A.ImageCompression(quality_range=(35, 95), p=0.5),
            A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ],
        seed=seed,
    )


def _batch(
    pairs: list[tuple[np.ndarray, np.ndarray]], indices: np.ndarray, augment: Callable[..., Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    images, masks = [], []
    for i in indices:
        out = augment(image=pairs[i][0], mask=pairs[i][1])
        images.append(out["image"].transpose(2, 0, 1))
        masks.append(out["mask"][None].astype(np.float32))
    x = torch.from_numpy(np.stack(images)).contiguous(memory_format=torch.channels_last)
    return x, torch.from_numpy(np.stack(masks))


class DiceBCELoss(nn.Module):
    """Soft Dice (per image, averaged) plus binary cross-entropy, on logits."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
        prob = torch.sigmoid(logits).flatten(1)
        truth = target.flatten(1)
        inter = (prob * truth).sum(1)
        dice = (2 * inter + 1.0) / (prob.sum(1) + truth.sum(1) + 1.0)
        return bce + (1 - dice).mean()


def epoch_order(train: pd.DataFrame, epoch: int, seed: int) -> np.ndarray:
    """Row positions for one epoch: one photo per lesion, drawn and shuffled from the seed
    and the epoch (so a resumed run sees the same order)."""
    rng = np.random.default_rng([seed, epoch])
    picked = (
        train.assign(_key=rng.random(len(train)), _pos=np.arange(len(train)))
        .sort_values("_key")
        .drop_duplicates("lesion_id")["_pos"]
        .to_numpy()
    )
    return rng.permutation(picked)


# --- evaluation -------------------------------------------------------------------------------


def evaluate(segmenter: Segmenter, frame: pd.DataFrame) -> pd.DataFrame:
    """IoU and Dice of every photo of ``frame``, through :meth:`Segmenter.segment` (the call
    the quality checks make) on the original file, against the mask at its native size."""
    rows = []
    for row in frame.itertuples():
        rgb, truth = _read_pair(row.image_path, row.mask_path, None)
        iou, dice = iou_and_dice(segmenter.segment(rgb).mask, truth.astype(bool))
        rows.append(
            {
                "image_id": row.image_id,
                "lesion_id": row.lesion_id,
                "source": row.source,
                "iou": iou,
                "dice": dice,
            }
        )
    return pd.DataFrame(rows)


def summarise(rows: pd.DataFrame) -> dict[str, Any]:
    """Mean IoU and Dice overall and per source, and the share of photos under IoU 0.5."""

    def figures(part: pd.DataFrame) -> dict[str, float]:
        return {
            "images": len(part),
            "lesions": int(part["lesion_id"].nunique()),
            "mean_iou": round(float(part["iou"].mean()), 4),
            "median_iou": round(float(part["iou"].median()), 4),
            "mean_dice": round(float(part["dice"].mean()), 4),
            "share_iou_below_0.5": round(float((part["iou"] < 0.5).mean()), 4),
        }

    out: dict[str, Any] = {"all": figures(rows)}
    for source, part in rows.groupby("source"):
        out[str(source)] = figures(part)
    return out


# --- training ---------------------------------------------------------------------------------


def train_segmenter(
    derm_dir: Path,
    extra_dir: Path | None,
    out_dir: Path,
    config: SegmenterConfig,
    *,
    checkpoint_dir: Path | None = None,
    evaluate_test: bool = True,
    progress: Callable[[str], None] = logger.info,
) -> SegmenterResult:
    """Train, evaluate on the test split, write weights and card to ``out_dir``."""
    started = time.monotonic()
    torch.set_num_threads(config.threads)
    cv2.setNumThreads(1)
    seed_everything(config.seed)
    derm_metadata = load_metadata(Path(derm_dir))
    frame = segmenter_split(derm_metadata, load_sources(Path(derm_dir), extra_dir))
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    if config.limit is not None:
        keep = sorted(train["lesion_id"].unique())
        rng = np.random.default_rng(config.seed)
        keep = set(rng.choice(keep, size=min(config.limit, len(keep)), replace=False))
        train = train[train["lesion_id"].isin(keep)].reset_index(drop=True)
    val = frame[frame["split"] == "val"]
    val_sample = val.drop_duplicates("lesion_id").sample(
        n=min(_VAL_SAMPLE, val["lesion_id"].nunique()), random_state=config.seed
    )
    if config.limit is not None:
        val_sample = val_sample.head(max(4, config.limit // 4))
    side = round(config.image_size * _PRELOAD_FACTOR)
    progress(f"decoding {len(train)} training photos at {side} px")
    pairs = preload(train, side)

    network = build_segmenter(pretrained=True).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(train["lesion_id"].nunique() / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = min(50, max(1, total // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.02 + 0.98 * 0.5 * (
            1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))
        )

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_at)
    loss_fn = DiceBCELoss()
    history: list[dict[str, float]] = []
    start_epoch, start_step = 0, 0
    checkpoint = checkpoint_dir / "last.pt" if checkpoint_dir else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["config"] == config.__dict__:
            network.load_state_dict(state["network"])
            optimiser.load_state_dict(state["optimiser"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, start_step, history = state["epoch"], state["step"], state["history"]
            progress(f"resumed at epoch {start_epoch + 1}, step {start_step}")
        else:
            progress("checkpoint is for another configuration: starting afresh")

    def save_checkpoint(epoch: int, step: int) -> None:
        if checkpoint is None:
            return
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        torch.save(
            {
                "config": config.__dict__,
                "network": network.state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "step": step,
                "history": history,
            },
            tmp,
        )
        tmp.replace(checkpoint)

    for epoch in range(start_epoch, config.epochs):
        order = epoch_order(train, epoch, config.seed)
        batches = [
            order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)
        ]
        augment = train_augmentation(config.image_size, seed=config.seed * 1000 + epoch)
        network.train()
        losses: list[float] = []
        tick = time.monotonic()
        for step in range(start_step if epoch == start_epoch else 0, len(batches)):
            x, y = _batch(pairs, batches[step], augment)
            loss = loss_fn(network(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.item())
            if (step + 1) % 10 == 0 or step + 1 == len(batches):
                rate = 10 * config.batch_size / max(1e-6, time.monotonic() - tick)
                tick = time.monotonic()
                progress(
                    f"epoch {epoch + 1}/{config.epochs} step {step + 1}/{len(batches)} "
                    f"loss {np.mean(losses[-10:]):.4f} {rate:.1f} img/s"
                )
            if (step + 1) % config.checkpoint_every == 0:
                save_checkpoint(epoch, step + 1)
        segmenter = Segmenter(network.eval(), version="training", size=config.image_size)
        val_rows = evaluate(segmenter, val_sample)
        entry = {
            "epoch": epoch + 1,
            "train_loss": round(float(np.mean(losses)) if losses else float("nan"), 4),
            "val_mean_iou": round(float(val_rows["iou"].mean()), 4),
            "val_mean_dice": round(float(val_rows["dice"].mean()), 4),
        }
        history.append(entry)
        progress(f"epoch {epoch + 1}: {entry}")
        save_checkpoint(epoch + 1, 0)

    network = network.eval().to(memory_format=torch.contiguous_format)
    segmenter = Segmenter(network, version="training", size=config.image_size)
    test_rows = None
    figures: dict[str, Any] = {}
    if evaluate_test:
        test = frame[frame["split"] == "test"]
        if config.limit is not None:  # a smoke run: a sample of the test lesions
            test = test[
                test["lesion_id"].isin(test["lesion_id"].drop_duplicates().head(config.limit))
            ]
        progress(f"scoring {len(test)} test photos ({test['lesion_id'].nunique()} lesions)")
        test_rows = evaluate(segmenter, test)
        figures = summarise(test_rows)
        progress(f"test: {figures}")
    counts = {
        name: {
            "images": int((frame["split"] == name).sum()),
            "lesions": int(frame.loc[frame["split"] == name, "lesion_id"].nunique()),
        }
        for name in ("train", "val", "test")
    }
    card = {
        "architecture": "segmentation_models_pytorch FPN (64 channels), encoder "
        "tu-efficientnet_lite0 from offline ImageNet weights",
        "image_size": config.image_size,
        "threshold": DEFAULT_THRESHOLD,
        "input": "RGB squashed to a square, INTER_AREA, ImageNet mean/std",
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": tracking.git_commit(_PROJECT_DIR),
        "data": {
            "sources": sorted(frame["source"].unique()),
            "images": len(frame),
            "lesions": int(frame["lesion_id"].nunique()),
        },
        "split": {
            "rule": "by lesion_id over both folders; derm-dev lesions keep the classifier's "
            "split (training.data.config_split, default config); ham-extra-only lesions split "
            "with the same fractions, stratified by dx, seed 2026+7",
            "training_lesions_used": int(train["lesion_id"].nunique()),
            **counts,
        },
        "training": {**config.__dict__, "wall_seconds": round(time.monotonic() - started)},
        "history": history,
        "test": figures,
    }
    version = save_weights(network, out_dir, card)
    card["version"] = version
    segmenter = Segmenter.load(out_dir)
    return SegmenterResult(
        segmenter=segmenter, split=frame, card=card, history=history, test_rows=test_rows
    )


def log_run(
    result: SegmenterResult, out_dir: Path, tracking_uri: str, artifact_root: str | None = None
) -> str:
    """Record a run in MLflow (parameters, per-epoch and test figures, weights and card, the
    split, the commit); returns the run id. The committed files stay the shipped version."""
    card = result.card
    experiment_id = tracking.configure(tracking_uri, EXPERIMENT, artifact_root)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({k: v for k, v in card["training"].items() if k != "wall_seconds"})
        mlflow.log_params(
            {"version": card["version"], "sources": ",".join(card["data"]["sources"])}
        )
        for entry in result.history:
            mlflow.log_metrics(
                {k: v for k, v in entry.items() if k != "epoch"}, step=int(entry["epoch"])
            )
        for source, figures in card["test"].items():
            mlflow.log_metrics(
                {f"test_{source}_{k}": v for k, v in figures.items() if isinstance(v, float)}
            )
        mlflow.log_metric("wall_seconds", card["training"]["wall_seconds"])
        mlflow.set_tag("git_commit", tracking.git_commit(_PROJECT_DIR) or "unknown")
        mlflow.log_artifacts(str(out_dir), artifact_path="segmenter")
        tracking.log_frame(
            result.split[["image_id", "lesion_id", "source", "split"]], "split/split.csv"
        )
        if result.test_rows is not None:
            tracking.log_frame(result.test_rows, "test/per_image.csv")
    return run.info.run_id
