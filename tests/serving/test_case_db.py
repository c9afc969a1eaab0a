"""The case database on SQLite and on PostgreSQL: migrations, time zones, workflow rows, scoring.

Every test here runs twice through the ``database_url`` fixture (SQLite file, throwaway
PostgreSQL database). The worker tests use a small Predictor-shaped class whose answers the test
chooses, to pin down the worker's own logic (retries, supersession, late scores); the real
``Predictor`` runs in the API and browser tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image
from sqlalchemy import inspect, select

from pipeline.questionnaire import parse_questionnaire
from pipeline.report import parse_report
from serving import case_service as svc
from serving.db import Base, Case, Database, Event
from serving.scoring_worker import ScoringWorker, backoff_seconds
from serving.storage import PhotoStore
from serving.users import find_user

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
GP, READER, SENIOR = find_user("dr-martin"), find_user("dr-bernard"), find_user("pr-dubois")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def database(database_url: str) -> Any:
    db = Database(database_url)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def store(tmp_path: Path) -> PhotoStore:
    return PhotoStore(tmp_path / "photos")


def questionnaire(pseudonym: str = "PAT-1", **flags: bool) -> Any:
    return parse_questionnaire(
        {
            "patient_pseudonym": pseudonym,
            "age": 70,
            "sex": "female",
            "fitzpatrick": "I",
            "body_site": "face",
            "duration": "1_5_years",
            "clinical_question": "Lésion du visage qui saigne : carcinome ?",
            **flags,
        }
    )


def new_case(
    database: Database, store: PhotoStore, photos: list[Path], at: datetime = T0, **kw: Any
) -> int:
    with database.session() as session:
        case = svc.create_case(
            session,
            store,
            GP,
            questionnaire(**kw),
            [svc.PhotoUpload(p.read_bytes()) for p in photos],
            now=at,
            max_bytes=10_000_000,
            max_pixels=50_000_000,
        )
        return case.id


def test_the_migrated_schema_is_exactly_the_models(database: Database) -> None:
    tables = set(inspect(database.engine).get_table_names())
    assert {"cases", "photos", "scores", "messages", "reports", "events"} <= tables
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    database.upgrade()  # running it again is harmless


def test_times_come_back_aware_utc_and_naive_times_are_refused(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    paris = datetime(2025, 3, 10, 10, 0, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Paris")
    )
    case_id = new_case(database, store, derm_images[:1], at=paris)
    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        assert case.submitted_at == datetime(2025, 3, 10, 10, 0, tzinfo=UTC)
        assert case.submitted_at.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive"), database.session() as session:
        session.get(Case, case_id).updated_at = datetime(2025, 1, 1)  # type: ignore[union-attr]
        session.flush()


def test_a_case_and_its_photos_are_written_together(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    case_id = new_case(database, store, derm_images[:3])
    with database.session() as session:
        case = svc.get_case(session, case_id, READER)
        assert [p.position for p in case.photos] == [0, 1, 2]
        assert all(store.exists(p.sha256) and store.exists(p.thumbnail_sha256) for p in case.photos)
        assert all(p.quality is not None for p in case.photos)
        assert [e.action for e in case.events] == ["submit"]
    with pytest.raises(svc.InvalidRequestError), database.session() as session:
        svc.create_case(
            session, store, GP, questionnaire("PAT-2"),
            [svc.PhotoUpload(derm_images[0].read_bytes()), svc.PhotoUpload(b"garbage")],
            now=T0, max_bytes=10_000_000, max_pixels=50_000_000,
        )  # fmt: skip
    with database.session() as session:
        assert session.scalars(select(Case.patient_pseudonym)).all() == ["PAT-1"]


def test_the_workflow_leaves_an_event_per_move(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    case_id = new_case(database, store, derm_images[:1])
    steps = [
        (READER, lambda s, c, u, t: svc.start_review(s, c, u, t)),
        (READER, lambda s, c, u, t: svc.request_info(s, c, u, "Depuis quand ?", t)),
        (GP, lambda s, c, u, t: svc.answer(s, c, u, "Deux mois.", t)),
        (
            READER,
            lambda s, c, u, t: svc.write_report(
                s,
                c,
                u,
                parse_report(
                    {"conduct": "urgent", "text": "Exérèse rapide.", "diagnosis_code": "bcc"}
                ),
                t,
            ),
        ),
        (SENIOR, lambda s, c, u, t: svc.validate(s, c, u, t)),
        (GP, lambda s, c, u, t: svc.close(s, c, u, t)),
    ]
    for hour, (user, step) in enumerate(steps, start=1):
        with database.session() as session:
            case = svc.get_case(session, case_id, user, for_update=True)
            step(session, case, user, T0 + timedelta(hours=hour))
    with database.session() as session:
        case = svc.get_case(session, case_id, SENIOR)
        assert case.status == "closed"
        assert case.first_read_at == T0 + timedelta(hours=1)
        assert case.closed_at == T0 + timedelta(hours=6)
        assert case.report is not None and case.report.validated_by_id == "pr-dubois"
        events = session.scalars(select(Event).where(Event.case_id == case_id)).all()
        assert [(e.action, e.actor_id, e.at.hour) for e in events] == [
            ("submit", "dr-martin", 9),
            ("start_review", "dr-bernard", 10),
            ("request_info", "dr-bernard", 11),
            ("answer", "dr-martin", 12),
            ("write_report", "dr-bernard", 13),
            ("validate", "pr-dubois", 14),
            ("close", "dr-martin", 15),
        ]


# --- the scoring worker's own logic ----------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    probabilities: dict[str, float]
    p_malignant: float
    uncertainty: float
    predicted_class: str
    model_version: str


class ScriptedPredictor:
    """Predictor-shaped: answers the p_malignant the test scripts, photo by photo (worker tests)."""

    def __init__(self, p: list[float], version: str = "scripted/1") -> None:
        self.p, self.version, self.calls = p, version, 0

    def predict(self, images: list[Image.Image]) -> list[Answer]:
        self.calls += 1
        return [
            Answer({"mel": p, "nv": 1 - p}, p, 0.2, "mel" if p > 0.5 else "nv", self.version)
            for p in self.p[: len(images)]
        ]

    def saliency(self, image: Image.Image) -> np.ndarray:
        return np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)


def test_the_case_score_is_its_riskiest_photo(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    case_id = new_case(database, store, derm_images[:3])
    worker = ScoringWorker(
        database, store, lambda: ScriptedPredictor([0.1, 0.7, 0.3]), clock=Clock()
    )
    assert worker.run_once() == 1
    with database.session() as session:
        case = svc.get_case(session, case_id, READER)
        assert case.status == "scored" and case.scoring_state == "done"
        assert len(case.current_scores) == 3
        assert case.case_score is not None and case.case_score.p_malignant == 0.7
        assert case.case_score.photo_position == 1
        assert all(store.exists(s.saliency_sha256 or "") for s in case.current_scores)


def test_failures_are_retried_with_back_off_and_never_lose_the_case(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    case_id = new_case(database, store, derm_images[:1])
    clock = Clock()
    attempts = {"n": 0}

    def flaky_loader() -> ScriptedPredictor:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise OSError("model store unreachable")
        return ScriptedPredictor([0.4])

    worker = ScoringWorker(database, store, flaky_loader, clock=clock)
    worker.run_once()
    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        assert (case.status, case.scoring_state, case.scoring_attempts) == (
            "submitted",
            "failed",
            1,
        )
        assert "model store unreachable" in (case.scoring_error or "")
        assert case.next_scoring_at == T0 + timedelta(seconds=backoff_seconds(1))
    assert worker.run_once() == 0  # not due yet
    clock.now += timedelta(seconds=backoff_seconds(1))
    assert worker.run_once() == 1
    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None and (case.status, case.scoring_state) == ("scored", "done")
        assert case.scoring_error is None
        actions = [e.action for e in session.scalars(select(Event).where(Event.case_id == case_id))]
        assert actions == ["submit", "score_failed", "score"]
    assert [backoff_seconds(n) for n in (1, 2, 3, 12)] == [30, 60, 120, 3600]


def test_a_score_arriving_after_the_review_started_keeps_the_review_state(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    case_id = new_case(database, store, derm_images[:1])
    with database.session() as session:
        svc.start_review(session, svc.get_case(session, case_id, READER), READER, T0)
    ScoringWorker(database, store, lambda: ScriptedPredictor([0.9]), clock=Clock()).run_once()
    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        assert (case.status, case.scoring_state) == ("in_review", "done")


def test_the_worklist_orders_by_the_policy_on_this_database(
    database: Database, store: PhotoStore, clean_photos: list[Path]
) -> None:
    low = new_case(database, store, clean_photos[:1], pseudonym="PAT-LOW")
    high = new_case(database, store, clean_photos[1:2], pseudonym="PAT-HIGH")
    unscored = new_case(database, store, clean_photos[2:3], pseudonym="PAT-NEW")
    answers = iter([[0.05], [0.9]])
    worker = ScoringWorker(database, store, lambda: None, clock=Clock())  # type: ignore[arg-type]
    for case_id in (low, high):
        worker._predictor = ScriptedPredictor(next(answers))
        assert worker.score_case(case_id)
    with database.session() as session:
        page = svc.worklist(session, READER, T0 + timedelta(hours=2), deadline_hours=48)
        assert [row.case.id for row in page.rows] == [high, unscored, low]
        assert page.rows[1].priority.flagged
        assert page.rows[0].priority.reason_text("en") == "p(malignant) 0.90, waiting 2 h"
