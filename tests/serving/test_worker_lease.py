"""The lease of a case being scored: renewed while its worker works, and the only licence to write.

Several workers share the queue (``dermtriage worker``, docs/deployment.md). A worker renews the
lease of the case it scores, so another worker cannot take it while it works; once the claim is
no longer its own (taken over after the lease ran out, or released on a graceful stop) it writes
nothing, so a case never gets two sets of scores. On SQLite and PostgreSQL, with the real
predictor and a controlled clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from serving.db.models import Case
from serving.db.session import Database
from serving.scoring_worker import ScoringWorker
from serving.storage import PhotoStore
from tests.serving.test_durability import Clock, submit


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def store(tmp_path: Path) -> PhotoStore:
    return PhotoStore(tmp_path / "photos")


def _workers(database: Database, store: PhotoStore, predictor: Any) -> tuple[ScoringWorker, ...]:
    clock = Clock()
    return tuple(
        ScoringWorker(database, store, lambda: predictor, clock=clock, lease_seconds=60)
        for _ in range(2)
    )


def test_a_renewed_lease_keeps_another_worker_off_until_it_runs_out(
    database: Database, store: PhotoStore, derm_images: list[Path], real_predictor: Any
) -> None:
    case_id = submit(database, store, derm_images[:1], key=None).case_id
    first, second = _workers(database, store, real_predictor)
    assert first.claim(case_id)
    job = first._job(case_id)
    assert job is not None and job.claimed_at is not None
    first.clock.now += timedelta(seconds=50)  # type: ignore[attr-defined]
    assert first.renew_lease(case_id, job.claimed_at)
    first.clock.now += timedelta(seconds=20)  # past the first lease, within the renewed one
    assert not second.claim(case_id)
    first.clock.now += timedelta(seconds=41)  # the renewed lease ran out: the worker is gone
    assert second.claim(case_id)
    assert not first.renew_lease(case_id, job.claimed_at)  # no longer its claim


def test_a_worker_that_lost_its_claim_writes_nothing(
    database: Database, store: PhotoStore, derm_images: list[Path], real_predictor: Any
) -> None:
    case_id = submit(database, store, derm_images[:2], key=None).case_id
    slow, other = _workers(database, store, real_predictor)
    assert slow.claim(case_id)
    stale = slow._job(case_id)
    assert stale is not None
    slow.clock.now += timedelta(seconds=61)  # type: ignore[attr-defined]
    assert other.score_case(case_id)  # took the case over and scored it
    assert not slow._score_job(stale)  # the slow worker finishes: its result is dropped
    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.scoring_state == "done"
        assert len(case.scores) == 2 and not any(s.superseded for s in case.scores)


def test_a_released_case_is_claimed_at_once_and_its_attempt_not_counted(
    database: Database, store: PhotoStore, derm_images: list[Path], real_predictor: Any
) -> None:
    case_id = submit(database, store, derm_images[:1], key=None).case_id
    stopping, other = _workers(database, store, real_predictor)
    assert stopping.claim(case_id)
    job = stopping._job(case_id)
    assert job is not None
    with stopping._keeping_lease(job):  # scoring, when the stop's drain time runs out
        assert stopping.release_held()
    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.scoring_lease_until is None
        assert case.scoring_attempts == 0
    other.clock.now += timedelta(seconds=1)  # type: ignore[attr-defined]
    assert other.claim(case_id)  # a moment later, not a lease later
    assert not stopping._score_job(job)  # and the released worker's late result is dropped
