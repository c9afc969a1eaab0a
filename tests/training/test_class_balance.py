"""How training keeps rare lesions from being drowned by naevi, and how calibration undoes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import load_config
from training.train import calibration_bias, class_balanced_loss, class_loss_weights, train

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# derm-dev's training split, roughly: naevi three quarters, dermatofibromas one in a hundred.
COUNTS = np.array([129.0, 185.0, 408.0, 42.0, 343.0, 3025.0, 56.0])
PRIOR = torch.tensor(COUNTS / COUNTS.sum(), dtype=torch.float32)


def _loss_minimiser(weights: torch.Tensor, adjustment: torch.Tensor) -> torch.Tensor:
    """The logits that minimise the training loss when the photo tells nothing: labels drawn
    from the prior, one free logit per class."""
    labels = torch.repeat_interleave(torch.arange(len(COUNTS)), torch.tensor(COUNTS).long())
    logits = torch.zeros(len(COUNTS), requires_grad=True)
    loss_fn = class_balanced_loss(weights, adjustment)
    optimiser = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-10)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn(logits.expand(len(labels), -1), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return logits.detach()


@pytest.mark.parametrize(
    ("power", "adjustment_strength"),
    [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (0.0, 1.0), (0.5, 0.5)],
)
def test_whatever_the_balancing_the_calibrated_output_is_the_class_frequency(
    power: float, adjustment_strength: float
) -> None:
    weights = class_loss_weights(COUNTS, power)
    adjustment = adjustment_strength * PRIOR.log()
    logits = _loss_minimiser(weights, adjustment)

    calibrated = torch.softmax(logits + calibration_bias(weights, adjustment), dim=0)

    torch.testing.assert_close(calibrated, PRIOR, atol=1e-4, rtol=0)


def test_with_full_logit_adjustment_the_network_itself_favours_no_class() -> None:
    logits = _loss_minimiser(class_loss_weights(COUNTS, 0.0), PRIOR.log())

    assert float(logits.max() - logits.min()) < 1e-3


def test_a_logit_adjusted_run_ships_the_class_frequencies_as_its_calibration_bias(
    tmp_path: Path, dataset_dir: Path
) -> None:
    config = load_config(
        PROJECT_ROOT / "configs" / "tiny.yaml",
        class_weight_power=0.0,
        logit_adjustment=1.0,
        register_model=False,
    )
    result = train(
        config,
        dataset_dir=dataset_dir,
        work_dir=tmp_path / "work",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )

    model = result.model
    torch.testing.assert_close(model.logit_bias, model.class_prior.clamp_min(1e-12).log())
