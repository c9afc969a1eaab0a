"""The training configuration: one typed object, read from a YAML file.

Every field has the value that trains the shipped model, so ``configs/default.yaml`` only names
what it wants to make explicit; unknown keys are refused so a typo cannot be silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """What one training run does; logged whole as the run's parameters."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    image_size: int = Field(default=224, ge=32)
    epochs: int = Field(default=12, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    drop_rate: float = Field(default=0.2, ge=0, lt=1)
    ema_decay: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="keep an exponential moving average of the weights (0: off); validated, "
        "selected and shipped in place of the raw weights",
    )
    class_weight_power: float = Field(
        default=0.5, ge=0, le=1, description="loss weight = (1 / class frequency) ** power"
    )
    logit_adjustment: float = Field(
        default=0.0,
        ge=0,
        le=2,
        description="logit-adjusted loss (Menon et al., 2021): add this times log(class "
        "frequency) to the logits inside the loss, so the network's own logits rank classes "
        "as the balanced decision does (0: off; 1 with class_weight_power 0 is the pure form)",
    )
    colour_constancy_power: float = Field(
        default=0.0,
        ge=0,
        le=16,
        description="Shades of Grey colour constancy on every model input (Finlayson and "
        "Trezzi, 2004; the Minkowski norm's power, 6 is the usual choice; 0: off). Part of the "
        "model: stored with its weights, applied by training and serving alike",
    )
    photometric_augmentation: bool = Field(
        default=False,
        description="also vary lamp colour temperature, tone curve, sensor size, noise and JPEG "
        "(what differs between clinics; see training.augment.train_transform)",
    )
    holdout_source: str | None = Field(
        default=None,
        description="leave-one-source-out: every image whose metadata 'dataset' is this source "
        "is the test split, the other sources are split into train and validation",
    )
    seed: int = 2026
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    limit_images: int | None = Field(
        default=None, ge=7, description="train on a stratified subset (tests, smoke runs)"
    )
    num_workers: int = Field(default=1, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = Field(default=True, description="bf16 autocast; on GPU only")
    channels_last: bool = True
    compile: bool = False
    register_model: bool = Field(
        default=True,
        validation_alias=AliasChoices("register_model", "register"),
        description="register the run's model in the MLflow registry (older configs say register)",
    )
    experiment_name: str = "dermtriage-classifier"
    progress: bool = True


def load_config(path: Path | None, **overrides: object) -> TrainConfig:
    """The config in ``path`` (YAML mapping) with ``overrides`` applied on top."""
    values: dict[str, object] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(loaded)}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.model_validate(values)
