"""Closing the loop: the centre's validated cases train a challenger that earns its promotion.

84 closed cases (twelve per class, real derm-dev photos, each its own patient) are exported with
``dermtriage dataset export``, a tiny model is trained on that folder alone with ``dermtriage
train --data`` and registered, made challenger, shadow-scores the live cases beside the shipped
champion, is compared with it and promoted through the gates: the real command line, SQLite, the
photo store and a real local MLflow store. About a minute on two cores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from serving.cli import main
from serving.db.models import Score
from serving.db.session import Database
from serving.settings import PROJECT_ROOT, Settings, get_settings
from serving.shadow_scoring import ShadowScorer, default_challenger_source
from serving.storage import PhotoStore
from tests.serving.closed_cases import CODE_OF_CLASS, add_closed_case
from training.bootstrap import register_shipped_model
from training.governance import compare_metrics, version_dossier
from training.registry import CHALLENGER, CHAMPION, alias_version, open_client, promotion_history

PER_CLASS = 12
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@pytest.fixture
def centre_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The command line's settings: everything under a temporary data folder."""
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(tmp_path / "data"))
    for name in ("MLFLOW_TRACKING_URI", "DERMTRIAGE_MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                 "DERMTRIAGE_DATABASE_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0, capsys.readouterr().err[-2000:]
    return capsys.readouterr().out


def test_validated_cases_train_a_challenger_that_shadows_and_is_promoted_through_the_gates(
    centre_settings: Settings,
    derm_metadata: pd.DataFrame,
    dataset_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, name = centre_settings, centre_settings.registered_model_name
    database = Database(settings.sqlalchemy_url)
    database.upgrade()
    store = PhotoStore(settings.data_dir / "photos")
    one_per_lesion = derm_metadata.sort_values("image_id").drop_duplicates("lesion_id")
    chosen = one_per_lesion.groupby("dx", group_keys=False).head(PER_CLASS)
    assert len(chosen) == 7 * PER_CLASS
    with database.session() as session:
        for i, row in enumerate(chosen.itertuples()):
            photo = (dataset_dir / "images" / f"{row.image_id}.jpg").read_bytes()
            add_closed_case(session, store, [(photo, "dermoscopy")],
                            report_code=CODE_OF_CLASS[row.dx], patient=f"PAT-{i:04d}")  # fmt: skip
    champion = register_shipped_model(
        settings.shipped_model_dir,
        tracking_uri=settings.tracking_uri,
        registered_model_name=name,
        artifact_root=settings.artifact_root,
    )
    assert champion == "1"

    export = tmp_path / "centre-export"
    exported = json.loads(cli(capsys, "dataset", "export", "--out", str(export)))
    assert (exported["cases"], exported["images"]) == (7 * PER_CLASS, 7 * PER_CLASS)

    trained = json.loads(
        cli(
            capsys,
            "train",
            "--config",
            str(PROJECT_ROOT / "configs" / "tiny.yaml"),
            "--data",
            str(export),
            "--work-dir",
            str(tmp_path / "work"),
        )
    )
    candidate = str(trained["registered_version"])
    assert candidate == "2"
    client = open_client(settings.tracking_uri)
    dossier = version_dossier(client, name, candidate)
    # Its lineage names the exported folder: what it learned from can be traced to the export.
    assert export.name in json.dumps(dossier.training_data, default=str)

    cli(capsys, "models", "challenger", candidate, "--reason", "trained on our own cases")
    shadow = ShadowScorer(
        database,
        store,
        default_challenger_source(name, settings.tracking_uri, check_seconds=0.0),
        clock=lambda: NOW,
        cases_per_pass=7 * PER_CLASS,
    )
    assert shadow.run_once() == 7 * PER_CLASS
    with database.session() as session:
        shadows = session.query(Score).filter(Score.role == "shadow").all()
        assert {s.model_version for s in shadows} == {f"{name}/{candidate}"}
        assert len(shadows) == 7 * PER_CLASS

    compared = {row.metric: row for row in compare_metrics(version_dossier(client, name, "1"),
                                                          dossier)}  # fmt: skip
    assert compared["malignant_auroc"].b == pytest.approx(dossier.metrics["malignant_auroc"])
    assert compared["malignant_auroc"].a is not None

    # The gates re-score both versions on the candidate's test split, read from the data folders
    # the settings list: a centre that trains on its exports lists them there.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DERMTRIAGE_EXTRA_DATASET_DIRS", json.dumps([str(export)]))
        get_settings.cache_clear()
        reason = "trained on the centre's cases (a tiny test model)"
        cli(capsys, "models", "promote", candidate, "--reason", reason,
            "--tolerance", "1", "--sens-tolerance", "1")  # fmt: skip
    get_settings.cache_clear()
    assert alias_version(client, name, CHAMPION) == candidate
    assert alias_version(client, name, CHALLENGER) is None
    last = promotion_history(client, name)[-1]
    assert last.version == candidate and last.gates is not None and last.gates["passed"]
    database.dispose()
