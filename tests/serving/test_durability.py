"""No acknowledged case is ever lost, no case is created twice, no file outlives its case.

Every test runs twice through ``database_url``: on SQLite and on a real PostgreSQL server. Real
photos, real photo store on disk, real threads racing; the only fault injected by hand is a model
that raises (standing for a model crash) and a transaction we abort on purpose.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from pipeline.priority import UNKNOWN_RISK
from pipeline.questionnaire import parse_questionnaire
from serving import case_service as svc
from serving import idempotency
from serving.db.models import Case, Event, Photo
from serving.db.session import Database
from serving.scoring_worker import ScoringWorker
from serving.storage import PhotoStore, database_references
from serving.users import find_user

T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
GP, OTHER_GP, READER = find_user("dr-martin"), find_user("dr-leroy"), find_user("dr-bernard")
LIMITS: dict[str, Any] = {"max_bytes": 10_000_000, "max_pixels": 50_000_000}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


RAW_QUESTIONNAIRE: dict[str, Any] = {
    "patient_pseudonym": "PAT-77",
    "age": 49,
    "sex": "male",
    "fitzpatrick": "III",
    "body_site": "back",
    "duration": "1_5_years",
    "clinical_question": "Naevus atypique du dos, avis ?",
}


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def store(tmp_path: Path) -> PhotoStore:
    return PhotoStore(tmp_path / "photos")


def uploads(paths: list[Path]) -> list[svc.PhotoUpload]:
    return [svc.PhotoUpload(p.read_bytes()) for p in paths]


def submit(
    database: Database, store: PhotoStore, photos: list[Path], key: str | None, user: Any = GP
) -> idempotency.Submission:
    return idempotency.submit_once(
        database, store, user, parse_questionnaire(RAW_QUESTIONNAIRE), RAW_QUESTIONNAIRE,
        uploads(photos), key=key, now=T0, lang="en", **LIMITS,
    )  # fmt: skip


def count_cases(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Case)) or 0


def files(store: PhotoStore) -> set[str]:
    return {digest for digest, _ in store.blobs()}


def referenced_files(database: Database) -> set[str]:
    with database.session() as session:
        rows = session.execute(select(Photo.sha256, Photo.thumbnail_sha256)).all()
    return {digest for row in rows for digest in row}


# --- idempotency -----------------------------------------------------------------------------


def test_a_retried_upload_with_the_same_key_creates_one_case(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    first = submit(database, store, derm_images[:2], key="retry-7f3a")
    again = submit(database, store, derm_images[:2], key="retry-7f3a")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.case_id == first.case_id
    assert count_cases(database) == 1
    other = submit(database, store, derm_images[:2], key="retry-7f3a", user=OTHER_GP)
    assert other.case_id != first.case_id and not other.replayed  # keys are per requester
    fresh = submit(database, store, derm_images[:2], key=None)  # no key: no deduplication
    assert fresh.case_id not in (first.case_id, other.case_id)


def test_the_same_key_for_a_different_request_is_refused(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    first = submit(database, store, derm_images[:1], key="k-1")
    before = files(store)
    with pytest.raises(idempotency.IdempotencyMismatchError) as refused:
        submit(database, store, derm_images[1:2], key="k-1")
    assert refused.value.case_id == first.case_id
    assert count_cases(database) == 1 and files(store) == before


def test_two_identical_requests_racing_create_one_case_and_keep_its_photos(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    start = threading.Barrier(3)
    results: list[idempotency.Submission] = []
    errors: list[BaseException] = []

    def racer() -> None:
        start.wait()
        try:
            results.append(submit(database, store, derm_images[:2], key="race-1"))
        except BaseException as exc:  # collected, re-raised by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=racer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len({r.case_id for r in results}) == 1 and len(results) == 3
    assert sorted(r.replayed for r in results) == [False, True, True]
    assert count_cases(database) == 1
    kept = referenced_files(database)
    assert kept and all(store.exists(d) for d in kept)  # the losers' clean-up spared them
    assert files(store) == kept  # and nothing else is left


# --- files and transactions ------------------------------------------------------------------


def test_photos_are_on_disk_before_the_commit_and_gone_if_it_fails(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    seen_on_disk: list[bool] = []
    with pytest.raises(RuntimeError, match="power cut"), database.session() as session:
        case = svc.create_case(
            session, store, GP, parse_questionnaire(RAW_QUESTIONNAIRE), uploads(derm_images[:2]),
            now=T0, **LIMITS,
        )  # fmt: skip
        seen_on_disk = [
            store.exists(p.sha256) and store.exists(p.thumbnail_sha256) for p in case.photos
        ]
        raise RuntimeError("power cut before the commit")
    assert seen_on_disk == [True, True]  # written and fsync'ed before any commit
    assert count_cases(database) == 0
    assert files(store) == set()  # the failed unit of work took its files with it


def test_a_failed_request_never_deletes_a_photo_another_case_uses(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    submit(database, store, derm_images[:1], key=None)
    shared = referenced_files(database)
    # Another request, in flight, is about to commit photo 1: it holds it (what
    # write_for_session does until its transaction ends). A third request with photos 0 and 1
    # then fails.
    in_flight = store.prepare(derm_images[1].read_bytes(), **LIMITS)
    with store.holding(in_flight.clean), store.holding(in_flight.thumbnail):
        with pytest.raises(RuntimeError), database.session() as failing:
            svc.create_case(
                failing, store, OTHER_GP, parse_questionnaire(RAW_QUESTIONNAIRE),
                uploads(derm_images[:2]), now=T0, **LIMITS,
            )  # fmt: skip
            raise RuntimeError("abort")
        assert set(in_flight.digests) <= files(store)  # held: still there
        assert shared <= files(store)  # named by a committed row: still there
    assert count_cases(database) == 1
    # Released and unreferenced now: the next clean-up may take it, and only it.
    removed = store.remove_unreferenced(in_flight.digests, database_references(database.engine))
    assert sorted(removed) == sorted(in_flight.digests)
    assert files(store) == referenced_files(database)


HOLDER = """
import sys, time
from pathlib import Path
from serving.storage import PhotoStore
store = PhotoStore(Path(sys.argv[1]))
with store.holding(Path(sys.argv[2]).read_bytes()):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_hold_taken_by_another_process_protects_the_file_too(
    database: Database, store: PhotoStore, derm_images: list[Path], tmp_path: Path
) -> None:
    """Two server processes on one photo folder: one's clean-up spares the other's upload."""
    photo = tmp_path / "blob.bin"
    photo.write_bytes(b"a photo another server process is about to commit")
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.root), str(photo)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        referenced = database_references(database.engine)
        assert store.remove_unreferenced([digest], referenced) == []
        assert store.exists(digest)
    finally:
        holder.communicate("done\n", timeout=30)
    assert store.remove_unreferenced([digest], referenced) == [digest]  # released: orphan now


def test_a_photo_deleted_just_before_it_is_held_is_written_again(
    store: PhotoStore, derm_images: list[Path]
) -> None:
    data = derm_images[0].read_bytes()
    digest = store.put(data)
    store.path(digest).unlink()  # a clean-up won the race right after the write
    digest_again, created, release = store.write_and_hold(data)
    try:
        assert (digest_again, created) == (digest, True) and store.get(digest) == data
    finally:
        release()


def test_the_start_up_sweep_removes_old_orphans_only(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    submit(database, store, derm_images[:1], key=None)
    kept = referenced_files(database)
    old_orphan = store.put(b"left by a crash between the files and the commit")
    young_orphan = store.put(b"an upload in flight in another process")
    temp = store.path(old_orphan).parent / ".tmp-crashed"
    temp.write_bytes(b"half a file")
    hour_ago = time.time() - 7200
    for path in (store.path(old_orphan), temp, *(store.path(d) for d in kept)):
        os.utime(path, (hour_ago, hour_ago))
    removed = store.sweep(database_references(database.engine), grace_seconds=3600)
    assert removed == [old_orphan]
    assert not temp.exists()
    assert files(store) == kept | {young_orphan}


# --- the scoring queue -----------------------------------------------------------------------


class BrokenModel:
    """A model that raises on every prediction (a crash inside the network)."""

    version = "broken/1"

    def predict(self, images: Any) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def saliency(self, image: Any) -> Any:
        raise AssertionError("not reached")


def test_a_worker_killed_mid_score_leaves_a_lease_that_expires_then_the_case_is_scored(
    database: Database, store: PhotoStore, derm_images: list[Path], real_predictor: Any
) -> None:
    case_id = submit(database, store, derm_images[:1], key=None).case_id
    clock = Clock()
    dead = ScoringWorker(database, store, lambda: real_predictor, clock=clock, lease_seconds=60)
    assert dead.claim(case_id)  # ... and the process dies here, before writing any result
    survivor = ScoringWorker(database, store, lambda: real_predictor, clock=clock, lease_seconds=60)
    assert survivor.run_once() == 0  # the lease still holds: nobody scores it twice
    clock.now += timedelta(seconds=61)
    assert survivor.run_once() == 1
    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.scoring_state == "done"
        assert case.scoring_attempts == 2 and case.scoring_lease_until is None
        assert case.current_scores and case.current_scores[0].model_version == "test-model/1"


def test_two_workers_never_claim_the_same_case(
    database: Database, store: PhotoStore, derm_images: list[Path], real_predictor: Any
) -> None:
    case_id = submit(database, store, derm_images[:1], key=None).case_id
    clock = Clock()
    workers = [
        ScoringWorker(database, store, lambda: real_predictor, clock=clock) for _ in range(4)
    ]
    start = threading.Barrier(4)
    wins: list[bool] = []

    def race(worker: ScoringWorker) -> None:
        start.wait()
        wins.append(worker.claim(case_id))

    threads = [threading.Thread(target=race, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(wins) == [False, False, False, True]


def test_repeated_failures_stop_after_the_bound_and_leave_the_case_flagged_with_the_reason(
    database: Database, store: PhotoStore, derm_images: list[Path]
) -> None:
    case_id = submit(database, store, derm_images[:1], key=None).case_id
    clock = Clock()
    worker = ScoringWorker(database, store, BrokenModel, clock=clock, max_attempts=3)
    for _ in range(3):
        assert worker.run_once() == 1
        clock.now += timedelta(hours=2)  # past any back-off
    assert worker.run_once() == 0  # given up: no fourth attempt
    with database.session() as session:
        case = svc.get_case(session, case_id, READER)
        assert (case.scoring_state, case.scoring_attempts) == ("failed", 3)
        assert case.next_scoring_at is None
        assert (case.scoring_error or "").startswith("gave up after 3 attempts: RuntimeError")
        priority = svc.priority_of(case, clock.now, deadline_hours=48)
        assert priority.flagged and priority.reasons[0].code == "scoring_failed"
        failures = session.scalars(
            select(Event.detail).where(Event.case_id == case_id, Event.action == "score_failed")
        ).all()
        assert [d["attempt"] for d in failures] == [1, 2, 3] and failures[-1]["final"]


def test_a_case_whose_last_allowed_attempt_crashed_is_left_for_a_human(
    database: Database, store: PhotoStore, derm_images: list[Path], real_predictor: Any
) -> None:
    case_id = submit(database, store, derm_images[:1], key=None).case_id
    clock = Clock()
    worker = ScoringWorker(
        database, store, lambda: real_predictor, clock=clock, lease_seconds=60, max_attempts=2
    )
    for _ in range(2):  # two attempts, each killed mid-score
        assert worker.claim(case_id)
        clock.now += timedelta(seconds=61)
    assert worker.run_once() == 0
    with database.session() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.scoring_state == "failed"
        assert "stopped while scoring" in (case.scoring_error or "")
        assert case.scoring_lease_until is None


def test_without_a_model_cases_are_accepted_and_ranked_safely(
    database: Database, store: PhotoStore, clean_photos: list[Path], real_predictor: Any
) -> None:
    def no_model() -> Any:
        raise FileNotFoundError("no champion in the registry")

    scored = submit(database, store, clean_photos[:1], key=None).case_id
    clock = Clock()
    ScoringWorker(database, store, lambda: real_predictor, clock=clock).run_once()
    unscored = submit(database, store, clean_photos[1:2], key="while-model-down").case_id
    ScoringWorker(database, store, no_model, clock=clock).run_once()
    with database.session() as session:
        page = svc.worklist(session, READER, T0 + timedelta(hours=1), deadline_hours=48)
        rows = {row.case.id: row for row in page.rows}
        assert rows[unscored].case.scoring_state == "failed"
        assert rows[unscored].priority.flagged
        assert rows[scored].case.scoring_state == "done"
        order = [row.case.id for row in page.rows]
        for row in page.rows:  # every unflagged case the model judged low-risk comes after it
            score = row.case.case_score
            if not row.priority.flagged and score is not None and score.p_malignant < UNKNOWN_RISK:
                assert order.index(unscored) < order.index(row.case.id)
