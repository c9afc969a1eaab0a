"""SIGKILL the server while GPs upload and the model scores; restart; nothing acknowledged is lost.

A real uvicorn process with the scoring worker on and the shipped model registered as champion
in a real MLflow store; real clients upload real derm-dev photos concurrently, each with its own
``Idempotency-Key``. Once cases are being acknowledged *and* scored, the process is killed with
SIGKILL (no shutdown hook runs). Then the server is started again on the same data, and:

- every case acknowledged before the kill is in the database, whole: its row, its photo row, its
  photo and thumbnail files, which decode;
- the uploads that got no answer are sent again with the same key: each ends as exactly one case
  (the ones committed just before the kill are found, not duplicated);
- every case is eventually scored, the one being scored at the kill included (its lease
  expires, another attempt scores it once);
- no file is left that no row names (the start-up sweep took the orphans of the kill).

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchmarks.load import (
    REQUESTERS,
    Outcome,
    ServerProcess,
    api_token,
    free_port,
    prepare_installation,
    run_clients,
    sample_photos,
    verify_cases,
)
from serving.db.models import Case, Score
from serving.db.session import Database
from serving.settings import Settings
from serving.storage import PhotoStore, blob_columns

UPLOADS = 48
CLIENTS = 6
WARM_UP = 2


def _counts(database: Database) -> tuple[int, int]:
    """(cases, scored cases), read by the test on its own connection."""
    with database.session() as session:
        total = session.scalar(select(func.count()).select_from(Case)) or 0
        done = session.scalar(select(func.count()).where(Case.scoring_state == "done")) or 0
    return total, done


def _being_scored(database: Database) -> int:
    """Cases a worker holds a lease on right now (mid-score) and has not finished."""
    with database.session() as session:
        query = select(func.count()).where(
            Case.scoring_state != "done", Case.scoring_lease_until > datetime.now(UTC)
        )
        return session.scalar(query) or 0


def _wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
def test_a_killed_server_loses_no_acknowledged_case_and_scores_every_case_after_restart(
    tmp_path: Path, dataset_dir: Path, database_url: str
) -> None:
    from training.bootstrap import register_shipped_model

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        mlflow_tracking_uri=None,
        scoring_worker=True,
    )
    prepare_installation(settings)
    register_shipped_model(
        settings.shipped_model_dir,
        tracking_uri=settings.tracking_uri,
        registered_model_name=settings.registered_model_name,
        artifact_root=settings.artifact_root,
    )
    fast_recovery = {
        "DERMTRIAGE_SCORING_POLL_SECONDS": "0.5",
        "DERMTRIAGE_SCORING_LEASE_SECONDS": "5",
        "DERMTRIAGE_ORPHAN_GRACE_SECONDS": "0",
        "DERMTRIAGE_TORCH_THREADS": "1",
    }
    photos = sample_photos(dataset_dir, 24)
    database = Database(settings.sqlalchemy_url)
    first = ServerProcess(settings, port=free_port(), extra_env=fast_recovery)
    first.start()
    try:
        tokens = {login: api_token(first.base_url, login) for login in REQUESTERS}
        # Two cases first, so the model is loaded and scoring when the real load starts.
        warm = run_clients(first.base_url, tokens, photos, clients=1, uploads=WARM_UP)
        _wait_until(lambda: _counts(database)[1] == WARM_UP, timeout=180, what="the model")
        outcome = Outcome()
        uploading = threading.Thread(
            target=run_clients,
            args=(first.base_url, tokens, photos),
            kwargs={"clients": CLIENTS, "uploads": UPLOADS, "outcome": outcome, "pause_s": 0.3},
        )
        uploading.start()
        # Kill once cases are acknowledged and scored, at a moment the worker holds a case.
        _wait_until(
            lambda: (
                len(outcome.acknowledged) >= 8
                and _counts(database)[1] > WARM_UP
                and _being_scored(database) > 0
            ),
            timeout=180,
            what="acknowledged cases and a case being scored",
        )
        first.kill()
        uploading.join(120)
    finally:
        first.kill()
    acknowledged_before = {**warm.acknowledged, **outcome.acknowledged}
    assert 8 <= len(outcome.acknowledged) < UPLOADS, "the kill did not land mid-way"
    assert outcome.unanswered, "some uploads should have been cut off by the kill"
    total, scored = _counts(database)
    assert scored < total, "the kill should find cases still waiting for a score"
    with database.session() as session:
        interrupted = session.scalars(
            select(Case.id).where(
                Case.scoring_state != "done", Case.scoring_lease_until.is_not(None)
            )
        ).all()
    assert interrupted, "the kill should land while a case is being scored"

    second = ServerProcess(settings, port=free_port(), extra_env=fast_recovery)
    second.start()
    try:
        # Every acknowledged case survived the kill, whole.
        verification = verify_cases(settings, acknowledged_before)
        assert verification.missing_cases == [] and verification.damaged_cases == {}
        # The cut-off uploads, sent again with their keys, each end as exactly one case.
        tokens = {login: api_token(second.base_url, login) for login in REQUESTERS}
        resent = run_clients(
            second.base_url, tokens, photos, clients=CLIENTS, uploads=0,
            resend=outcome.unanswered,
        )  # fmt: skip
        assert resent.statuses == {"201": len(outcome.unanswered)}
        all_keys = {**warm.acknowledged_keys, **outcome.acknowledged_keys}
        all_keys.update(resent.acknowledged_keys)
        assert len(all_keys) == UPLOADS + WARM_UP
        with database.session() as session:
            keyed = session.execute(select(Case.idempotency_key, Case.id)).all()
        assert dict(keyed) == all_keys  # one case per upload: none lost, none doubled
        # Every case is eventually scored, the ones interrupted at the kill included.
        everyone = UPLOADS + WARM_UP
        _wait_until(
            lambda: _counts(database) == (everyone, everyone), timeout=240, what="every score"
        )
    finally:
        second.stop()
    everything = {**acknowledged_before, **resent.acknowledged}
    with database.session() as session:  # the case scored at the kill was scored again, once
        for case_id in interrupted:
            case = session.get(Case, case_id)
            assert case is not None and case.scoring_state == "done"
            assert case.scoring_lease_until is None and len(case.current_scores) == 1
    verification = verify_cases(settings, everything)
    assert verification.lost == 0, verification
    store = PhotoStore(settings.data_dir / "photos")
    with database.session() as session:
        scores = session.scalars(select(Score)).all()
        assert {s.case_id for s in scores} == set(everything)
        assert all(s.saliency_sha256 and store.exists(s.saliency_sha256) for s in scores)
        named = {
            digest
            for column in blob_columns()
            for digest in session.scalars(select(column))
            if digest
        }
    assert {digest for digest, _ in store.blobs()} == named  # no orphan file left
    database.dispose()
