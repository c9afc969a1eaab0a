"""The demo seeding: real derm-dev photos, scored, taken through the workflow, seeded once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from serving.db import Case, Database
from serving.demo import seed_demo
from serving.settings import Settings

NOW = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
SMALL_PLAN = {"mel": 3, "nv": 3, "bkl": 2}


def test_the_demo_is_scored_spread_over_time_and_seeded_once(
    settings: Settings, dataset_dir: Any, real_predictor: Any
) -> None:
    created = seed_demo(settings, load_predictor=lambda: real_predictor, now=NOW, plan=SMALL_PLAN)
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
