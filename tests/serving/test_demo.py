"""The demo seeding: real derm-dev photos, scored, taken through the workflow, seeded once; an
archive of older closed cases confirmed by outcomes, so the real-world figures exist on first
start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pipeline.diagnosis import DiagnosisCode
from serving.app import create_app
from serving.db import Case, Database
from serving.demo import REPORT_CODES, choose_archive, seed_demo
from serving.settings import Settings
from tests.serving.conftest import sign_in

NOW = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
SMALL_PLAN = {"mel": 3, "nv": 3, "bkl": 2}
SMALL_ARCHIVE = {"mel": 2, "bcc": 1, "nv": 4}


def test_the_demo_is_scored_spread_over_time_and_seeded_once(
    settings: Settings, dataset_dir: Any, real_predictor: Any
) -> None:
    created = seed_demo(
        settings, load_predictor=lambda: real_predictor, now=NOW, plan=SMALL_PLAN, archive={}
    )
    assert created == 8
    database = Database(settings.sqlalchemy_url)
    with database.session() as session:
        cases = session.scalars(select(Case)).all()
        assert len(cases) == 8
        assert all(c.patient_pseudonym.startswith("DEMO-") for c in cases)
        assert all(c.scoring_state == "done" and c.case_score is not None for c in cases)
        assert all(c.case_score.model_version == "test-model/1" for c in cases)  # type: ignore[union-attr]
        assert all(c.submitted_at <= NOW for c in cases)
        assert len({c.submitted_at.date() for c in cases}) > 3  # spread over weeks
        assert {c.questionnaire["body_site"] for c in cases} <= {
            "scalp", "face", "ear", "neck", "chest", "abdomen", "back", "trunk",
            "upper extremity", "lower extremity", "hand", "foot", "acral", "genital", "other",
        }  # fmt: skip
        statuses = {c.status for c in cases}
        assert statuses & {"scored", "in_review", "info_requested", "answered"}  # some open
        assert statuses & {"validated", "closed"}  # some answered
    database.dispose()
    again = seed_demo(settings, load_predictor=lambda: real_predictor, now=NOW, plan=SMALL_PLAN)
    assert again == 0


def test_the_archive_is_closed_coded_and_confirmed_by_the_photos_true_diagnosis(
    settings: Settings, dataset_dir: Any, real_predictor: Any
) -> None:
    created = seed_demo(
        settings, load_predictor=lambda: real_predictor, now=NOW, plan={}, archive=SMALL_ARCHIVE
    )
    assert created == 7
    # Each archive case is known by its arrival: the pick's true diagnosis and how derm-dev
    # confirmed it.
    metadata = pd.read_csv(dataset_dir / "metadata.csv")
    picks = choose_archive(metadata, SMALL_ARCHIVE)  # no recent cases: nothing to leave out
    truth = {NOW - timedelta(days=p.days_ago): p for p in picks}
    database = Database(settings.sqlalchemy_url)
    with database.session() as session:
        cases = session.scalars(
            select(Case).options(selectinload(Case.outcomes), selectinload(Case.report))
        ).all()
        assert all(c.patient_pseudonym.startswith("DEMO-") for c in cases)
        assert all(c.status == "closed" and c.first_read_at is not None for c in cases)
        assert all(c.case_score.model_version == "test-model/1" for c in cases)  # type: ignore[union-attr]
        for case in cases:
            pick = truth[case.submitted_at.replace(tzinfo=UTC)]
            # First read within two days of arrival, as a resource centre does.
            waited = case.first_read_at - case.submitted_at  # type: ignore[operator]
            assert timedelta(0) < waited < timedelta(hours=48)
            report = case.report
            assert (
                report is not None
                and report.validated_at is not None
                and report.diagnosis_code is not None
            )
            for outcome in case.outcomes:
                assert outcome.diagnosis_code == REPORT_CODES[pick.dx]
                assert outcome.outcome_date > report.validated_at.date()
                assert outcome.outcome_date <= NOW.date()
        sources = {o.source for c in cases for o in c.outcomes}
        assert {"histology", "follow_up"} <= sources
        # The cancers are histology-proven.
        assert all(
            o.source == "histology"
            for c in cases
            for o in c.outcomes
            if o.diagnosis_code in (DiagnosisCode.MELANOMA, DiagnosisCode.BCC)
        )
        # A histology-proven naevus the expert reported as a suspected melanoma.
        assert any(
            c.report is not None
            and c.report.diagnosis_code == DiagnosisCode.MELANOMA
            and [o.diagnosis_code for o in c.outcomes] == [DiagnosisCode.NAEVUS]
            for c in cases
        )
    database.dispose()


MODEL_URI = "models:/dermtriage-classifier/1"


def test_the_real_world_figures_exist_on_first_start(settings: Settings, tiny_run: Any) -> None:
    """As ``make run``: the demo scored by the registered champion through the service's own
    loader; the auditor then finds figures on the version's real-world page and its API."""
    settings = settings.model_copy(
        update={"mlflow_tracking_uri": tiny_run.tracking_uri, "model_uri": MODEL_URI}
    )
    assert seed_demo(settings, plan=SMALL_PLAN, archive=SMALL_ARCHIVE) == 15
    with TestClient(create_app(settings)) as client:
        headers = sign_in(client, "audit-moreau")
        figures = client.get("/api/v1/governance/versions/1/real-world", headers=headers)
        assert figures.status_code == 200, figures.text
        found = figures.json()
        assert found["model_version"] == "dermtriage-classifier/1"
        assert found["overall"]["n_cases"] >= 7
        assert found["overall"]["n_malignant"] >= 3
        assert found["overall"]["auroc"]["value"] is not None
        assert found["overall"]["sensitivity"]["value"] is not None
        assert found["reference_sources"]["histology"] > 0
        page = client.get("/governance/versions/1/real-world")
        assert page.status_code == 200
        assert 'data-figure="auroc"' in page.text
        assert "undefined" not in page.text.split('data-figure="auroc"')[1].split("</tr>")[0]
