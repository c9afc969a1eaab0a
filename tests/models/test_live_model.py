"""The service's model follows the champion alias without dropping a request."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from PIL import Image

from models.live_model import LiveModel
from tests.conftest import TinyRun
from training.bootstrap import register_shipped_model
from training.registry import open_client, register_version

NAME = "dermtriage-classifier"


def test_scores_follow_the_champion_when_the_alias_moves(
    tiny_run: TinyRun, tmp_path: Path, derm_images: list[Path]
) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'registry.db'}"
    register_shipped_model(
        tiny_run.model_dir,
        tracking_uri=tracking_uri,
        registered_model_name=NAME,
        artifact_root=(tmp_path / "artifacts").as_uri(),
        experiment_name="live-model-test",
    )
    live = LiveModel(f"models:/{NAME}@champion", tracking_uri=tracking_uri, check_seconds=0)
    try:
        with Image.open(derm_images[0]) as img:
            photo = img.convert("RGB")
        before = live.predict([photo, photo])
        assert [p.model_version for p in before] == [f"{NAME}/1", f"{NAME}/1"]

        client = open_client(tracking_uri)
        first = client.get_model_version(NAME, "1")
        second = register_version(client, NAME, first.tags["logged_model_uri"], metrics={})
        futures = [live.engine.submit(photo) for _ in range(8)]  # in flight during the swap
        client.set_registered_model_alias(NAME, "champion", second.version)

        after = live.predict([photo])
        assert after[0].model_version == f"{NAME}/2"
        assert all(
            f.result(timeout=60).model_version in {f"{NAME}/1", f"{NAME}/2"} for f in futures
        )
        assert after[0].p_malignant == pytest.approx(
            before[0].p_malignant, abs=1e-5
        )  # same weights
        assert live.refresh(force=True) is False  # nothing moved since
    finally:
        live.close()
        mlflow.set_tracking_uri(tiny_run.tracking_uri)
