"""Weight averaging (EMA), how the best epoch is chosen, and resuming a run."""

from __future__ import annotations

from pathlib import Path

import torch

from models.network import CLASSES
from training.config import load_config
from training.train import _selection_score, train

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_with_weight_averaging_the_shipped_weights_are_the_average_and_a_run_resumes(
    tmp_path: Path, dataset_dir: Path
) -> None:
    config = load_config(
        PROJECT_ROOT / "configs" / "tiny.yaml", ema_decay=0.9, epochs=2, register_model=False
    )
    work = tmp_path / "work"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train(config, dataset_dir=dataset_dir, work_dir=work, tracking_uri=tracking_uri)

    last = torch.load(work / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    best = torch.load(work / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    shipped = result.model.network.state_dict()
    name = next(k for k in shipped if k.endswith("weight") and shipped[k].ndim == 4)
    assert last["ema"] is not None
    assert not torch.equal(last["ema"][name], last["network"][name])
    assert torch.equal(best[name], shipped[name])
    best_epoch = max(result.history, key=lambda row: row["val_score"])["epoch"]
    if best_epoch == config.epochs:
        assert torch.equal(shipped[name], last["ema"][name])

    resumed = train(
        config, dataset_dir=dataset_dir, work_dir=work, tracking_uri=tracking_uri, finalize=True
    )
    assert torch.equal(resumed.model.network.state_dict()[name], shipped[name])


def test_the_best_epoch_is_judged_by_the_shipped_decision_rule_not_the_raw_argmax() -> None:
    # Naevi are twelve of eighteen images and the raw logits always favour naevus a little, yet
    # each rare lesion's own class stands out far more than its prior alone would allow.
    nv = CLASSES.index("nv")
    rare = [i for i in range(len(CLASSES)) if i != nv]
    labels = torch.tensor([nv] * 12 + rare)
    logits = torch.full((18, len(CLASSES)), -1.0)
    logits[:12, nv] = 3.0
    logits[12:, nv] = 1.0
    for row, class_index in enumerate(rare, start=12):
        logits[row, class_index] = 0.5
    prior = torch.full((len(CLASSES),), 0.05)
    prior[nv] = 0.7

    found = _selection_score(logits, labels, torch.zeros(len(CLASSES)), prior)

    assert (logits.argmax(1) == labels).sum() == 12  # the raw argmax gets every rare one wrong
    assert found["val_balanced_accuracy"] == 1.0
    assert found["val_score"] == (found["val_malignant_auroc"] + 1.0) / 2


def test_a_checkpoint_written_before_the_option_existed_still_resumes(
    tmp_path: Path, dataset_dir: Path
) -> None:
    config = load_config(PROJECT_ROOT / "configs" / "tiny.yaml", register_model=False)
    work, tracking_uri = tmp_path / "work", f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = train(config, dataset_dir=dataset_dir, work_dir=work, tracking_uri=tracking_uri)
    last = work / "checkpoints" / "last.pt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    del state["config"]["logit_adjustment"]
    torch.save(state, last)

    resumed = train(
        config, dataset_dir=dataset_dir, work_dir=work, tracking_uri=tracking_uri, finalize=True
    )

    torch.testing.assert_close(resumed.model.logit_bias, first.model.logit_bias)
