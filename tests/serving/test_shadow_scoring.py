"""Shadow mode on its own: the challenger scores beside the champion and changes nothing visible.

Real application, SQLite, photo store and derm-dev photos; two real predictors (the same
EfficientNet-Lite0 features with two different seeded heads) play champion and challenger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from serving.app import create_app
from serving.db.models import AuditEvent, Score
from serving.settings import Settings
from serving.shadow_scoring import SHADOW_SCORE, ChallengerSource, ShadowScorer
from tests.serving.conftest import sign_in

T0 = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
GP, READER = "dr-martin", "dr-bernard"


@pytest.fixture(scope="module")
def challenger_predictor():  # -> models.predictor.Predictor
    import torch

    from models.network import CalibratedClassifier, build_network
    from models.predictor import Predictor

    torch.manual_seed(1)
    network = build_network(pretrained=True)
    torch.nn.init.normal_(network.classifier.weight, std=0.5)
    return Predictor(CalibratedClassifier(network).eval(), image_size=64, version="test-model/2")


@pytest.fixture
def client(settings: Settings, real_predictor: Any) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"scoring_worker": False}))
    app.state.clock = lambda: T0
    app.state.load_predictor = lambda: real_predictor
    with TestClient(app) as test_client:
        yield test_client


def _runtime(client: TestClient) -> Any:
    return client.app.state.case_runtime  # type: ignore[attr-defined]


def _submit(client: TestClient, photos: list[bytes]) -> int:
    questionnaire = {
        "patient_pseudonym": "PAT-0042",
        "age": 61,
        "sex": "female",
        "fitzpatrick": "III",
        "body_site": "back",
        "duration": "6_12_months",
        "changed_size": True,
        "bleeding": False,
        "clinical_question": "Lésion pigmentée qui grandit, avis ?",
    }
    files = [("photos", (f"p{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    response = client.post(
        "/api/v1/cases",
        data={"questionnaire": json.dumps(questionnaire)},
        files=files,
        headers=sign_in(client, GP),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _shadow(client: TestClient, predictor: Any) -> ShadowScorer:
    runtime = _runtime(client)
    return ShadowScorer(runtime.database, runtime.store, lambda: predictor, clock=runtime.clock)


def test_the_challenger_scores_every_scored_case_once_and_the_worklist_does_not_move(
    client: TestClient, derm_images: list[Path], challenger_predictor: Any
) -> None:
    ids = [_submit(client, [p.read_bytes()]) for p in derm_images[:2]]
    _runtime(client).worker.run_once()
    before = client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["items"]
    shadow = _shadow(client, challenger_predictor)
    assert shadow.run_once() == 2
    assert shadow.run_once() == 0  # nothing left: each case is shadowed once
    after = client.get("/api/v1/cases", headers=sign_in(client, READER)).json()["items"]
    assert [(i["id"], i["score"], i["priority"]["score"]) for i in after] == [
        (i["id"], i["score"], i["priority"]["score"]) for i in before
    ]
    with _runtime(client).database.session() as session:
        scores = session.scalars(select(Score).order_by(Score.id)).all()
        rows = [(s.case_id, s.model_version, s.role, s.saliency_sha256 is None) for s in scores]
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == SHADOW_SCORE))
        audited = sorted((e.case_id, e.model_version) for e in events)
    assert sorted(r for r in rows if r[2] == "shadow") == [
        (cid, "test-model/2", "shadow", True) for cid in sorted(ids)
    ]
    assert {r[1] for r in rows if r[2] == "champion"} == {"test-model/1"}
    assert audited == [(cid, "test-model/2") for cid in sorted(ids)]


def test_without_a_challenger_shadow_mode_does_nothing(
    client: TestClient, derm_images: list[Path]
) -> None:
    _submit(client, [derm_images[0].read_bytes()])
    _runtime(client).worker.run_once()
    assert _shadow(client, None).run_once() == 0
    with _runtime(client).database.session() as session:
        assert session.scalars(select(Score.role)).all() == ["champion"]


def test_a_case_the_challenger_cannot_score_is_skipped_and_left_as_it_was(
    client: TestClient, derm_images: list[Path], challenger_predictor: Any
) -> None:
    broken = _submit(client, [derm_images[1].read_bytes()])
    fine = _submit(client, [derm_images[2].read_bytes()])
    runtime = _runtime(client)
    runtime.worker.run_once()
    with runtime.database.session() as session:
        scores = session.scalars(select(Score).where(Score.case_id == broken)).all()
        sha = next(p.sha256 for p in scores[0].case.photos)
    runtime.store.path(sha).unlink()  # the photo is gone (disk failure)
    shadow = _shadow(client, challenger_predictor)
    assert shadow.run_once() == 1  # only the fine case
    assert shadow.run_once() == 0  # the broken one is not retried in a loop
    with runtime.database.session() as session:
        roles = session.execute(select(Score.case_id, Score.role)).all()
    assert (fine, "shadow") in roles and (broken, "shadow") not in roles


def test_the_challenger_source_follows_the_alias_and_survives_registry_hiccups(
    real_predictor: Any, challenger_predictor: Any
) -> None:
    alias: dict[str, Any] = {"version": None}
    loaded: list[str] = []
    now = [0.0]

    def resolve() -> str | None:
        if alias["version"] == "unreachable":
            raise ConnectionError("registry down")
        return alias["version"]

    def load(version: str) -> Any:
        loaded.append(version)
        return {"2": challenger_predictor, "3": real_predictor}[version]

    source = ChallengerSource(resolve, load, check_seconds=30.0, monotonic=lambda: now[0])
    assert source() is None
    alias["version"] = "2"
    assert source() is None  # not re-asked before check_seconds
    now[0] = 31.0
    assert source() is challenger_predictor
    now[0] = 62.0
    assert source() is challenger_predictor and loaded == ["2"]  # same version: no reload
    alias["version"] = "unreachable"
    now[0] = 93.0
    assert source() is challenger_predictor  # a hiccup keeps the current challenger
    alias["version"] = "3"
    now[0] = 124.0
    assert source() is real_predictor and loaded == ["2", "3"]
    alias["version"] = None
    now[0] = 155.0
    assert source() is None  # alias cleared: shadow mode stops
