"""``dermtriage governance check``: the real-world alert as an exit code, on SQLite and PostgreSQL.

A real local MLflow store (the settings' default under ``DERMTRIAGE_DATA_DIR``) holds one tiny
logged model, registered per test under a name of its own as version 1 and made champion, with
the figure it was registered with. The database holds sixteen closed, validated cases scored by
that version: two cancers it called (0.80), twelve it missed (0.10) and two benign ones. Live
sensitivity 2/14 = 0.143, whose 95 % interval stays far below 0.90 and well above 0.01.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
import torch

from serving.cli import main
from serving.db import Case, Database
from serving.db.models import Photo, Report, Score
from serving.settings import Settings, get_settings
from training.registry import CHAMPION, open_client, register_version

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(data folder, model URI): the default local MLflow store with one tiny model logged."""
    data_dir = tmp_path_factory.mktemp("data")
    tracking_uri = Settings(data_dir=data_dir, mlflow_tracking_uri=None).tracking_uri
    (data_dir / "mlflow").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mlflow.set_tracking_uri(tracking_uri)
        try:
            experiment = open_client(tracking_uri).create_experiment(
                "check-tests", artifact_location=(data_dir / "mlflow" / "artifacts").as_uri()
            )
            with mlflow.start_run(experiment_id=experiment):
                info = mlflow.pytorch.log_model(
                    torch.nn.Linear(7, 7), name="model", pip_requirements=["torch"],
                    serialization_format="pickle",
                )  # fmt: skip
        finally:
            mlflow.set_tracking_uri(None)
    yield data_dir, info.model_uri


def champion(store: tuple[Path, str], figures: dict[str, float], database_url: str, monkeypatch):
    """Register version 1 of a fresh model name with ``figures``, make it champion, point the
    settings at the store and the database; the model name."""
    data_dir, model_uri = store
    name = f"dermtriage-check-{uuid.uuid4().hex[:8]}"
    for key in ("MLFLOW_TRACKING_URI", "DERMTRIAGE_MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DERMTRIAGE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DERMTRIAGE_REGISTERED_MODEL_NAME", name)
    monkeypatch.setenv("DERMTRIAGE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    client = open_client(get_settings().tracking_uri)
    version = register_version(client, name, model_uri, figures).version
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return name


def seed_cases(database_url: str, label: str) -> None:
    """Sixteen closed cases scored by ``label``, each with a validated coded report."""
    scores = [(0.80, "melanoma")] * 2 + [(0.10, "melanoma")] * 12 + [(0.10, "naevus")] * 2
    db = Database(database_url)
    db.upgrade()
    with db.session() as session:
        for k, (p, code) in enumerate(scores):
            submitted = T0 + timedelta(hours=k)
            case = Case(
                status="closed", submitted_at=submitted, updated_at=submitted,
                requester_id="dr-martin", requester_name="Dr Claire Martin",
                requester_organisation="Cabinet", centre="crd-lyon",
                patient_pseudonym=f"CHK-{k}", questionnaire={"age": 60}, scoring_state="done",
                first_read_at=submitted + timedelta(hours=2),
            )  # fmt: skip
            photo = Photo(
                position=0, kind="dermoscopy", sha256="0" * 64, mime="image/jpeg", width=224,
                height=224, size_bytes=1000, thumbnail_sha256="1" * 64, quality_acceptable=True,
                created_at=submitted,
            )  # fmt: skip
            case.photos.append(photo)
            session.add(case)
            session.flush()
            session.add(
                Score(
                    case=case, photo_id=photo.id, photo_position=0, model_version=label,
                    p_malignant=p, uncertainty=0.0, predicted_class="nv", superseded=False,
                    role="champion", created_at=submitted + timedelta(minutes=1),
                )
            )  # fmt: skip
            case.report = Report(
                conduct="monitor", interval=6, diagnosis="", diagnosis_code=code, text="Avis.",
                author_id="dr-bernard", author_name="Dr Bernard",
                written_at=submitted + timedelta(hours=3), validated_by_id="pr-dubois",
                validated_by_name="Pr Dubois", validated_at=submitted + timedelta(hours=4),
            )  # fmt: skip
    db.dispose()


def test_a_champion_below_its_registered_sensitivity_exits_3_with_one_line(
    store, database_url, monkeypatch, capsys
):
    name = champion(store, {"sens_at_operating_point": 0.90}, database_url, monkeypatch)
    seed_cases(database_url, f"{name}/1")
    assert main(["governance", "check"]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ALERT {name}/1: live sensitivity 0.143")
    assert "14 cancers" in lines[0]
    assert lines[0].endswith("below the registered sens_at_operating_point 0.900")


def test_a_champion_within_its_registered_figure_exits_0(store, database_url, monkeypatch, capsys):
    """A version registered before the operating-point figure answers to sens_at_95_spec."""
    name = champion(store, {"sens_at_95_spec": 0.05}, database_url, monkeypatch)
    seed_cases(database_url, f"{name}/1")
    assert main(["governance", "check"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"ok {name}/1: live sensitivity 0.143 (14 cancers)"
    ]


def test_the_governance_pdf_carries_the_real_world_section(
    store, database_url, monkeypatch, tmp_path
):
    from pypdf import PdfReader

    name = champion(store, {"sens_at_operating_point": 0.90}, database_url, monkeypatch)
    seed_cases(database_url, f"{name}/1")
    out = tmp_path / "audit.pdf"
    assert main(["governance", "report", "1", "--out", str(out)]) == 0
    text = " ".join(" ".join(page.extract_text() for page in PdfReader(out).pages).split())
    assert "Real-world performance" in text
    assert "16 confirmed cases, 14 cancers (reference: expert_report: 16)" in text
    assert "below the registered sens_at_operating_point 0.900" in text
    assert "0.143" in text  # the live sensitivity, 2 of 14 cancers
