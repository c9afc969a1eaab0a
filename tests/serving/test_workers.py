"""Scoring apart from the web tier: `dermtriage worker` processes beside a web replica.

Real processes on one database (SQLite, then PostgreSQL): a web replica started with
``dermtriage serve --no-worker`` takes real uploads over HTTP, two ``dermtriage worker`` processes
score them with the shipped model registered as champion. With a short lease (3 s):

- every case is scored exactly once: one champion score per photo, no superseded duplicate, no
  case left unscored, and no case taken from a worker that was still scoring it (one attempt
  each, the lease being renewed while a worker works);
- a worker SIGKILLed while it holds a case leaves that case to its lease; once it expires the
  other worker scores it (two attempts, still one score per photo);
- SIGTERM stops a worker gracefully: it exits 0 and no case is left claimed;
- the replica is ready (``/readyz``) and never scores (no worker thread in it).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from benchmarks.load import (
    REQUESTERS,
    ServerProcess,
    api_token,
    free_port,
    prepare_installation,
    run_clients,
    sample_photos,
)
from serving.db.models import Case, Photo, Score
from serving.db.session import Database
from serving.settings import PROJECT_ROOT, Settings

CASES = 6
SHORT_LEASE = {
    "DERMTRIAGE_SCORING_LEASE_SECONDS": "3",
    "DERMTRIAGE_SCORING_POLL_SECONDS": "0.3",
    "DERMTRIAGE_TORCH_THREADS": "1",
    "DERMTRIAGE_INFERENCE_DEVICE": "cpu",
}


class WorkerProcess:
    """``dermtriage worker`` in its own process, logging to its own file."""

    def __init__(self, server: ServerProcess, name: str) -> None:
        self.log_path = server.settings.data_dir / f"worker-{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving.cli", "worker", "--device", "cpu"],
                cwd=PROJECT_ROOT, env=server.environment(), stdout=log, stderr=log,
            )  # fmt: skip

    def claimed(self) -> list[int]:
        """The cases this worker has claimed so far, from its log."""
        return [int(m) for m in re.findall(r"case (\d+) claimed", self.log_path.read_text())]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def _wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _states(database: Database) -> dict[int, tuple[str, int, bool]]:
    """Each case: (scoring state, attempts, whether a lease is set)."""
    with database.session() as session:
        rows = session.execute(
            select(
                Case.id,
                Case.scoring_state,
                Case.scoring_attempts,
                Case.scoring_lease_until.is_not(None),
            )
        ).all()
    return {cid: (state, attempts, bool(leased)) for cid, state, attempts, leased in rows}


def _held(database: Database, worker: WorkerProcess) -> int | None:
    """A case ``worker`` has claimed and is scoring now (claimed, leased, not done)."""
    states = _states(database)
    for case_id in reversed(worker.claimed()):
        state, _, leased = states[case_id]
        if state != "done" and leased:
            return case_id
    return None


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An MLflow store with the shipped model registered as champion, shared by this module's
    tests (registering is the slow part of a fresh installation)."""
    from training.bootstrap import register_shipped_model

    root = tmp_path_factory.mktemp("registry")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    register_shipped_model(
        Settings().shipped_model_dir,
        tracking_uri=tracking_uri,
        registered_model_name=Settings().registered_model_name,
        artifact_root=(root / "artifacts").as_uri(),
    )
    return tracking_uri


@pytest.fixture
def cluster(tmp_path: Path, database_url: str, registry: str) -> Iterator[dict]:  # type: ignore[type-arg]
    """A migrated database, a live `serve --no-worker` replica on it, and the processes'
    clean-up."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        mlflow_tracking_uri=registry,
        scoring_worker=False,
    )
    prepare_installation(settings)
    port = free_port()
    replica = ServerProcess(
        settings,
        port=port,
        extra_env=SHORT_LEASE,
        argv=[sys.executable, "-m", "serving.cli", "serve", "--no-worker", "--no-demo"],
    )
    workers: list[WorkerProcess] = []
    database = Database(settings.sqlalchemy_url)
    replica.start(timeout=180)
    try:
        yield {"replica": replica, "workers": workers, "database": database, "port": port}
    finally:
        for worker in workers:
            worker.kill()
        replica.stop()
        database.dispose()


def _upload(replica: ServerProcess, photos: list[bytes], count: int) -> list[int]:
    tokens = {login: api_token(replica.base_url, login) for login in REQUESTERS}
    outcome = run_clients(replica.base_url, tokens, photos, clients=2, uploads=count)
    assert outcome.statuses == {"201": count}
    return sorted(outcome.acknowledged)


@pytest.mark.slow
def test_two_workers_score_each_case_once_and_take_over_a_killed_workers_case(
    cluster: dict,  # type: ignore[type-arg]
    dataset_dir: Path,
) -> None:
    replica: ServerProcess = cluster["replica"]
    database: Database = cluster["database"]
    ready = httpx.get(f"{replica.base_url}/readyz", timeout=60)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["model"].startswith("loadable dermtriage-classifier/")
    photos = sample_photos(dataset_dir, CASES)
    case_ids = _upload(replica, photos, CASES)
    time.sleep(1.0)  # the replica has no scoring thread: nothing moves before the workers start
    assert {state for state, _, _ in _states(database).values()} == {"pending"}

    doomed, survivor = WorkerProcess(replica, "a"), WorkerProcess(replica, "b")
    cluster["workers"] += [doomed, survivor]
    _wait_until(lambda: _held(database, doomed), timeout=180, what="worker a to hold a case")
    doomed.kill()
    interrupted = [cid for cid in doomed.claimed() if _states(database)[cid][0] != "done"]
    assert interrupted, "the kill should land while worker a holds a case"

    # The survivor scores everything, the killed worker's case once its lease has run out.
    _wait_until(
        lambda: all(state == "done" for state, _, _ in _states(database).values()),
        timeout=180,
        what="every case scored",
    )
    states = _states(database)
    assert sorted(states) == case_ids
    for case_id, (_, attempts, leased) in states.items():
        assert not leased
        assert attempts == (2 if case_id in interrupted else 1), case_id
    assert set(interrupted) <= set(survivor.claimed())
    with database.session() as session:
        photo_count = session.scalar(select(func.count()).select_from(Photo))
        per_photo = session.execute(
            select(Score.photo_id, func.count())
            .where(Score.role == "champion")
            .group_by(Score.photo_id)
        ).all()
    assert photo_count == CASES
    assert len(per_photo) == CASES and all(n == 1 for _, n in per_photo)  # one score per photo

    # SIGTERM: the survivor stops gracefully, leaving no case claimed.
    assert survivor.terminate() == 0
    assert not any(leased for _, _, leased in _states(database).values())


@pytest.mark.slow
def test_a_worker_stopped_with_sigterm_mid_score_exits_0_and_leaves_no_case_claimed(
    cluster: dict,  # type: ignore[type-arg]
    dataset_dir: Path,
) -> None:
    replica: ServerProcess = cluster["replica"]
    database: Database = cluster["database"]
    _upload(replica, sample_photos(dataset_dir, CASES), CASES)
    worker = WorkerProcess(replica, "c")
    cluster["workers"].append(worker)
    _wait_until(lambda: _held(database, worker), timeout=180, what="the worker to hold a case")
    assert worker.terminate() == 0
    states = _states(database)
    assert not any(leased for _, _, leased in states.values())
    # The case in hand was finished (scored) or released (its attempt not counted); the
    # worker took no new case after the signal.
    for state, attempts, _ in states.values():
        assert (state, attempts) in {("done", 1), ("pending", 0)}
    assert "stopped" in worker.log_path.read_text()
